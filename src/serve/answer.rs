//! Authoritative answers from a served version (RFC 1034 §4.3.2, RFC 4035 §3.1, RFC 5155 §7.2).
//!
//! ```text
//!  qname ─► zone cut above it? ── yes ─► referral: NS, DS or proof of no DS, glue
//!        ─► name exists? ── yes ─► RRset | CNAME | NODATA (SOA + NSEC/NSEC3 of the name)
//!        ─► empty non-terminal? ─► NODATA (covering NSEC | matching NSEC3)
//!        ─► wildcard at the closest encloser? ─► synthesised answer + proof the name is absent
//!        ─► NXDOMAIN: SOA + proofs (name and wildcard absent; NSEC3 closest-encloser proof)
//! ```

use std::sync::Arc;

use crate::replica::state::{Owner, RrsetVal};
use crate::replica::view::{Key, View};
use crate::signer::Nsec3Params;
use crate::signer::nsec3;
use crate::zone::{Name, rtype};

/// One resource record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub owner: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Arc<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
}

#[derive(Debug, Default)]
pub struct Answer {
    pub nxdomain: bool,
    /// Authoritative (false for a referral).
    pub aa: bool,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
}

impl Answer {
    pub fn rcode(&self) -> Rcode {
        if self.nxdomain {
            Rcode::NxDomain
        } else {
            Rcode::NoError
        }
    }
}

struct Ctx<'a> {
    v: &'a View<'a>,
    origin: &'a Name,
    dnssec: bool,
    nsec3: Option<Nsec3Params>,
}

/// Appends an RRset's records (`data`) and its RRSIGs (`sigs`) as answer records.
pub(super) fn push_rrset(
    out: &mut Vec<Rr>,
    owner: &Name,
    t: u16,
    v: &RrsetVal,
    data: bool,
    sigs: bool,
) {
    let rr = |rtype, rdata| Rr {
        owner: owner.clone(),
        rtype,
        ttl: v.ttl,
        rdata,
    };
    if data {
        out.extend(v.rdatas.iter().map(|d| rr(t, Arc::from(&d[..]))));
    }
    if sigs {
        out.extend(v.sigs.iter().map(|s| rr(rtype::RRSIG, s.clone())));
    }
}

/// An RRset for an answer: its records, and its RRSIGs when DNSSEC is asked.
fn push(out: &mut Vec<Rr>, owner: &Name, t: u16, v: &RrsetVal, dnssec: bool) {
    push_rrset(out, owner, t, v, true, dnssec);
}

/// Answers `qname`/`qtype` from the version `v` of the zone at `origin`.
pub fn answer(v: &View<'_>, origin: &Name, qname: &Name, qtype: u16, dnssec: bool) -> Answer {
    let cx = Ctx {
        v,
        origin,
        dnssec,
        nsec3: v.nsec3_params(origin),
    };
    let mut a = Answer {
        aa: true,
        ..Default::default()
    };
    let mut qname = qname.clone();
    // A CNAME chain inside the zone is followed a few steps, as other servers do.
    for _ in 0..8 {
        match cx.step(&qname, qtype, &mut a) {
            Some(target) if target.is_subdomain_of(origin) => qname = target,
            _ => break,
        }
    }
    a
}

impl Ctx<'_> {
    fn exists(&self, name: &Name) -> bool {
        self.v
            .from(&(Owner(name.clone()), 0))
            .next()
            .is_some_and(|((o, t), _)| o.0 == *name && !self.only_nsec3(name, *t))
    }

    /// Whether `name` holds NSEC3 records and nothing else (not a name of the zone's data).
    fn only_nsec3(&self, name: &Name, first: u16) -> bool {
        if first != rtype::NSEC3 && first != rtype::RRSIG {
            return false;
        }
        self.v
            .from(&(Owner(name.clone()), 0))
            .take_while(|((o, _), _)| o.0 == *name)
            .all(|((_, t), _)| *t == rtype::NSEC3)
    }

    /// An empty non-terminal: no data here but some below.
    fn is_ent(&self, name: &Name) -> bool {
        self.v
            .after(&(Owner(name.clone()), u16::MAX))
            .next()
            .is_some_and(|((o, _), _)| o.0.is_subdomain_of(name) && o.0 != *name)
    }

    /// The highest zone cut strictly above or at `qname` (below the apex), if any.
    fn cut(&self, qname: &Name, qtype: u16) -> Option<Name> {
        let mut below = Vec::new();
        let mut n = qname.clone();
        while n != *self.origin {
            below.push(n.clone());
            n = n.parent()?;
        }
        for n in below.iter().rev() {
            if n == qname && qtype == rtype::DS {
                return None;
            }
            if self.v.get(n, rtype::NS).is_some() {
                return Some(n.clone());
            }
        }
        None
    }

    fn soa_negative(&self, a: &mut Answer) {
        if let Some(soa) = self.v.get(self.origin, rtype::SOA) {
            let min = soa
                .rdatas
                .first()
                .filter(|d| d.len() >= 4)
                .map(|d| u32::from_be_bytes(d[d.len() - 4..].try_into().unwrap()))
                .unwrap_or(soa.ttl);
            let neg = RrsetVal {
                ttl: soa.ttl.min(min),
                rdatas: soa.rdatas.clone(),
                sigs: soa.sigs.clone(),
            };
            push(&mut a.authority, self.origin, rtype::SOA, &neg, self.dnssec);
        }
    }

    /// Adds an RRset of the served version to `out` (with its RRSIGs when DNSSEC is asked).
    fn add(&self, out: &mut Vec<Rr>, owner: &Name, t: u16) -> bool {
        match self.v.get(owner, t) {
            Some(v) => {
                push(out, owner, t, v, self.dnssec);
                true
            }
            None => false,
        }
    }

    /// The NSEC that covers `name` (the last NSEC owner before it).
    fn covering_nsec(&self, name: &Name) -> Option<Name> {
        self.v
            .before(&(Owner(name.clone()), 0))
            .find(|((_, t), _)| *t == rtype::NSEC)
            .map(|((o, _), _)| o.0.clone())
    }

    fn add_nsec_covering(&self, a: &mut Answer, name: &Name) {
        if let Some(o) = self.covering_nsec(name)
            && !a
                .authority
                .iter()
                .any(|r| r.owner == o && r.rtype == rtype::NSEC)
        {
            self.add(&mut a.authority, &o, rtype::NSEC);
        }
    }

    fn nsec3_owner(&self, name: &Name) -> Option<Name> {
        let p = self.nsec3.as_ref()?;
        Some(nsec3::hashed_owner(&nsec3::hash(name, p), self.origin))
    }

    /// The NSEC3 whose owner is the hash of `name`, if there is one.
    fn nsec3_matching(&self, name: &Name) -> Option<Name> {
        let h = self.nsec3_owner(name)?;
        self.v.get(&h, rtype::NSEC3).map(|_| h)
    }

    /// The NSEC3 that covers the hash of `name` (wrapping around the end of the chain).
    fn nsec3_covering(&self, name: &Name) -> Option<Name> {
        let h = self.nsec3_owner(name)?;
        let key: Key = (Owner(h), rtype::NSEC3);
        let is_chain =
            |o: &Owner, t: u16| t == rtype::NSEC3 && o.0.parent().as_ref() == Some(self.origin);
        self.v
            .before(&key)
            .find(|((o, t), _)| is_chain(o, *t))
            .or_else(|| self.v.all_rev().find(|((o, t), _)| is_chain(o, *t)))
            .map(|((o, _), _)| o.0.clone())
    }

    fn add_nsec3(&self, a: &mut Answer, owner: Option<Name>) {
        if let Some(o) = owner
            && !a
                .authority
                .iter()
                .any(|r| r.owner == o && r.rtype == rtype::NSEC3)
        {
            self.add(&mut a.authority, &o, rtype::NSEC3);
        }
    }

    /// The closest encloser of a name that does not exist, and the next closer name.
    fn closest_encloser(&self, qname: &Name) -> (Name, Name) {
        let mut next = qname.clone();
        let mut n = qname.parent();
        while let Some(p) = n {
            if p == *self.origin || self.exists(&p) || self.is_ent(&p) {
                return (p, next);
            }
            next = p.clone();
            n = p.parent();
        }
        (self.origin.clone(), next)
    }

    /// The closest *provable* encloser (RFC 5155 §7.2.1): the nearest ancestor that has an
    /// NSEC3 (with opt-out, existing names may have none), and the next closer name.
    fn provable_encloser(&self, qname: &Name) -> (Name, Name) {
        let mut next = qname.clone();
        let mut n = qname.parent();
        while let Some(p) = n {
            if p == *self.origin || self.nsec3_matching(&p).is_some() {
                return (p, next);
            }
            next = p.clone();
            n = p.parent();
        }
        (self.origin.clone(), next)
    }

    /// NSEC3 proof for a name without data of the type asked: its own NSEC3, or, when it
    /// has none (opt-out), the closest provable encloser proof (RFC 5155 §7.2.3–7.2.4).
    fn nsec3_nodata(&self, a: &mut Answer, qname: &Name) {
        match self.nsec3_matching(qname) {
            Some(m) => self.add_nsec3(a, Some(m)),
            None => {
                let (ce, next) = self.provable_encloser(qname);
                self.closest_encloser_proof(a, &ce, &next);
            }
        }
    }

    /// RFC 5155 §7.2.1: the closest encloser's NSEC3 and the one covering the next closer.
    fn closest_encloser_proof(&self, a: &mut Answer, ce: &Name, next: &Name) {
        self.add_nsec3(a, self.nsec3_matching(ce));
        self.add_nsec3(a, self.nsec3_covering(next));
    }

    fn referral(&self, a: &mut Answer, cut: &Name) {
        a.aa = false;
        self.add(&mut a.authority, cut, rtype::NS);
        if self.dnssec && !self.add(&mut a.authority, cut, rtype::DS) {
            if self.nsec3.is_some() {
                match self.nsec3_matching(cut) {
                    Some(m) => self.add_nsec3(a, Some(m)),
                    None => {
                        // Opt-out: the closest provable encloser and the opt-out span.
                        let (ce, next) = self.provable_encloser(cut);
                        self.closest_encloser_proof(a, &ce, &next);
                    }
                }
            } else {
                self.add(&mut a.authority, cut, rtype::NSEC);
            }
        }
        // Glue for name servers at or below the cut.
        if let Some(ns) = self.v.get(cut, rtype::NS) {
            for d in &ns.rdatas {
                let Ok(target) = Name::from_wire(d) else {
                    continue;
                };
                if target.is_subdomain_of(cut) {
                    for t in [rtype::A, rtype::AAAA] {
                        if let Some(g) = self.v.get(&target, t) {
                            push(&mut a.additional, &target, t, g, false);
                        }
                    }
                }
            }
        }
    }

    /// One step of the answer; returns a CNAME target to follow.
    fn step(&self, qname: &Name, qtype: u16, a: &mut Answer) -> Option<Name> {
        let dnssec = self.dnssec;
        if let Some(cut) = self.cut(qname, qtype) {
            if a.answer.is_empty() {
                self.referral(a, &cut);
            }
            return None;
        }
        if self.exists(qname) {
            if qtype == 255 {
                let all: Vec<(u16, &RrsetVal)> = self
                    .v
                    .from(&(Owner(qname.clone()), 0))
                    .take_while(|((o, _), _)| o.0 == *qname)
                    .map(|((_, t), v)| (*t, v))
                    .collect();
                for (t, v) in all {
                    push(&mut a.answer, qname, t, v, dnssec);
                }
                return None;
            }
            if self.add(&mut a.answer, qname, qtype) {
                return None;
            }
            if let Some(c) = self.v.get(qname, rtype::CNAME) {
                push(&mut a.answer, qname, rtype::CNAME, c, dnssec);
                return c.rdatas.first().and_then(|d| Name::from_wire(d).ok());
            }
            // NODATA.
            self.soa_negative(a);
            if dnssec {
                if self.nsec3.is_some() {
                    self.nsec3_nodata(a, qname);
                } else {
                    self.add(&mut a.authority, qname, rtype::NSEC);
                }
            }
            return None;
        }
        if self.is_ent(qname) {
            self.soa_negative(a);
            if dnssec {
                if self.nsec3.is_some() {
                    self.nsec3_nodata(a, qname);
                } else {
                    self.add_nsec_covering(a, qname);
                }
            }
            return None;
        }
        let (ce, next) = self.closest_encloser(qname);
        let wild = ce.prepend(b"*").ok();
        if let Some(w) = wild.as_ref().filter(|w| self.exists(w)) {
            // Wildcard expansion: the records take the query name; the proof shows the
            // query name itself does not exist.
            let src = self.v.get(w, qtype).or_else(|| self.v.get(w, rtype::CNAME));
            let t = if self.v.get(w, qtype).is_some() {
                qtype
            } else {
                rtype::CNAME
            };
            match src {
                Some(v) => {
                    push(&mut a.answer, qname, t, v, dnssec);
                    if dnssec {
                        if self.nsec3.is_some() {
                            self.add_nsec3(a, self.nsec3_covering(&next));
                        } else {
                            self.add_nsec_covering(a, qname);
                        }
                    }
                    if t == rtype::CNAME {
                        return v.rdatas.first().and_then(|d| Name::from_wire(d).ok());
                    }
                }
                None => {
                    // Wildcard NODATA.
                    self.soa_negative(a);
                    if dnssec {
                        if self.nsec3.is_some() {
                            self.closest_encloser_proof(a, &ce, &next);
                            self.add_nsec3(a, self.nsec3_matching(w));
                        } else {
                            self.add_nsec_covering(a, qname);
                            self.add(&mut a.authority, w, rtype::NSEC);
                        }
                    }
                }
            }
            return None;
        }
        // The name does not exist.
        if a.answer.is_empty() {
            a.nxdomain = true;
        }
        self.soa_negative(a);
        if dnssec {
            if self.nsec3.is_some() {
                let (pce, pnext) = self.provable_encloser(qname);
                self.closest_encloser_proof(a, &pce, &pnext);
                if let Some(w) = &wild {
                    self.add_nsec3(a, self.nsec3_covering(w));
                }
            } else {
                self.add_nsec_covering(a, qname);
                if let Some(w) = &wild {
                    self.add_nsec_covering(a, w);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::state::ZoneState;
    use crate::signer::Denial;

    fn signed(denial: Denial) -> (ZoneState, Name) {
        let (z, origin, _) = crate::testkit::examples::signed_example(denial);
        (z, origin)
    }

    fn n(s: &str) -> Name {
        Name::parse(s.as_bytes(), None).unwrap()
    }

    fn nsec3_flags(a: &Answer) -> Vec<u8> {
        a.authority
            .iter()
            .filter(|r| r.rtype == rtype::NSEC3)
            .map(|r| r.rdata[1])
            .collect()
    }

    #[test]
    fn opt_out_nodata_and_referral_carry_a_closest_provable_encloser_proof() {
        let (z, origin) = signed(Denial::Nsec3(Nsec3Params {
            iterations: 0,
            salt: Vec::new(),
            opt_out: true,
        }));
        let v = View {
            content: &z.content,
            overlay: None,
        };
        // The insecure delegation has no NSEC3 of its own under opt-out.
        let p = Nsec3Params {
            iterations: 0,
            salt: Vec::new(),
            opt_out: true,
        };
        let hash_of = |name: &Name| nsec3::hash(name, &p).to_vec();
        // (owner hash, next hash, flags) of each NSEC3 in an answer.
        let chain = |a: &Answer| -> Vec<(Vec<u8>, Vec<u8>, u8)> {
            a.authority
                .iter()
                .filter(|r| r.rtype == rtype::NSEC3)
                .map(|r| {
                    let label = r.owner.labels().next().unwrap().to_vec();
                    let own = data_encoding::BASE32HEX_NOPAD
                        .decode(&label.to_ascii_uppercase())
                        .unwrap();
                    let salt = r.rdata[4] as usize;
                    let hl = r.rdata[5 + salt] as usize;
                    let next = r.rdata[6 + salt..6 + salt + hl].to_vec();
                    (own, next, r.rdata[1])
                })
                .collect()
        };
        let covers = |c: &[(Vec<u8>, Vec<u8>, u8)], h: &[u8]| {
            c.iter().any(|(o, nx, f)| {
                *f & 1 == 1
                    && if o < nx {
                        o.as_slice() < h && h < nx.as_slice()
                    } else {
                        h > o.as_slice() || h < nx.as_slice()
                    }
            })
        };
        for (q, t) in [
            ("insecure.example.", rtype::DS),
            ("x.insecure.example.", rtype::A),
        ] {
            let a = answer(&v, &origin, &n(q), t, true);
            let c = chain(&a);
            assert!(
                c.iter().any(|(o, _, _)| *o == hash_of(&origin)),
                "{q}: the closest provable encloser (the apex) is proven: {a:?}"
            );
            assert!(
                covers(&c, &hash_of(&n("insecure.example."))),
                "{q}: the next closer name is covered by an opt-out NSEC3: {a:?}"
            );
            assert!(a.authority.iter().any(|r| r.rtype == rtype::RRSIG));
        }
        // NXDOMAIN: encloser, next closer and wildcard covered; NODATA at a name: its own.
        let a = answer(&v, &origin, &n("nothere.example."), rtype::A, true);
        assert!(a.nxdomain && !nsec3_flags(&a).is_empty());
        let a = answer(&v, &origin, &n("mail.example."), rtype::TXT, true);
        assert_eq!(nsec3_flags(&a).len(), 1, "NODATA: the name's own NSEC3");
        // Without DO: no proofs.
        let a = answer(&v, &origin, &n("nothere.example."), rtype::A, false);
        assert!(a.authority.iter().all(|r| r.rtype == rtype::SOA));
    }

    #[test]
    fn wildcard_and_cname_answers() {
        let (z, origin) = signed(Denial::Nsec);
        let v = View {
            content: &z.content,
            overlay: None,
        };
        let a = answer(&v, &origin, &n("anything.wild.example."), rtype::A, true);
        assert_eq!(
            a.answer[0].owner,
            n("anything.wild.example."),
            "synthesised owner"
        );
        assert!(
            a.authority.iter().any(|r| r.rtype == rtype::NSEC),
            "proof the name is absent"
        );
        let a = answer(&v, &origin, &n("alias.example."), rtype::A, false);
        let types: Vec<u16> = a.answer.iter().map(|r| r.rtype).collect();
        assert_eq!(
            types,
            vec![rtype::CNAME, rtype::A],
            "CNAME followed inside the zone"
        );
        let a = answer(&v, &origin, &n("b.c.example."), rtype::A, true);
        assert!(
            !a.nxdomain && a.answer.is_empty(),
            "empty non-terminal: NODATA"
        );
    }
}
