//! The check a follower makes of a version built on one it already validated: the RRsets
//! that changed and the denial chain around every name they are at, without reading the
//! whole zone.
//!
//! ```text
//!   changed RRset ──► signed exactly when authoritative here, every RRSIG verifies
//!   changed name  ──► its NSEC/NSEC3 is there exactly when the chain must hold the name,
//!                     and lists the types the name has
//!   chain record  ──► its next name is the next record of the chain, nothing skipped;
//!                     the record before it points to it
//! ```
//!
//! Independence is the point (the .SE incident, `../shared/seeds/`): the signer's
//! incremental path decides what the chain holds and builds it; this module shares none of
//! that code. It parses the chain records itself (next name, NSEC3 hash, type bit map),
//! works out from RFC 4034 §4 and RFC 5155 §7.1 which names the chain must hold and which
//! types their bit maps list, and walks the replicated content for the neighbours. A bug in
//! the builder's chain code therefore cannot make both agree on a broken chain.
//!
//! What it leaves to the full check (the caller falls back to it on
//! [`Refusal::TooSparse`], and every node re-checks in full from time to time): NSEC3 empty
//! non-terminals, and chains so sparse that the neighbours of a change lie further than a
//! bounded walk.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::{Failure, SignedRrset, VerifyOptions, check_rrset_sigs};
use crate::keys::RrsigHeader;
use crate::replica::state::{Content, Owner, RrsetVal};
use crate::zone::nsec3::{self, Nsec3Params};
use crate::zone::{Name, rtype};

/// Why a version was not accepted by the incremental check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The chain is too sparse around a change for a bounded walk: not a fault of the
    /// version; check it in full instead.
    #[error("the denial chain is too sparse here for a check of the changes")]
    TooSparse,
    /// The version is wrong: what, where.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for Refusal {
    fn from(s: String) -> Refusal {
        Refusal::Invalid(s)
    }
}

impl From<&str> for Refusal {
    fn from(s: &str) -> Refusal {
        Refusal::Invalid(s.to_string())
    }
}

/// The most RRsets passed over to find the neighbour of a chain record. A sparse chain
/// (NSEC3 opt-out with few secure delegations) would make each step a long walk.
const SCAN_MAX: usize = if cfg!(test) { 64 } else { 20_000 };

/// Checks the RRsets in `touched` of `content` (the zone at `origin`, a version whose
/// predecessor this node validated) and the denial chain around every name they are at.
pub fn check(
    content: &Content,
    origin: &Name,
    touched: &BTreeSet<(Name, u16)>,
    now: u32,
) -> Result<(), Refusal> {
    let keys = Keys::of(content, origin)?;
    let dnskey = get(content, origin, rtype::DNSKEY).ok_or("no DNSKEY RRset at the apex")?;
    keys.check(origin, rtype::DNSKEY, dnskey, now)?;
    let chain = Chain::of(content, origin)?;
    let mut names: BTreeSet<&Name> = BTreeSet::new();
    for (owner, t) in touched {
        let is_chain_record = matches!(*t, rtype::NSEC | rtype::NSEC3);
        if !is_chain_record {
            names.insert(owner);
        }
        let Some(set) = get(content, owner, *t) else {
            continue; // removed: its name's chain is checked below
        };
        if is_chain_record {
            if *t != chain.rtype() {
                return Err(invalid(owner, *t, "a record of the other denial chain"));
            }
            keys.check(owner, *t, set, now)?;
            chain.link(content, origin, owner)?;
        } else if signed_here(content, origin, owner, *t) {
            keys.check(owner, *t, set, now)?;
        } else if !set.sigs.is_empty() {
            return Err(invalid(
                owner,
                *t,
                "signed, but not authoritative data here",
            ));
        }
    }
    for name in names {
        chain.around(content, origin, name)?;
    }
    Ok(())
}

fn invalid(owner: &Name, t: u16, what: &str) -> Refusal {
    Refusal::Invalid(format!("{} {}: {what}", owner.to_text(), rtype::to_text(t)))
}

fn get<'c>(content: &'c Content, owner: &Name, t: u16) -> Option<&'c RrsetVal> {
    content.get(&(Owner(owner.clone()), t))
}

/// The data types at `o` (not the denial records; RRSIGs live with their RRsets).
fn data_types(content: &Content, o: &Name) -> BTreeSet<u16> {
    content
        .range((Owner(o.clone()), 0)..)
        .take_while(|((owner, _), _)| owner.0 == *o)
        .map(|((_, t), _)| *t)
        .filter(|t| !matches!(*t, rtype::NSEC | rtype::NSEC3 | rtype::RRSIG))
        .collect()
}

/// What a name is in the zone, by RFC 4035 §2.2 and RFC 6672 §2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Apex,
    /// Authoritative data.
    Auth,
    /// A delegation point (NS below the apex).
    Cut,
    /// Below a delegation point or a DNAME: glue or occluded data.
    Occluded,
    /// No data at the name.
    Empty,
}

impl Place {
    /// Whether the RRset of type `t` here carries RRSIGs.
    fn signs(self, t: u16) -> bool {
        match self {
            Place::Apex | Place::Auth => true,
            Place::Cut => t == rtype::DS,
            Place::Occluded | Place::Empty => false,
        }
    }
}

/// Whether the RRset (`o`, `t`) must carry RRSIGs: at the apex and authoritative names,
/// only DS at a zone cut, nothing at glue or occluded names.
pub fn signed_here(content: &Content, origin: &Name, o: &Name, t: u16) -> bool {
    place(content, origin, o).signs(t)
}

fn place(content: &Content, origin: &Name, o: &Name) -> Place {
    if o == origin {
        return Place::Apex;
    }
    let mut up = o.parent();
    while let Some(a) = up {
        if !a.is_subdomain_of(origin) {
            break;
        }
        let at_apex = a == *origin;
        if get(content, &a, rtype::DNAME).is_some()
            || (!at_apex && get(content, &a, rtype::NS).is_some())
        {
            return Place::Occluded;
        }
        if at_apex {
            break;
        }
        up = a.parent();
    }
    let types = data_types(content, o);
    if types.is_empty() {
        Place::Empty
    } else if types.contains(&rtype::NS) {
        Place::Cut
    } else {
        Place::Auth
    }
}

/// Whether a name below `o` holds anything.
fn has_below(content: &Content, o: &Name) -> bool {
    content
        .range((
            Bound::Excluded((Owner(o.clone()), u16::MAX)),
            Bound::Unbounded,
        ))
        .next()
        .is_some_and(|((n, _), _)| n.0.is_subdomain_of(o))
}

/// The types an RFC 4034 §4.1.2 type bit map lists; `None` when it is malformed (windows
/// out of order, a length outside 1–32).
fn bitmap_types(mut b: &[u8]) -> Option<BTreeSet<u16>> {
    let mut out = BTreeSet::new();
    let mut last: Option<u8> = None;
    while !b.is_empty() {
        let (&window, &len) = (b.first()?, b.get(1)?);
        if last.is_some_and(|l| window <= l) || !(1..=32).contains(&len) {
            return None;
        }
        last = Some(window);
        let bits = b.get(2..2 + len as usize)?;
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    out.insert((window as u16) << 8 | (i as u16 * 8 + bit));
                }
            }
        }
        b = &b[2 + len as usize..];
    }
    Some(out)
}

/// A chain record's next name (for NSEC3, the next hashed owner) and listed types.
struct Record {
    next: Name,
    types: BTreeSet<u16>,
}

/// The denial of existence the version uses, as its apex shows it.
enum Chain {
    Nsec,
    Nsec3(Nsec3Params),
}

impl Chain {
    fn of(content: &Content, origin: &Name) -> Result<Chain, Refusal> {
        if get(content, origin, rtype::NSEC).is_some() {
            return Ok(Chain::Nsec);
        }
        let param = get(content, origin, rtype::NSEC3PARAM)
            .and_then(|p| p.rdatas.first())
            .ok_or("the apex has neither NSEC nor NSEC3PARAM")?;
        let mut params = Nsec3Params::from_nsec3param(param)
            .ok_or("the apex's NSEC3PARAM is malformed or names an unknown hash")?;
        let at = nsec3::hashed_owner(&nsec3::hash(origin, &params), origin);
        let rdata = get(content, &at, rtype::NSEC3)
            .and_then(|r| r.rdatas.first())
            .ok_or_else(|| format!("no NSEC3 for the apex at {}", at.to_text()))?;
        params.opt_out = rdata.get(1).is_some_and(|f| f & 1 == 1);
        Ok(Chain::Nsec3(params))
    }

    fn rtype(&self) -> u16 {
        match self {
            Chain::Nsec => rtype::NSEC,
            Chain::Nsec3(_) => rtype::NSEC3,
        }
    }

    /// Where the chain record of name `o` is (or would be).
    fn at(&self, origin: &Name, o: &Name) -> Name {
        match self {
            Chain::Nsec => o.clone(),
            Chain::Nsec3(p) => nsec3::hashed_owner(&nsec3::hash(o, p), origin),
        }
    }

    /// Parses the chain record at `at`.
    fn record(&self, content: &Content, origin: &Name, at: &Name) -> Result<Record, Refusal> {
        let t = self.rtype();
        let what = rtype::to_text(t);
        let set = get(content, at, t).ok_or_else(|| format!("no {what} at {}", at.to_text()))?;
        if set.rdatas.len() != 1 {
            return Err(invalid(at, t, "more than one record"));
        }
        let d = &set.rdatas[0];
        let bad = || invalid(at, t, "malformed");
        let (next, bitmap) = match self {
            Chain::Nsec => {
                let n = crate::zone::name::wire_name_len(d).map_err(|_| bad())?;
                (Name::from_wire(&d[..n]).map_err(|_| bad())?, &d[n..])
            }
            Chain::Nsec3(p) => {
                let salt_len = *d.get(4).ok_or_else(bad)? as usize;
                let salt = d.get(5..5 + salt_len).ok_or_else(bad)?;
                if d[0] != 1 || u16::from_be_bytes([d[2], d[3]]) != p.iterations || salt != p.salt {
                    return Err(invalid(
                        at,
                        t,
                        "parameters differ from the apex's NSEC3PARAM",
                    ));
                }
                let hash_len = *d.get(5 + salt_len).ok_or_else(bad)? as usize;
                let start = 6 + salt_len;
                let hash: &[u8; 20] = d
                    .get(start..start + hash_len)
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(bad)?;
                (nsec3::hashed_owner(hash, origin), &d[start + hash_len..])
            }
        };
        let types = bitmap_types(bitmap).ok_or_else(|| invalid(at, t, "malformed type bit map"))?;
        Ok(Record { next, types })
    }

    /// The types the bit map of name `o`'s record must list, or `None` when the chain must
    /// not hold `o`; `Err(None)` for what is left to the full check (an NSEC3 empty
    /// non-terminal).
    fn expected(
        &self,
        content: &Content,
        origin: &Name,
        o: &Name,
    ) -> Result<Option<BTreeSet<u16>>, ()> {
        let place = place(content, origin, o);
        let mut types = data_types(content, o);
        Ok(match (self, place) {
            (_, Place::Occluded) => None,
            (Chain::Nsec, Place::Empty) => None,
            (Chain::Nsec3(_), Place::Empty) if has_below(content, o) => return Err(()),
            (Chain::Nsec3(_), Place::Empty) => None,
            (Chain::Nsec, Place::Cut) => {
                types.retain(|t| matches!(*t, rtype::NS | rtype::DS));
                types.extend([rtype::RRSIG, rtype::NSEC]);
                Some(types)
            }
            (Chain::Nsec, Place::Apex | Place::Auth) => {
                types.extend([rtype::RRSIG, rtype::NSEC]);
                Some(types)
            }
            (Chain::Nsec3(_), Place::Cut) => {
                types.retain(|t| matches!(*t, rtype::NS | rtype::DS));
                if types.contains(&rtype::DS) {
                    types.insert(rtype::RRSIG);
                }
                Some(types)
            }
            (Chain::Nsec3(_), Place::Apex | Place::Auth) => {
                types.insert(rtype::RRSIG);
                Some(types)
            }
        })
    }

    /// The chain record at `from` names the next record of the chain in canonical order
    /// (wrapping to the first), and that record exists.
    fn link(&self, content: &Content, origin: &Name, from: &Name) -> Result<(), Refusal> {
        let rec = self.record(content, origin, from)?;
        self.links(content, from, &rec)
    }

    /// [`Chain::link`] of the record `rec` at `from`, already read.
    fn links(&self, content: &Content, from: &Name, rec: &Record) -> Result<(), Refusal> {
        let t = self.rtype();
        let what = rtype::to_text(t);
        if get(content, &rec.next, t).is_none() {
            return Err(Refusal::Invalid(format!(
                "{what} at {} points to {}, which has no {what}",
                from.to_text(),
                rec.next.to_text()
            )));
        }
        let after = content
            .range((
                Bound::Excluded((Owner(from.clone()), u16::MAX)),
                Bound::Unbounded,
            ))
            .chain(content.iter());
        match first_of_type(after, t)? {
            Some(n) if *n == rec.next => Ok(()),
            Some(n) => Err(Refusal::Invalid(format!(
                "{what} chain broken: {} → {} skips {}",
                from.to_text(),
                rec.next.to_text(),
                n.to_text()
            ))),
            None => unreachable!("the chain holds at least the record at {}", from.to_text()),
        }
    }

    /// The chain around a changed name: its record is there exactly when the chain must
    /// hold the name, listing the types the name has; it and the record before it point on
    /// to the next record.
    fn around(&self, content: &Content, origin: &Name, o: &Name) -> Result<(), Refusal> {
        let t = self.rtype();
        let what = rtype::to_text(t);
        let Ok(want) = self.expected(content, origin, o) else {
            return Ok(()); // an NSEC3 empty non-terminal: left to the full check
        };
        let at = self.at(origin, o);
        let opt_out_insecure = matches!(self, Chain::Nsec3(p) if p.opt_out)
            && place(content, origin, o) == Place::Cut
            && get(content, o, rtype::DS).is_none();
        match (want, get(content, &at, t)) {
            (Some(types), Some(_)) => {
                let rec = self.record(content, origin, &at)?;
                if rec.types != types {
                    return Err(Refusal::Invalid(format!(
                        "{what} at {} for {}: its type bit map lists {} where the name has {}",
                        at.to_text(),
                        o.to_text(),
                        list(&rec.types),
                        list(&types)
                    )));
                }
                self.links(content, &at, &rec)?;
            }
            // RFC 5155 §6: under opt-out an insecure delegation need not be in the chain.
            (Some(_), None) if opt_out_insecure => {}
            (Some(_), None) => {
                return Err(Refusal::Invalid(format!(
                    "{} has no {what} (at {})",
                    o.to_text(),
                    at.to_text()
                )));
            }
            (None, Some(_)) => {
                return Err(Refusal::Invalid(format!(
                    "{what} at {} for {}, which the chain must not hold",
                    at.to_text(),
                    o.to_text()
                )));
            }
            (None, None) => {}
        }
        let before = content
            .range(..(Owner(at.clone()), 0))
            .rev()
            .chain(content.iter().rev());
        if let Some(prev) = first_of_type(before, t)? {
            self.link(content, origin, &prev.clone())?;
        }
        Ok(())
    }
}

/// The owner of the first RRset of type `t`, passing over at most [`SCAN_MAX`] others.
fn first_of_type<'c>(
    it: impl Iterator<Item = (&'c (Owner, u16), &'c RrsetVal)>,
    t: u16,
) -> Result<Option<&'c Name>, Refusal> {
    for (passed, ((owner, ty), _)) in it.enumerate() {
        if *ty == t {
            return Ok(Some(&owner.0));
        }
        if passed >= SCAN_MAX {
            return Err(Refusal::TooSparse);
        }
    }
    Ok(None)
}

fn list(types: &BTreeSet<u16>) -> String {
    let names: Vec<String> = types.iter().map(|t| rtype::to_text(*t)).collect();
    format!("[{}]", names.join(" "))
}

/// The apex keys of a version, with the validator's RRSIG checks.
pub struct Keys<'a> {
    origin: &'a Name,
    keys: super::Keys,
}

fn first(failures: &[Failure]) -> String {
    let f = &failures[0];
    format!("{} {}: {}", f.owner, f.rtype, f.message)
}

impl<'a> Keys<'a> {
    pub fn of(content: &Content, origin: &'a Name) -> Result<Keys<'a>, String> {
        let set = get(content, origin, rtype::DNSKEY).ok_or("no DNSKEY RRset at the apex")?;
        let mut failures = Vec::new();
        let keys = super::Keys::from_dnskeys(origin, &set.rdatas, &mut failures);
        if !failures.is_empty() {
            return Err(first(&failures));
        }
        Ok(Keys { origin, keys })
    }

    /// Every RRSIG of the authoritative RRset `v` at `owner` (the validator's checks:
    /// signer, labels, original TTL, validity window, key, signature, algorithms).
    pub fn check(&self, owner: &Name, t: u16, v: &RrsetVal, now: u32) -> Result<(), String> {
        let what = || format!("{} {}", owner.to_text(), rtype::to_text(t));
        if v.sigs.is_empty() {
            return Err(format!("{}: no RRSIG", what()));
        }
        let mut parsed = Vec::with_capacity(v.sigs.len());
        for s in &v.sigs {
            let p = RrsigHeader::parse(s).ok_or_else(|| format!("{}: malformed RRSIG", what()))?;
            if p.0.type_covered != t {
                return Err(format!("{}: RRSIG covers another type", what()));
            }
            parsed.push(p);
        }
        let sigs: Vec<_> = parsed.iter().collect();
        let set = SignedRrset {
            origin: self.origin,
            owner,
            rtype: t,
            ttl: v.ttl,
            rdatas: &v.rdatas,
        };
        let opts = VerifyOptions {
            now,
            ..Default::default()
        };
        let mut failures = Vec::new();
        check_rrset_sigs(
            &set,
            &sigs,
            &self.keys,
            &opts,
            &mut Vec::new(),
            &mut failures,
            None,
        );
        if failures.is_empty() {
            Ok(())
        } else {
            Err(first(&failures))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_maps_are_read_as_rfc_4034_writes_them() {
        // A, NS, SOA, MX, TXT, AAAA, RRSIG, NSEC, DNSKEY (RFC 4034 §4.3's example), CAA.
        let mut want = vec![1, 2, 6, 15, 16, 28, 46, 47, 48, 257];
        let map = crate::zone::rdata::type_bitmap(&mut want.clone());
        assert_eq!(bitmap_types(&map), Some(want.drain(..).collect()));
        assert_eq!(bitmap_types(&[]), Some(BTreeSet::new()));
        assert_eq!(bitmap_types(&[0, 0]), None, "a window of length 0");
        assert_eq!(
            bitmap_types(&[1, 1, 0x80, 0, 1, 0x40]),
            None,
            "windows out of order"
        );
        assert_eq!(bitmap_types(&[0, 3, 0x40]), None, "cut short");
    }
}
