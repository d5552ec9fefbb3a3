//! A hidden primary's zone as the leader holds it between transfers.
//!
//! After a whole transfer (AXFR) every record is held, as it came, until a version built
//! from them is published. From then on, and on a leader that takes over, the replicated
//! content *is* the input, apart from the SOA serial and the records the signer makes, so
//! only the apex and the owners that IXFRs touched since are held: a new leader starts
//! without copying the zone, and the leader does not hold a large zone twice.

use std::collections::{BTreeMap, BTreeSet};

use aws_lc_rs::digest;

use crate::dns::client::InRr;
use crate::replica::state::Owner;
use crate::zone::{Name, rtype, set_soa_serial, soa_serial};

pub use crate::replica::state::Content;
/// A record's key within its owner: (type, rdata).
pub type RecKey = (u16, Box<[u8]>);

/// One owner's records: (type, rdata) → TTL, in key order. A sorted vector: an owner has a
/// handful, and a map cost a ~340-byte node for each owner of a whole transfer (~370 MiB
/// at 1M delegations).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnerRecs(Vec<(RecKey, u32)>);

impl OwnerRecs {
    pub fn new() -> OwnerRecs {
        OwnerRecs::default()
    }

    fn find(&self, k: &RecKey) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.cmp(k))
    }

    /// Sets the TTL of record `k`, adding it when new; the TTL it had.
    pub fn insert(&mut self, k: RecKey, ttl: u32) -> Option<u32> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, ttl)),
            Err(i) => {
                self.0.insert(i, (k, ttl));
                None
            }
        }
    }

    pub fn remove(&mut self, k: &RecKey) -> Option<u32> {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }

    pub fn retain(&mut self, mut f: impl FnMut(&RecKey, &mut u32) -> bool) {
        self.0.retain_mut(|(k, v)| f(k, v));
    }

    /// The records from `from.start` on.
    pub fn range(
        &self,
        from: std::ops::RangeFrom<RecKey>,
    ) -> impl Iterator<Item = (&RecKey, &u32)> {
        let i = self.find(&from.start).unwrap_or_else(|i| i);
        self.0[i..].iter().map(|(k, v)| (k, v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RecKey, &u32)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &RecKey> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// As a map would: a later record of the same key sets its TTL.
impl FromIterator<(RecKey, u32)> for OwnerRecs {
    fn from_iter<I: IntoIterator<Item = (RecKey, u32)>>(it: I) -> OwnerRecs {
        let mut r = OwnerRecs::new();
        for (k, v) in it {
            r.insert(k, v);
        }
        r.0.shrink_to_fit();
        r
    }
}
/// One IXFR delta: records removed, records added (SOAs included).
pub type Delta = (Vec<InRr>, Vec<InRr>);

pub use crate::zone::rtype::made_by_signer;

fn hash_record(ctx: &mut digest::Context, owner: &Name, t: u16, ttl: u32, d: &[u8]) {
    ctx.update(owner.as_wire());
    ctx.update(&t.to_be_bytes());
    ctx.update(&ttl.to_be_bytes());
    ctx.update(&(d.len() as u32).to_be_bytes());
    ctx.update(d);
}

fn finish(ctx: digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The digest of a primary's zone after IXFR `deltas`: chained from the one before, so it
/// costs the size of the change, not of the zone.
pub fn chained_digest(prev: &[u8; 32], deltas: &[Delta]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    for (del, add) in deltas {
        for (mark, recs) in [(0u8, del), (1u8, add)] {
            for (o, t, ttl, d) in recs {
                ctx.update(&[mark]);
                hash_record(&mut ctx, o, *t, *ttl, d);
            }
        }
    }
    finish(ctx)
}

/// A primary's zone: every owner (`whole`), or the apex and the owners changed since the
/// replicated content was built from it (an empty entry: the owner is gone).
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    whole: bool,
    apex: Owner,
    owners: BTreeMap<Owner, OwnerRecs>,
}

/// `owner`'s unsigned records in the replicated content.
fn content_recs(content: &Content, owner: &Owner) -> OwnerRecs {
    content
        .range((owner.clone(), 0)..=(owner.clone(), u16::MAX))
        .filter(|((_, t), _)| !made_by_signer(*t))
        .flat_map(|((_, t), v)| v.rdatas.iter().map(move |d| ((*t, Box::from(d)), v.ttl)))
        .collect()
}

impl Held {
    /// The records of a whole transfer.
    pub fn whole(apex: Owner, mut recs: Vec<InRr>) -> Held {
        use rayon::slice::ParallelSliceMut;
        // Sorted (stable: of two equal records the later one's TTL wins, as a map insert
        // would), grouped by owner, and the map built from sorted input with full nodes.
        recs.par_sort_by(|a, b| {
            a.0.cmp_canonical(&b.0)
                .then(a.1.cmp(&b.1))
                .then_with(|| a.3.cmp(&b.3))
        });
        let mut grouped: Vec<(Owner, OwnerRecs)> = Vec::new();
        for (o, t, ttl, d) in recs {
            let k = (t, d);
            match grouped.last_mut() {
                Some((last, r)) if last.0 == o => match r.0.last_mut() {
                    Some((lk, lttl)) if *lk == k => *lttl = ttl,
                    _ => r.0.push((k, ttl)),
                },
                _ => grouped.push((Owner(o), OwnerRecs(vec![(k, ttl)]))),
            }
        }
        for (_, r) in &mut grouped {
            r.0.shrink_to_fit(); // a vector pushed to holds room for four
        }
        let owners: BTreeMap<Owner, OwnerRecs> = grouped.into_iter().collect();
        Held {
            whole: true,
            apex,
            owners,
        }
    }

    /// The input of the version whose content is `content`, made from the primary's
    /// `input_serial`.
    pub fn over(apex: Owner, content: &Content, input_serial: u32) -> Held {
        let mut at_apex = content_recs(content, &apex);
        let soa: Vec<_> = at_apex
            .keys()
            .filter(|(t, _)| *t == rtype::SOA)
            .cloned()
            .collect();
        for k in soa {
            let ttl = at_apex.remove(&k).unwrap_or(0);
            let mut d = k.1;
            set_soa_serial(&mut d, input_serial);
            at_apex.insert((rtype::SOA, d), ttl);
        }
        Held {
            whole: false,
            owners: BTreeMap::from([(apex.clone(), at_apex)]),
            apex,
        }
    }

    /// A digest of the held records, to tell one input from another (after a whole
    /// transfer, when every record is held).
    pub fn digest(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (o, recs) in &self.owners {
            for ((t, d), ttl) in recs.iter() {
                hash_record(&mut ctx, &o.0, *t, *ttl, d);
            }
        }
        finish(ctx)
    }

    /// After a whole transfer, against the content of the version built from the input
    /// before it: the RRsets whose records or TTL differ (the SOA always), that are new
    /// in the transfer, or that it no longer has, apart from what the signer makes; `None`
    /// when that is most of the zone. One walk over both, in canonical order: no text of
    /// the zone, no second model of it.
    pub fn changed_against(&self, content: &Content) -> Option<Vec<(Owner, u16)>> {
        let mut cur = content
            .iter()
            .filter(|((_, t), _)| !made_by_signer(*t))
            .peekable();
        let mut changed = Vec::new();
        for (o, recs) in &self.owners {
            let recs = &recs.0;
            let mut i = 0;
            while i < recs.len() {
                let t = recs[i].0.0;
                let n = recs[i..].iter().take_while(|((tt, _), _)| *tt == t).count();
                let set = &recs[i..i + n];
                i += n;
                if made_by_signer(t) {
                    continue;
                }
                // What the content has before this RRset is gone from the transfer.
                while let Some(((co, ct), _)) = cur.next_if(|((co, ct), _)| (co, *ct) < (o, t)) {
                    changed.push((co.clone(), *ct));
                }
                let Some((_, v)) = cur.next_if(|((co, ct), _)| co == o && *ct == t) else {
                    changed.push((o.clone(), t)); // new in the transfer
                    continue;
                };
                // (The apex's SOA differs anyway: the version has its own serial.)
                let same = (t != rtype::SOA || *o != self.apex)
                    && v.rdatas.len() == n
                    && set
                        .iter()
                        .zip(v.rdatas.iter())
                        .all(|(((_, d), ttl), cd)| **d == *cd && *ttl == v.ttl);
                if !same {
                    changed.push((o.clone(), t));
                }
            }
        }
        changed.extend(cur.map(|((co, ct), _)| (co.clone(), *ct)));
        // Most of the zone changed: the whole build is the better path.
        (changed.len() <= content.len() / 4 + 16).then_some(changed)
    }

    /// Whether every record is held (no content needed).
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// Drops all but the apex: call once the replicated content was built from this input.
    pub fn lean(&mut self) {
        let apex = self.owners.remove(&self.apex).unwrap_or_default();
        self.owners = BTreeMap::from([(self.apex.clone(), apex)]);
        self.whole = false;
    }

    /// `owner`'s records.
    pub fn at(&self, content: &Content, owner: &Owner) -> OwnerRecs {
        match self.owners.get(owner) {
            Some(r) => r.clone(),
            None if self.whole => OwnerRecs::new(),
            None => content_recs(content, owner),
        }
    }

    /// Whether the zone holds an RRset (owner, type).
    #[cfg(test)]
    pub fn has(&self, content: &Content, owner: &Owner, t: u16) -> bool {
        let from = (t, Box::<[u8]>::default());
        match self.owners.get(owner) {
            Some(r) => r.range(from..).next().is_some_and(|((tt, _), _)| *tt == t),
            None if self.whole => false,
            None => content.contains_key(&(owner.clone(), t)) && !made_by_signer(t),
        }
    }

    /// The SOA rdata with its serial set to `serial` (what an IXFR asks from).
    pub fn soa(&self, serial: u32) -> Option<Vec<u8>> {
        let recs = self.owners.get(&self.apex)?;
        let ((_, d), _) = recs
            .range((rtype::SOA, Box::<[u8]>::default())..)
            .next()
            .filter(|((t, _), _)| *t == rtype::SOA)?;
        let mut d = d.to_vec();
        set_soa_serial(&mut d, serial).then_some(d)
    }

    /// Applies IXFR deltas, starting at serial `from`, and returns the RRsets they touched;
    /// on an error nothing changes.
    pub fn apply(
        &mut self,
        content: &Content,
        deltas: Vec<Delta>,
        from: u32,
    ) -> Result<BTreeSet<(Owner, u16)>, String> {
        let mut work: BTreeMap<Owner, OwnerRecs> = BTreeMap::new();
        for (del, add) in &deltas {
            for (o, _, _, _) in del.iter().chain(add) {
                let o = Owner(o.clone());
                if let std::collections::btree_map::Entry::Vacant(e) = work.entry(o) {
                    let recs = self.at(content, e.key());
                    e.insert(recs);
                }
            }
        }
        let mut touched = BTreeSet::new();
        let mut at = from;
        for (del, add) in deltas {
            match del.first() {
                Some((_, t, _, d)) if *t == rtype::SOA && soa_serial(d) == Some(at) => {}
                _ => return Err(format!("IXFR delta does not start from serial {at}")),
            }
            for (o, t, _, d) in del {
                let owner = Owner(o);
                let recs = work.get_mut(&owner).expect("gathered above");
                if t == rtype::SOA {
                    // The apex's, whatever its serial.
                    recs.retain(|(tt, _), _| *tt != rtype::SOA);
                } else if recs.remove(&(t, d)).is_none() {
                    return Err(format!(
                        "IXFR removes a record that is not in the zone ({} type {t})",
                        owner.0.to_text()
                    ));
                }
                touched.insert((owner, t));
            }
            for (o, t, ttl, d) in add {
                if t == rtype::SOA {
                    at = soa_serial(&d).unwrap_or(at);
                }
                let owner = Owner(o);
                work.get_mut(&owner)
                    .expect("gathered above")
                    .insert((t, d), ttl);
                touched.insert((owner, t));
            }
        }
        self.owners.extend(work);
        Ok(touched)
    }

    /// Every record at `owners`, as master-file text.
    pub fn text_at<'a>(
        &self,
        content: &Content,
        owners: impl Iterator<Item = &'a Owner>,
    ) -> Vec<u8> {
        let recs: Vec<(Owner, OwnerRecs)> =
            owners.map(|o| (o.clone(), self.at(content, o))).collect();
        crate::dns::client::to_text(
            recs.iter()
                .flat_map(|(o, r)| r.iter().map(move |((t, d), ttl)| (&o.0, *t, *ttl, &d[..]))),
        )
    }

    /// The whole zone as master-file text.
    pub fn text(&self, content: &Content) -> Vec<u8> {
        let held = self
            .owners
            .iter()
            .flat_map(|(o, r)| r.iter().map(move |((t, d), ttl)| (&o.0, *t, *ttl, &d[..])));
        if self.whole {
            return crate::dns::client::to_text(held);
        }
        let rest = content
            .iter()
            .filter(|((o, t), _)| !made_by_signer(*t) && !self.owners.contains_key(o))
            .flat_map(|((o, t), v)| v.rdatas.iter().map(move |d| (&o.0, *t, v.ttl, d)));
        crate::dns::client::to_text(rest.chain(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::RrsetVal;

    fn n(s: &str) -> Name {
        Name::parse(s.as_bytes(), None).unwrap()
    }

    fn soa(serial: u32) -> Box<[u8]> {
        let mut d = b"\x02ns\x04test\x00\x04host\x04test\x00".to_vec();
        d.extend_from_slice(&serial.to_be_bytes());
        d.extend_from_slice(&[0; 16]);
        d.into_boxed_slice()
    }

    fn a(ip: u8) -> Box<[u8]> {
        vec![192, 0, 2, ip].into_boxed_slice()
    }

    fn rr(o: &str, t: u16, d: Box<[u8]>) -> InRr {
        (n(o), t, 300, d)
    }

    #[test]
    fn a_whole_transfer_is_held_by_owner_in_order_and_a_repeated_record_keeps_the_later_ttl() {
        let mut later = rr("www.test.", rtype::A, a(1));
        later.2 = 60;
        let recs = vec![
            rr("www.test.", rtype::A, a(2)),
            rr("test.", rtype::SOA, soa(1)),
            rr("b.test.", rtype::A, a(9)),
            rr("www.test.", rtype::A, a(1)),
            rr("www.test.", rtype::TXT, vec![1, b'x'].into()),
            later,
        ];
        let held = Held::whole(Owner(n("test.")), recs);
        let www = held.at(&Content::new(), &Owner(n("www.test.")));
        let got: Vec<(u16, u8, u32)> = www
            .iter()
            .map(|((t, d), ttl)| (*t, d[d.len() - 1], *ttl))
            .collect();
        assert_eq!(
            got,
            vec![
                (rtype::A, 1, 60),
                (rtype::A, 2, 300),
                (rtype::TXT, b'x', 300)
            ]
        );
        assert!(held.has(&Content::new(), &Owner(n("b.test.")), rtype::A));
        assert!(!held.has(&Content::new(), &Owner(n("b.test.")), rtype::TXT));
        assert_eq!(held.soa(7).map(|d| soa_serial(&d)), Some(Some(7)));
        let text = String::from_utf8(held.text(&Content::new())).unwrap();
        let owners: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(owners.first(), Some(&"test."), "{text}");
        assert_eq!(owners.len(), 5, "{text}");
    }

    fn deltas() -> Vec<Delta> {
        vec![
            (
                vec![
                    rr("test.", rtype::SOA, soa(1)),
                    rr("www.test.", rtype::A, a(1)),
                ],
                vec![
                    rr("test.", rtype::SOA, soa(2)),
                    rr("www.test.", rtype::A, a(2)),
                ],
            ),
            (
                vec![rr("test.", rtype::SOA, soa(2))],
                vec![
                    rr("test.", rtype::SOA, soa(3)),
                    rr("new.test.", rtype::A, a(3)),
                ],
            ),
        ]
    }

    fn lines(text: Vec<u8>) -> Vec<String> {
        let mut v: Vec<String> = String::from_utf8(text)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn ixfr_deltas_apply_in_order_and_a_missing_record_is_refused() {
        let none = Content::new();
        let mut held = Held::whole(
            Owner(n("test.")),
            vec![
                rr("test.", rtype::SOA, soa(1)),
                rr("www.test.", rtype::A, a(1)),
                rr("old.test.", rtype::A, a(9)),
            ],
        );
        let first = held.digest();
        let touched = held.apply(&none, deltas(), 1).unwrap();
        assert_ne!(held.digest(), first, "the digest follows the records");
        assert_eq!(touched.len(), 3, "{touched:?}");
        assert!(held.has(&none, &Owner(n("www.test.")), rtype::A));
        assert!(held.has(&none, &Owner(n("new.test.")), rtype::A));
        assert!(!held.has(&none, &Owner(n("nowhere.test.")), rtype::A));
        assert_eq!(held.soa(3).unwrap(), soa(3).to_vec());
        assert_eq!(held.text(&none).iter().filter(|b| **b == b'\n').count(), 4);
        // A delta from the wrong serial, and one removing what is not there: no change.
        let before = held.clone();
        let wrong = vec![(
            vec![rr("test.", rtype::SOA, soa(7))],
            vec![rr("test.", rtype::SOA, soa(8))],
        )];
        let e = held.apply(&none, wrong, 3).unwrap_err();
        assert!(e.contains("does not start from serial 3"), "{e}");
        let missing = vec![(
            vec![
                rr("test.", rtype::SOA, soa(3)),
                rr("new.test.", rtype::A, a(3)),
                rr("www.test.", rtype::A, a(1)),
            ],
            vec![rr("test.", rtype::SOA, soa(4))],
        )];
        let e = held.apply(&none, missing, 3).unwrap_err();
        assert!(e.contains("not in the zone"), "{e}");
        assert_eq!(held, before, "a refused IXFR leaves the zone as it was");
        assert_eq!(held.digest(), before.digest());
    }

    /// Held over the replicated content, the zone reads the same as when held whole.
    #[test]
    fn over_the_content_reads_as_the_whole_zone() {
        let recs = vec![
            rr("test.", rtype::SOA, soa(1)),
            rr("www.test.", rtype::A, a(1)),
            rr("old.test.", rtype::A, a(9)),
        ];
        let mut whole = Held::whole(Owner(n("test.")), recs.clone());
        // The content as a version built from that input holds it: the SOA with the
        // published serial, and signer-made records beside.
        let mut content = Content::new();
        for (o, t, ttl, d) in recs {
            let d = if t == rtype::SOA { soa(2026) } else { d };
            content.insert(
                (Owner(o), t),
                RrsetVal {
                    ttl,
                    rdatas: crate::zone::Rdatas::one(&d),
                    sigs: vec![vec![1, 2, 3].into()],
                },
            );
        }
        content.insert(
            (Owner(n("www.test.")), rtype::NSEC),
            RrsetVal {
                ttl: 300,
                rdatas: crate::zone::Rdatas::one(&[0]),
                sigs: Vec::new(),
            },
        );
        let mut over = Held::over(Owner(n("test.")), &content, 1);
        assert_eq!(over.soa(1), whole.soa(1));
        assert_eq!(lines(over.text(&content)), lines(whole.text(&content)));
        assert!(!over.has(&content, &Owner(n("www.test.")), rtype::NSEC));
        whole.apply(&content, deltas(), 1).unwrap();
        over.apply(&content, deltas(), 1).unwrap();
        assert_eq!(lines(over.text(&content)), lines(whole.text(&content)));
        let owners = [Owner(n("www.test.")), Owner(n("new.test."))];
        assert_eq!(
            lines(over.text_at(&content, owners.iter())),
            lines(whole.text_at(&content, owners.iter()))
        );
        // Leaning a whole zone once the content holds it.
        whole.lean();
        assert!(!whole.is_whole());
        assert_eq!(whole.soa(3).unwrap(), soa(3).to_vec());
    }

    #[test]
    fn a_whole_transfer_is_compared_with_the_content_rrset_by_rrset() {
        let recs = vec![
            rr("test.", rtype::SOA, soa(1)),
            rr("test.", rtype::DNSKEY, vec![1, 1, 3, 13].into()),
            rr("www.test.", rtype::A, a(1)),
            rr("www.test.", rtype::A, a(2)),
            rr("old.test.", rtype::A, a(9)),
        ];
        // The content of the version built from `recs`: the signer's records beside.
        let mut content = Content::new();
        let whole = Held::whole(Owner(n("test.")), recs.clone());
        for (o, recs) in &whole.owners {
            for t in [rtype::SOA, rtype::A] {
                let ds: Vec<Vec<u8>> = recs
                    .iter()
                    .filter(|((tt, _), _)| *tt == t)
                    .map(|((_, d), _)| d.to_vec())
                    .collect();
                if !ds.is_empty() {
                    let v = RrsetVal {
                        ttl: 300,
                        rdatas: ds.into(),
                        sigs: Vec::new(),
                    };
                    content.insert((o.clone(), t), v);
                }
            }
            let nsec = RrsetVal {
                ttl: 300,
                rdatas: crate::zone::Rdatas::one(&[0]),
                sigs: Vec::new(),
            };
            content.insert((o.clone(), rtype::NSEC), nsec);
        }
        let apex_soa = vec![(Owner(n("test.")), rtype::SOA)];
        assert_eq!(whole.changed_against(&content), Some(apex_soa.clone()));
        // One record differs, one TTL differs: those RRsets (and the SOA).
        let mut other = recs.clone();
        other[3].3 = a(3);
        other[4].2 = 60;
        let changed = Held::whole(Owner(n("test.")), other).changed_against(&content);
        let mut want = apex_soa.clone();
        want.push((Owner(n("old.test.")), rtype::A));
        want.push((Owner(n("www.test.")), rtype::A));
        want.sort();
        assert_eq!(
            changed.map(|mut c| {
                c.sort();
                c
            }),
            Some(want)
        );
        // A name or a type more or less: those RRsets, new or gone.
        let sorted = |c: Option<Vec<(Owner, u16)>>| {
            c.map(|mut c| {
                c.sort();
                c
            })
        };
        let with = |k: (Owner, u16)| {
            let mut w = apex_soa.clone();
            w.push(k);
            w.sort();
            Some(w)
        };
        let mut more = recs.clone();
        more.push(rr("new.test.", rtype::A, a(4)));
        assert_eq!(
            sorted(Held::whole(Owner(n("test.")), more).changed_against(&content)),
            with((Owner(n("new.test.")), rtype::A))
        );
        let mut typed = recs.clone();
        typed.push(rr("www.test.", rtype::TXT, vec![1, b'x'].into()));
        assert_eq!(
            sorted(Held::whole(Owner(n("test.")), typed).changed_against(&content)),
            with((Owner(n("www.test.")), rtype::TXT))
        );
        let fewer = recs[..4].to_vec();
        assert_eq!(
            sorted(Held::whole(Owner(n("test.")), fewer).changed_against(&content)),
            with((Owner(n("old.test.")), rtype::A))
        );
        // Most of the zone new: left to the whole build.
        let mut many = recs.clone();
        for i in 0..40 {
            many.push(rr(&format!("n{i}.test."), rtype::A, a(4)));
        }
        assert_eq!(
            Held::whole(Owner(n("test.")), many).changed_against(&content),
            None
        );
    }
}
