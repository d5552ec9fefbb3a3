//! A changed input file against the current version, without a model of the whole file.
//!
//! Two passes over the text, piece by piece on all cores, keep only sums and the records
//! that matter. The first adds each record's digest into the sum of its owner's bucket;
//! the sums are compared with the same sums over the current version's unsigned content.
//! The second keeps the records of the buckets that differ, and the apex's, and builds them
//! into a small zone, which is compared with the content RRset by RRset. At 1M delegations
//! the whole file parsed and built into a zone had taken the leader ~600 MiB over the
//! content it holds.
//!
//! Equal sums are taken as equal records: each sum adds SHA-256 digests of (owner, type,
//! TTL, rdata) as four 64-bit lanes. A bucket that differs is compared exactly.

use std::path::Path;

use aws_lc_rs::digest;

use crate::ingest::held::made_by_signer;
use crate::replica::state::{Owner, ZoneState};
use crate::zone::parse::for_each_piece;
use crate::zone::{Name, ParseOptions, Parsed, Record, Zone, rtype};

/// Buckets of owners: a changed name brings ~60 others of its bucket into the small zone
/// at 1M names.
const BUCKETS: usize = 16_384;
/// Bytes of text per piece parsed at once (its records are dropped before the next).
const PIECE: usize = 2 << 20;

pub type Sum = [u64; 4];

fn bucket(owner: &Name) -> usize {
    // Over the name as it compares (case-insensitively).
    let h = crate::fnv1a(owner.as_wire().iter().map(u8::to_ascii_lowercase));
    (h % BUCKETS as u64) as usize
}

fn record_sum(owner: &Name, t: u16, ttl: u32, d: &[u8]) -> Sum {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&owner.as_wire().to_ascii_lowercase());
    ctx.update(&t.to_be_bytes());
    ctx.update(&ttl.to_be_bytes());
    ctx.update(&(d.len() as u32).to_be_bytes());
    ctx.update(d);
    let h = ctx.finish();
    let mut s = [0u64; 4];
    for (lane, c) in s.iter_mut().zip(h.as_ref().chunks_exact(8)) {
        *lane = u64::from_le_bytes(c.try_into().expect("8 octets"));
    }
    s
}

fn add(to: &mut Sum, s: &Sum) {
    for (a, b) in to.iter_mut().zip(s) {
        *a = a.wrapping_add(*b);
    }
}

/// Records that feed the sums: the apex's SOA differs anyway (the version has its own
/// serial), and the signer's records are not input.
fn counted(origin: &Name, owner: &Name, t: u16) -> bool {
    !(t == rtype::SOA && owner == origin) && !made_by_signer(t)
}

/// The input `text` as a small zone of the apex and the owners whose records may differ
/// from the current version `z`, and the RRsets that do differ (new and gone ones too);
/// `None` when most of the zone differs, or the text must be parsed whole to say what is
/// wrong with it (or cannot be cut into pieces). [`content_sums`], [`differing`] and
/// [`compare`] in turn, on one state.
pub fn file_delta(
    z: &ZoneState,
    origin: &Name,
    text: &[u8],
    path: &Path,
    opts: &ParseOptions,
) -> Option<(Zone, Vec<(Name, u16)>)> {
    let want = content_sums(z, origin);
    let (mini, differ) = differing(text, path, opts, &want)?;
    let changed = compare(z, origin, &mini, &differ)?;
    Some((mini, changed))
}

/// The sums of the version's unsigned records per bucket (~1 s at 1M delegations).
pub fn content_sums(z: &ZoneState, origin: &Name) -> Vec<Sum> {
    let mut want = vec![[0u64; 4]; BUCKETS];
    for ((o, t), v) in &z.content {
        if counted(origin, &o.0, *t) {
            let b = bucket(&o.0);
            for d in v.rdatas.iter() {
                add(&mut want[b], &record_sum(&o.0, *t, v.ttl, d));
            }
        }
    }
    want
}

/// The two passes over the text (no state needed): the small zone of the buckets whose
/// sums differ from `want` and of the apex, and which buckets those are.
pub fn differing(
    text: &[u8],
    path: &Path,
    opts: &ParseOptions,
    want: &[Sum],
) -> Option<(Zone, Vec<bool>)> {
    let origin = &opts.origin;
    let pieces = for_each_piece(text, path, opts, PIECE, |recs| {
        let mut sums = vec![[0u64; 4]; BUCKETS];
        for r in recs.iter().filter(|r| counted(origin, &r.owner, r.rtype)) {
            add(
                &mut sums[bucket(&r.owner)],
                &record_sum(&r.owner, r.rtype, r.ttl, &r.rdata),
            );
        }
        sums
    })?;
    let mut have = vec![[0u64; 4]; BUCKETS];
    for p in pieces {
        for (h, s) in have.iter_mut().zip(&p) {
            add(h, s);
        }
    }
    let differ: Vec<bool> = have.iter().zip(want).map(|(h, w)| h != w).collect();
    drop(have);
    let kept = for_each_piece(text, path, opts, PIECE, |recs| {
        recs.into_iter()
            .filter(|r| differ[bucket(&r.owner)] || r.owner == *origin)
            .collect::<Vec<Record>>()
    })?;
    let parsed = Parsed {
        records: kept.into_iter().flatten().collect(),
        warnings: Vec::new(),
    };
    let (mini, _) = Zone::build(parsed, origin, "changed owners", &opts.limits).ok()?;
    Some((mini, differ))
}

/// The RRsets that differ between `mini` and the version `z` in the buckets that differ:
/// changed, new in the file, or gone from it; `None` when that is most of the zone.
pub fn compare(
    z: &ZoneState,
    origin: &Name,
    mini: &Zone,
    differ: &[bool],
) -> Option<Vec<(Name, u16)>> {
    let mut changed = Vec::new();
    for node in &mini.nodes {
        let key_owner = Owner(node.name.clone());
        for set in node
            .rrsets
            .iter()
            .filter(|s| counted(origin, &node.name, s.rtype))
        {
            match z.content.get(&(key_owner.clone(), set.rtype)) {
                Some(v) if v.ttl == set.ttl && v.rdatas == set.rdatas => {}
                _ => changed.push((node.name.clone(), set.rtype)),
            }
        }
    }
    // What the version has in those buckets and the file does not.
    let in_mini = |o: &Name, t: u16| mini.node(o).is_some_and(|n| n.has(t));
    for (o, t) in z.content.keys() {
        if counted(origin, &o.0, *t) && differ[bucket(&o.0)] && !in_mini(&o.0, *t) {
            changed.push((o.0.clone(), *t));
        }
    }
    (changed.len() <= z.content.len() / 4 + 16).then_some(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::Denial;
    use crate::zone::Limits;

    #[test]
    fn a_changed_file_is_compared_bucket_by_bucket_new_and_gone_rrsets_too() {
        let (z, origin, _) = crate::testkit::examples::signed_example(Denial::Nsec);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example.zone");
        let text = std::fs::read_to_string(&path).unwrap();
        let opts = ParseOptions {
            origin: origin.clone(),
            limits: Limits::default(),
            keep_dnssec: false,
        };
        let delta = |t: &str| file_delta(&z, &origin, t.as_bytes(), &path, &opts);
        let name = |s: &str| Name::parse(s.as_bytes(), None).unwrap();

        let (mini, changed) = delta(&text).expect("same shape");
        assert!(changed.is_empty(), "{changed:?}");
        assert!(
            mini.nodes.len() <= 2,
            "only the apex is kept when nothing differs"
        );

        let (mini, changed) = delta(&text.replace("192.0.2.25", "192.0.2.26")).unwrap();
        assert_eq!(changed, vec![(name("mail.example."), rtype::A)]);
        assert!(mini.nodes.iter().any(|n| n.name == name("mail.example.")));
        let (_, changed) = delta(&text.replace("3600\n", "3600\n$TTL 60\n")).unwrap();
        assert!(
            changed.len() > 5,
            "every RRset with the new TTL: {changed:?}"
        );

        // A name more, a name less, a type more: those RRsets, new or gone.
        let only = |t: &str| delta(t).map(|(_, c)| c);
        assert_eq!(
            only(&format!("{text}extra IN A 192.0.2.8\n")),
            Some(vec![(name("extra.example."), rtype::A)])
        );
        assert_eq!(
            only(&text.replace("ns2     IN AAAA 2001:db8::2\n", "")),
            Some(vec![(name("ns2.example."), rtype::AAAA)])
        );
        assert_eq!(
            only(&format!("{text}mail IN TXT \"x\"\n")),
            Some(vec![(name("mail.example."), rtype::TXT)])
        );
        // A SOA record away from the apex is a name like any other.
        assert_eq!(
            only(&format!("{text}foo IN SOA a. b. 1 2 3 4 5\n")),
            Some(vec![(name("foo.example."), rtype::SOA)])
        );
        // Most of the zone new: left to the whole build.
        let many: String = (0..40).map(|i| format!("n{i} IN A 192.0.2.9\n")).collect();
        assert!(delta(&format!("{text}{many}")).is_none());
        // A text that does not parse is left to the whole parse, which says where.
        assert!(delta(&format!("{text}bad IN A 300.1.1.1\n")).is_none());
    }
}
