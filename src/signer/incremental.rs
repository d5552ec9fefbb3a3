//! Names and types that come or go, applied to a signed version without the whole zone.
//!
//! An IXFR, or the comparison of a whole transfer or of a changed file with the current
//! version, names the RRsets that differ. When a name or a type came or went, the denial
//! chain changes as well, but only around the names that changed:
//!
//! ```text
//!   before:  p ──NSEC──► q                p ──NSEC──► n ──NSEC──► q
//!   n added:                      ──►     (p's next name, n's own record and bit map)
//!   n removed: the reverse; a type added or removed at n: n's bit map only
//! ```
//!
//! Those records are made here over the current content with the changes laid on it
//! ([`View`]), by the signer's own rules for what a chain holds and what a bit map lists
//! (`authoritative_types`, `nsec3::node_types`), then signed, and checked as every node
//! checks a version it applies ([`check_owner`], [`link`]).
//!
//! Whatever would move a zone cut over existing names (NS or DNAME added or removed above
//! them), an NSEC3 empty non-terminal that would come or go, a change to the apex's types,
//! or a new denial TTL goes through the whole build instead (`None`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::replica::state::{Owner, RrsetChange, RrsetVal};
use crate::signer::nsec3::{self, Nsec3Params};
use crate::zone::rdata::type_bitmap;
use crate::zone::{Name, Node, NodeKind, Rdatas, Rrset, rtype};

pub(crate) use crate::replica::state::Content;
pub(crate) use crate::replica::view::Key;
use crate::replica::view::Overlay;

/// A version's content with changes laid over it (`None`: the RRset is removed), read as
/// a served version is (`serve::view`).
pub(crate) struct View<'a> {
    base: &'a Content,
    over: Overlay,
}

fn key(o: &Name, t: u16) -> Key {
    (Owner(o.clone()), t)
}

impl<'a> View<'a> {
    pub(crate) fn new(base: &'a Content) -> View<'a> {
        View {
            base,
            over: Overlay::new(),
        }
    }

    fn served(&self) -> crate::replica::view::View<'_> {
        crate::replica::view::View {
            content: self.base,
            overlay: Some(&self.over),
        }
    }

    pub(crate) fn get(&self, o: &Name, t: u16) -> Option<&RrsetVal> {
        self.served().get(o, t)
    }

    fn set(&mut self, o: &Name, t: u16, v: Option<RrsetVal>) {
        self.over.insert(key(o, t), v);
    }

    /// After `from` (all of it for `None`), in canonical order.
    fn forward(&self, from: Option<Key>) -> Box<dyn Iterator<Item = (&Key, &RrsetVal)> + '_> {
        match from {
            Some(k) => Box::new(self.served().after(&k)),
            None => Box::new(self.served().all()),
        }
    }

    /// Before `to` (all of it for `None`), last first.
    fn backward(&self, to: Option<Key>) -> Box<dyn Iterator<Item = (&Key, &RrsetVal)> + '_> {
        match to {
            Some(k) => Box::new(self.served().before(&k)),
            None => Box::new(self.served().all_rev()),
        }
    }

    /// The types at `o`.
    pub(crate) fn types(&self, o: &Name) -> Vec<u16> {
        self.served()
            .from(&key(o, 0))
            .take_while(|(k, _)| k.0.0 == *o)
            .map(|(k, _)| k.1)
            .collect()
    }

    /// Whether a name below `o` holds anything.
    pub(crate) fn has_below(&self, o: &Name) -> bool {
        self.forward(Some(key(o, u16::MAX)))
            .next()
            .is_some_and(|(k, _)| k.0.0.is_subdomain_of(o) && k.0.0 != *o)
    }

    /// Whether every RRset below `o` is one of `changed` (denial records aside).
    fn below_only(&self, o: &Name, changed: &BTreeSet<Key>) -> bool {
        self.forward(Some(key(o, u16::MAX)))
            .take_while(|(k, _)| k.0.0.is_subdomain_of(o) && k.0.0 != *o)
            .all(|(k, _)| matches!(k.1, rtype::NSEC | rtype::NSEC3) || changed.contains(k))
    }

    /// The next owner after `o` with an RRset of type `t`, in canonical order, wrapping to
    /// the first; `Err(TooFar)` when it is more than [`SCAN_MAX`] RRsets away.
    pub(crate) fn next_with(&self, o: &Name, t: u16) -> Result<Option<&Name>, ChainError> {
        let mut left = SCAN_MAX;
        match first_of(self.forward(Some(key(o, u16::MAX))), t, &mut left)? {
            Some(n) => Ok(Some(n)),
            None => first_of(self.forward(None), t, &mut left),
        }
    }

    /// The owner before `o` with an RRset of type `t`, wrapping to the last; as
    /// [`View::next_with`].
    pub(crate) fn prev_with(&self, o: &Name, t: u16) -> Result<Option<&Name>, ChainError> {
        let mut left = SCAN_MAX;
        match first_of(self.backward(Some(key(o, 0))), t, &mut left)? {
            Some(n) => Ok(Some(n)),
            None => first_of(self.backward(None), t, &mut left),
        }
    }
}

/// The first owner with an RRset of type `t`, passing over at most `left` others.
fn first_of<'v>(
    it: impl Iterator<Item = (&'v Key, &'v RrsetVal)>,
    t: u16,
    left: &mut usize,
) -> Result<Option<&'v Name>, ChainError> {
    for (k, _) in it {
        if k.1 == t {
            return Ok(Some(&k.0.0));
        }
        *left = left.checked_sub(1).ok_or(ChainError::TooFar)?;
    }
    Ok(None)
}

/// The most RRsets passed over to find the next (or previous) record of a denial chain. A
/// sparse chain (NSEC3 opt-out with few secure delegations) would make each step a long
/// walk: a follower then checks the version in full, and the leader builds the whole zone.
const SCAN_MAX: usize = if cfg!(test) { 64 } else { 20_000 };

/// Why the chain around a changed name was not made or checked here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChainError {
    /// The chain is too sparse there for a bounded walk: the whole build is needed.
    #[error("the denial chain is too sparse here for a check of the changes")]
    TooFar,
    /// The chain made is wrong: what, where.
    #[error("{0}")]
    Broken(String),
}

impl From<String> for ChainError {
    fn from(s: String) -> ChainError {
        ChainError::Broken(s)
    }
}

impl From<ChainError> for String {
    fn from(e: ChainError) -> String {
        e.to_string()
    }
}

/// What a name is in a view (the zone model's [`NodeKind`], or nothing at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Absent,
    Is(NodeKind),
}

/// The data types at `o`: not the denial records (RRSIGs are kept with their RRsets).
fn data_types(v: &View, o: &Name) -> Vec<u16> {
    let mut t = v.types(o);
    t.retain(|t| !matches!(*t, rtype::NSEC | rtype::NSEC3 | rtype::RRSIG));
    t
}

fn kind(v: &View, origin: &Name, o: &Name, types: &[u16]) -> Kind {
    if o == origin {
        return Kind::Is(NodeKind::Apex);
    }
    let mut up = o.parent();
    while let Some(p) = up {
        if !p.is_subdomain_of(origin) {
            break;
        }
        let apex = p == *origin;
        if v.get(&p, rtype::DNAME).is_some() || (!apex && v.get(&p, rtype::NS).is_some()) {
            return Kind::Is(NodeKind::BelowCut);
        }
        if apex {
            break;
        }
        up = p.parent();
    }
    if types.is_empty() {
        Kind::Absent
    } else if types.contains(&rtype::NS) {
        Kind::Is(NodeKind::Delegation)
    } else {
        Kind::Is(NodeKind::Auth)
    }
}

/// The denial of existence a version uses, as its apex shows it.
#[derive(Debug, Clone)]
pub(crate) enum Chain {
    Nsec,
    Nsec3(Nsec3Params),
}

impl Chain {
    pub(crate) fn of(v: &View, origin: &Name) -> Result<Chain, String> {
        if v.get(origin, rtype::NSEC).is_some() {
            return Ok(Chain::Nsec);
        }
        let mut params = v
            .served()
            .nsec3_params(origin)
            .ok_or("the apex has neither NSEC nor a well-formed NSEC3PARAM")?;
        let apex = nsec3::hashed_owner(&nsec3::hash(origin, &params), origin);
        let flags = v
            .get(&apex, rtype::NSEC3)
            .and_then(|r| r.rdatas.first().and_then(|d| d.get(1).copied()))
            .ok_or_else(|| format!("no NSEC3 for the apex at {}", apex.to_text()))?;
        params.opt_out = flags & 1 == 1;
        Ok(Chain::Nsec3(params))
    }

    pub(crate) fn rtype(&self) -> u16 {
        match self {
            Chain::Nsec => rtype::NSEC,
            Chain::Nsec3(_) => rtype::NSEC3,
        }
    }

    /// Where `o`'s record of the chain is (or would be).
    pub(crate) fn owner(&self, origin: &Name, o: &Name) -> Name {
        match self {
            Chain::Nsec => o.clone(),
            Chain::Nsec3(p) => nsec3::hashed_owner(&nsec3::hash(o, p), origin),
        }
    }

    /// Whether a name of this kind has a record in the chain, and its bit map; `None` for
    /// what this module does not decide (an NSEC3 empty non-terminal).
    fn member(&self, k: Kind, o: &Name, types: &[u16], below: bool) -> Option<Option<Vec<u8>>> {
        let Kind::Is(nk) = k else {
            // Nothing at the name: an NSEC chain passes it by; an NSEC3 chain holds it
            // as an empty non-terminal when names below it are in the chain.
            return match self {
                Chain::Nsec3(_) if below => None,
                _ => Some(None),
            };
        };
        let node = Node {
            name: o.clone(),
            kind: nk,
            rrsets: types
                .iter()
                .map(|t| Rrset {
                    rtype: *t,
                    ttl: 0,
                    rdatas: Rdatas::default(),
                })
                .collect(),
            sigs: Vec::new(),
        };
        Some(match (self, nk) {
            (_, NodeKind::BelowCut) => None,
            (Chain::Nsec, _) => {
                let mut t = crate::signer::authoritative_types(&node);
                t.extend([rtype::RRSIG, rtype::NSEC]);
                planted_fault(&mut t);
                Some(type_bitmap(&mut t))
            }
            (Chain::Nsec3(p), NodeKind::Delegation) if p.opt_out && !node.has(rtype::DS) => None,
            (Chain::Nsec3(_), _) => {
                let mut t = nsec3::node_types(&node);
                planted_fault(&mut t);
                Some(type_bitmap(&mut t))
            }
        })
    }

    /// The rdata of a chain record: its next name (its hash for NSEC3) and bit map.
    fn rdata(&self, next: &Name, bitmap: &[u8]) -> Result<Vec<u8>, String> {
        Ok(match self {
            Chain::Nsec => [next.as_wire(), bitmap].concat(),
            Chain::Nsec3(p) => {
                let label = next.labels().next().ok_or("NSEC3 owner without a label")?;
                let hash = data_encoding::BASE32HEX_NOPAD
                    .decode(&label.to_ascii_uppercase())
                    .map_err(|e| format!("NSEC3 owner {}: {e}", next.to_text()))?;
                nsec3::rdata(p, &hash, bitmap)
            }
        })
    }
}

#[cfg(test)]
thread_local! {
    /// Tests only: a fault planted in the chain this module builds and checks itself (bit
    /// maps leave TXT out), to show that the followers' independent check refuses what this
    /// module's self-check lets through.
    pub(crate) static PLANT_FAULT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn planted_fault(_types: &mut Vec<u16>) {
    #[cfg(test)]
    if PLANT_FAULT.with(|p| p.get()) {
        _types.retain(|t| *t != rtype::TXT);
    }
}

/// The next name (for NSEC3 its hashed owner) and the bit map of a chain record.
pub(crate) fn parts(origin: &Name, t: u16, d: &[u8]) -> Option<(Name, Vec<u8>)> {
    if t == rtype::NSEC {
        let n = crate::zone::name::wire_name_len(d).ok()?;
        return Some((Name::from_wire(&d[..n]).ok()?, d[n..].to_vec()));
    }
    let salt_len = *d.get(4)? as usize;
    let hlen = *d.get(5 + salt_len)? as usize;
    let hash = d.get(6 + salt_len..6 + salt_len + hlen)?.try_into().ok()?;
    Some((
        nsec3::hashed_owner(hash, origin),
        d[6 + salt_len + hlen..].to_vec(),
    ))
}

/// `from`'s chain record of type `t` points to the next record of its chain: the next one
/// in canonical order (wrapping to the first), nothing skipped.
pub(crate) fn link(v: &View, origin: &Name, from: &Name, t: u16) -> Result<(), ChainError> {
    let what = rtype::to_text(t);
    let rec = v
        .get(from, t)
        .ok_or_else(|| format!("no {what} at {}", from.to_text()))?;
    let (next, _) = rec
        .rdatas
        .first()
        .and_then(|d| parts(origin, t, d))
        .ok_or_else(|| format!("{}: malformed {what}", from.to_text()))?;
    if v.get(&next, t).is_none() {
        return Err(ChainError::Broken(format!(
            "{what} at {} points to {}, which has no {what}",
            from.to_text(),
            next.to_text()
        )));
    }
    match v.next_with(from, t)? {
        Some(n) if *n == next => Ok(()),
        Some(n) => Err(ChainError::Broken(format!(
            "{what} chain broken: {} → {} skips {}",
            from.to_text(),
            next.to_text(),
            n.to_text()
        ))),
        None => Err(ChainError::Broken(format!(
            "{what} chain of one record at {}",
            from.to_text()
        ))),
    }
}

/// The chain around a name that changed: its own record is there exactly when the chain
/// holds it, with the bit map of the types it has, and both it and the record before it
/// point to the next record.
pub(crate) fn check_owner(
    v: &View,
    origin: &Name,
    chain: &Chain,
    o: &Name,
) -> Result<(), ChainError> {
    let t = chain.rtype();
    let what = rtype::to_text(t);
    let types = data_types(v, o);
    let k = kind(v, origin, o, &types);
    let below = k == Kind::Absent && v.has_below(o);
    let Some(want) = chain.member(k, o, &types, below) else {
        return Ok(()); // an NSEC3 empty non-terminal: the full check covers it
    };
    let at = chain.owner(origin, o);
    match (want, v.get(&at, t)) {
        (Some(bitmap), Some(rec)) => {
            let (_, has) = rec
                .rdatas
                .first()
                .and_then(|d| parts(origin, t, d))
                .ok_or_else(|| format!("{}: malformed {what}", at.to_text()))?;
            if has != bitmap {
                return Err(ChainError::Broken(format!(
                    "{what} at {} for {}: its type bit map does not list the types the name has",
                    at.to_text(),
                    o.to_text()
                )));
            }
            link(v, origin, &at, t)?;
        }
        (Some(_), None) => {
            return Err(ChainError::Broken(format!(
                "{} has no {what} (at {})",
                o.to_text(),
                at.to_text()
            )));
        }
        (None, Some(_)) => {
            return Err(ChainError::Broken(format!(
                "{what} at {} for {}, which the chain must not hold",
                at.to_text(),
                o.to_text()
            )));
        }
        (None, None) => {}
    }
    if let Some(prev) = v.prev_with(&at, t)? {
        link(v, origin, &prev.clone(), t)?;
    }
    Ok(())
}

/// One RRset of the input that differs from the version: its new TTL and rdatas, or
/// `None` when it is gone.
pub(crate) type DataChange = ((Name, u16), Option<(u32, Rdatas)>);

/// The changes to the version `base` that the data changes make, with the chain records
/// they touch; every RRset to sign is handed to `sign` (owner, RRset) in one call, which
/// returns each one's RRSIGs. `None`: the whole build is needed (see the module's text).
pub(crate) fn apply(
    base: &Content,
    origin: &Name,
    data: Vec<DataChange>,
    denial_ttl: u32,
    sign: impl FnOnce(&[(&Name, &Rrset)]) -> Result<Vec<Vec<Arc<[u8]>>>, String>,
) -> Result<Option<Vec<RrsetChange>>, String> {
    let mut v = View::new(base);
    let Ok(chain) = Chain::of(&v, origin) else {
        return Ok(None);
    };
    let ct = chain.rtype();
    let apex_at = chain.owner(origin, origin);
    if v.get(&apex_at, ct).map(|r| r.ttl) != Some(denial_ttl) {
        return Ok(None); // the SOA's minimum or TTL moved: every denial record changes
    }
    let owners: BTreeSet<Owner> = data.iter().map(|((o, _), _)| Owner(o.clone())).collect();
    let changed: BTreeSet<Key> = data.iter().map(|((o, t), _)| key(o, *t)).collect();
    // Before: types, kind and whether the chain holds each name.
    let mut before = BTreeMap::new();
    for Owner(o) in &owners {
        let types = data_types(&v, o);
        let k = kind(&v, origin, o, &types);
        let below = v.has_below(o);
        let at = chain.owner(origin, o);
        let held = v.get(&at, ct).is_some();
        // What the rules say must be what the version holds, or this is not for here.
        match chain.member(k, o, &types, k == Kind::Absent && below) {
            Some(want) if want.is_some() == held => {}
            _ => return Ok(None),
        }
        before.insert(o.clone(), (types, held));
    }
    for ((o, t), new) in &data {
        let val = new.as_ref().map(|(ttl, rdatas)| RrsetVal {
            ttl: *ttl,
            rdatas: rdatas.clone(),
            sigs: Vec::new(),
        });
        v.set(o, *t, val);
    }
    // After.
    let mut members: BTreeMap<Name, Vec<u8>> = BTreeMap::new();
    let mut moved: Vec<Name> = Vec::new();
    let mut kinds = BTreeMap::new();
    for Owner(o) in &owners {
        let (old_types, held) = &before[o];
        let types = data_types(&v, o);
        let k = kind(&v, origin, o, &types);
        let below = v.has_below(o);
        if o == origin && types != *old_types {
            return Ok(None);
        }
        let cut =
            |ts: &[u16]| ts.contains(&rtype::DNAME) || (o != origin && ts.contains(&rtype::NS));
        // Names below a cut that comes or goes change their kind, and so whether their
        // RRsets are signed: fine when every RRset there is one of the changes (a
        // delegation added or removed with its glue), whose kind is taken in the view.
        if cut(old_types) != cut(&types) {
            if !View::new(base).below_only(o, &changed) || !v.below_only(o, &changed) {
                return Ok(None); // RRsets below would be occluded or exposed unchanged
            }
            let only_ns_ds = |ts: &[u16]| ts.iter().all(|t| matches!(*t, rtype::NS | rtype::DS));
            let ns_moved = old_types.contains(&rtype::NS) != types.contains(&rtype::NS);
            if ns_moved && !(only_ns_ds(old_types) && only_ns_ds(&types)) {
                return Ok(None); // the other RRsets there would change how they are signed
            }
        }
        let Some(want) = chain.member(k, o, &types, k == Kind::Absent && below) else {
            return Ok(None);
        };
        // (NSEC3) A name joins or leaves the chain under a parent that has no data: the
        // chain's empty non-terminals above it may come or go. (A name that becomes an
        // empty non-terminal itself is refused by `member` just above.)
        if want.is_some() != *held
            && let (Chain::Nsec3(_), Some(parent)) = (&chain, o.parent())
            && parent != *origin
            && data_types(&v, &parent).is_empty()
        {
            return Ok(None);
        }
        let at = chain.owner(origin, o);
        match want {
            Some(bitmap) => {
                if !held {
                    // A placeholder, so the chain seen through the view holds it.
                    v.set(
                        &at,
                        ct,
                        Some(RrsetVal {
                            ttl: denial_ttl,
                            rdatas: Rdatas::default(),
                            sigs: Vec::new(),
                        }),
                    );
                    moved.push(at.clone());
                }
                members.insert(at, bitmap);
            }
            None if *held => {
                v.set(&at, ct, None);
                moved.push(at);
            }
            None => {}
        }
        kinds.insert(o.clone(), k);
    }
    // The records to make: each changed name's own, and the one before each record that
    // came or went.
    let mut remake: BTreeSet<Owner> = members.keys().map(|n| Owner(n.clone())).collect();
    for at in &moved {
        match v.prev_with(at, ct) {
            Ok(Some(prev)) => {
                remake.insert(Owner(prev.clone()));
            }
            Ok(None) => {}
            Err(_) => return Ok(None),
        }
    }
    let mut made: Vec<(Name, Rrset)> = Vec::new();
    for Owner(at) in &remake {
        let next = match v.next_with(at, ct) {
            Ok(next) => next.ok_or("the chain is empty")?.clone(),
            Err(_) => return Ok(None),
        };
        let bitmap = match members.get(at) {
            Some(b) => b.clone(),
            None => {
                let old = base.get(&key(at, ct)).and_then(|r| r.rdatas.first());
                match old.and_then(|d| parts(origin, ct, d)) {
                    Some((_, b)) => b,
                    None => return Ok(None),
                }
            }
        };
        let rd = chain.rdata(&next, &bitmap)?;
        let old = base.get(&key(at, ct));
        if old.is_some_and(|r| r.ttl == denial_ttl && r.rdatas.len() == 1 && r.rdatas.contains(&rd))
        {
            continue;
        }
        made.push((
            at.clone(),
            Rrset {
                rtype: ct,
                ttl: denial_ttl,
                rdatas: Rdatas::one(&rd),
            },
        ));
    }
    // Sign: the data RRsets that are authoritative, and the chain records made.
    let mut to_sign: Vec<(Name, Rrset)> = Vec::new();
    for ((o, t), new) in &data {
        let Some((ttl, rdatas)) = new else { continue };
        let signed = match kinds.get(o) {
            Some(Kind::Is(NodeKind::Apex | NodeKind::Auth)) => true,
            Some(Kind::Is(NodeKind::Delegation)) => *t == rtype::DS,
            _ => false,
        };
        if signed {
            to_sign.push((
                o.clone(),
                Rrset {
                    rtype: *t,
                    ttl: *ttl,
                    rdatas: rdatas.clone(),
                },
            ));
        }
    }
    to_sign.extend(made);
    let items: Vec<(&Name, &Rrset)> = to_sign.iter().map(|(o, s)| (o, s)).collect();
    let sigs = sign(&items)?;
    if sigs.len() != to_sign.len() {
        return Err("the signer returned fewer RRSIG sets than RRsets".into());
    }
    for ((o, set), sigs) in to_sign.iter().zip(sigs) {
        v.set(
            o,
            set.rtype,
            Some(RrsetVal {
                ttl: set.ttl,
                rdatas: set.rdatas.clone(),
                sigs,
            }),
        );
    }
    // Every changed name is checked by the rules it was built by (a self-check; followers
    // check again with the validator's own walk, `validate::incremental`).
    for Owner(o) in &owners {
        match check_owner(&v, origin, &chain, o) {
            Ok(()) => {}
            Err(ChainError::TooFar) => return Ok(None),
            Err(e @ ChainError::Broken(_)) => return Err(e.into()),
        }
    }
    let View { over, .. } = v;
    Ok(Some(
        over.into_iter()
            .filter(|(k, val)| val.is_some() || base.contains_key(k))
            .map(|((Owner(owner), rtype), val)| RrsetChange { owner, rtype, val })
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
