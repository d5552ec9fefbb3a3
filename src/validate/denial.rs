//! Checks of the NSEC (RFC 4034 §4) and NSEC3 (RFC 5155 §7.1, §6 opt-out) chains.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use data_encoding::BASE32HEX_NOPAD;

use super::{Failure, failure};
use crate::signer::nsec3::{self, Nsec3Params};
use crate::zone::rdata::bitmap_types;
use crate::zone::{Name, Node, NodeKind, rtype};

/// Types an NSEC or NSEC3 at `node` must list.
fn expected_types(node: &Node, nsec: bool) -> Vec<u16> {
    let mut t: Vec<u16> = match node.kind {
        NodeKind::Delegation => node
            .rrsets
            .iter()
            .map(|r| r.rtype)
            .filter(|t| matches!(*t, rtype::NS | rtype::DS))
            .collect(),
        _ => node
            .rrsets
            .iter()
            .map(|r| r.rtype)
            .filter(|t| *t != rtype::NSEC)
            .collect(),
    };
    let signed =
        !node.sigs.is_empty() && (node.kind != NodeKind::Delegation || nsec || node.has(rtype::DS));
    if signed {
        t.push(rtype::RRSIG);
    }
    if nsec {
        t.push(rtype::NSEC);
    }
    t.sort_unstable();
    t.dedup();
    t
}

fn type_list(t: &[u16]) -> String {
    t.iter()
        .map(|x| rtype::to_text(*x))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks whichever chain the zone has; returns its name.
pub fn check(
    zone: &crate::zone::Zone,
    real: &[&Node],
    hashed: &[&Node],
    failures: &mut Vec<Failure>,
) -> String {
    let apex = zone.apex();
    let has_nsec = real.iter().any(|n| n.has(rtype::NSEC));
    let param = apex.rrset(rtype::NSEC3PARAM).map(|s| s.rdatas[0].to_vec());
    match (has_nsec, param) {
        (true, None) => {
            check_nsec(real, failures);
            "NSEC".into()
        }
        (false, Some(p)) => {
            check_nsec3(zone, real, hashed, &p, failures);
            "NSEC3".into()
        }
        (true, Some(_)) => {
            failures.push(failure(
                &apex.name,
                rtype::NSEC3PARAM,
                "zone has both NSEC records and an NSEC3PARAM",
            ));
            "mixed".into()
        }
        (false, None) => {
            failures.push(failure(
                &apex.name,
                rtype::NSEC,
                "zone has no NSEC chain and no NSEC3PARAM: no authenticated denial of existence",
            ));
            "none".into()
        }
    }
}

fn check_nsec(real: &[&Node], failures: &mut Vec<Failure>) {
    let chain: Vec<&Node> = real
        .iter()
        .copied()
        .filter(|n| n.kind != NodeKind::BelowCut)
        .collect();
    for n in real
        .iter()
        .filter(|n| n.kind == NodeKind::BelowCut && n.has(rtype::NSEC))
    {
        failures.push(failure(&n.name, rtype::NSEC, "NSEC below a zone cut"));
    }
    let links: Vec<Failure> = (0..chain.len())
        .into_par_iter()
        .flat_map_iter(|i| check_nsec_link(&chain, i))
        .collect();
    failures.extend(links);
}

/// The NSEC at `chain[i]`: present, one record, pointing to the next name, right bit map.
fn check_nsec_link(chain: &[&Node], i: usize) -> Vec<Failure> {
    let n = chain[i];
    let mut failures = Vec::new();
    let Some(set) = n.rrset(rtype::NSEC) else {
        return vec![failure(
            &n.name,
            rtype::NSEC,
            "name has no NSEC record: the chain is broken",
        )];
    };
    if set.rdatas.len() != 1 {
        return vec![failure(&n.name, rtype::NSEC, "more than one NSEC record")];
    }
    let d = &set.rdatas[0];
    let Ok(len) = crate::zone::name::wire_name_len(d) else {
        return vec![failure(&n.name, rtype::NSEC, "malformed NSEC record")];
    };
    let want = &chain[(i + 1) % chain.len()].name;
    if !d[..len].eq_ignore_ascii_case(want.as_wire()) {
        let next = Name::from_wire(&d[..len]).expect("checked");
        failures.push(failure(
            &n.name,
            rtype::NSEC,
            format!("NSEC points to {next}, but the next name in the zone is {want}"),
        ));
    }
    let have = bitmap_types(&d[len..]).unwrap_or_default();
    let want = expected_types(n, true);
    if have != want {
        failures.push(failure(
            &n.name,
            rtype::NSEC,
            format!(
                "NSEC type bit map is [{}], expected [{}]",
                type_list(&have),
                type_list(&want)
            ),
        ));
    }
    failures
}

/// One NSEC3 record, parsed without allocating (a 1M-name zone has 1M of them).
struct Nsec3Rec<'a> {
    node: &'a Node,
    hash: [u8; HASH_LEN],
    flags: u8,
    next: [u8; HASH_LEN],
    /// The type bit map as in the record (checked well-formed when parsed).
    bitmap: &'a [u8],
}

impl Nsec3Rec<'_> {
    fn types(&self) -> Vec<u16> {
        bitmap_types(self.bitmap).unwrap_or_default()
    }
}

/// SHA-1, the one NSEC3 hash algorithm (RFC 5155 §11).
const HASH_LEN: usize = 20;

fn parse_nsec3<'a>(
    node: &'a Node,
    origin: &Name,
    p: &Nsec3Params,
    failures: &mut Vec<Failure>,
) -> Option<Nsec3Rec<'a>> {
    let bad =
        |f: &mut Vec<Failure>, m: &str| f.push(failure(&node.name, rtype::NSEC3, m.to_string()));
    let set = node.rrset(rtype::NSEC3)?;
    let d = &set.rdatas[0];
    if set.rdatas.len() != 1 || node.name.parent().as_ref() != Some(origin) {
        bad(
            failures,
            "NSEC3 owner must be one hashed label below the apex, with one record",
        );
        return None;
    }
    let label = node.name.labels().next()?.to_ascii_uppercase();
    let Ok(hash) = BASE32HEX_NOPAD.decode(&label) else {
        bad(failures, "NSEC3 owner label is not base32hex");
        return None;
    };
    let Ok(hash) = <[u8; HASH_LEN]>::try_from(hash) else {
        bad(
            failures,
            "NSEC3 owner label is not a SHA-1 hash (20 octets)",
        );
        return None;
    };
    if d.len() < 6 {
        bad(failures, "malformed NSEC3 record");
        return None;
    }
    let salt_len = d[4] as usize;
    let (alg, flags, iter) = (d[0], d[1], u16::from_be_bytes([d[2], d[3]]));
    let salt = d.get(5..5 + salt_len)?;
    if alg != 1 || iter != p.iterations || salt != p.salt.as_slice() {
        bad(
            failures,
            "NSEC3 parameters differ from the NSEC3PARAM record",
        );
        return None;
    }
    let hl = *d.get(5 + salt_len)? as usize;
    let Ok(next) = <[u8; HASH_LEN]>::try_from(d.get(6 + salt_len..6 + salt_len + hl)?) else {
        bad(
            failures,
            "NSEC3 next hashed owner is not a SHA-1 hash (20 octets)",
        );
        return None;
    };
    let bitmap = &d[6 + salt_len + hl..];
    if bitmap_types(bitmap).is_none() {
        bad(failures, "malformed NSEC3 type bit map");
        return None;
    }
    Some(Nsec3Rec {
        node,
        hash,
        flags,
        next,
        bitmap,
    })
}

fn check_nsec3(
    zone: &crate::zone::Zone,
    real: &[&Node],
    hashed: &[&Node],
    param: &[u8],
    failures: &mut Vec<Failure>,
) {
    let apex = zone.apex();
    if param.len() < 5 || param[0] != 1 || param.len() != 5 + param[4] as usize {
        failures.push(failure(
            &apex.name,
            rtype::NSEC3PARAM,
            "malformed or unsupported NSEC3PARAM",
        ));
        return;
    }
    let p = Nsec3Params {
        iterations: u16::from_be_bytes([param[2], param[3]]),
        salt: param[5..].to_vec(),
        opt_out: false,
    };
    // One slot per NSEC3 node, collected at its exact size (per-thread vectors joined
    // grew and copied ~2× the 72 MB of a 1M-record chain), then compacted in place.
    let bad = std::sync::Mutex::new(Vec::new());
    let recs: Vec<Option<Nsec3Rec<'_>>> = hashed
        .par_iter()
        .map(|n| {
            let mut f = Vec::new();
            let r = parse_nsec3(n, &zone.origin, &p, &mut f);
            if !f.is_empty() {
                bad.lock().unwrap_or_else(|e| e.into_inner()).extend(f);
            }
            r
        })
        .collect();
    #[allow(clippy::unnecessary_filter_map)] // filter_map collects in place; flatten would not
    let mut recs: Vec<Nsec3Rec<'_>> = recs.into_iter().filter_map(|r| r).collect();
    let mut bad = bad.into_inner().unwrap_or_else(|e| e.into_inner());
    bad.sort_by(|a, b| a.owner.cmp(&b.owner)); // threads finish in any order
    failures.extend(bad);
    recs.par_sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
    if recs.is_empty() {
        failures.push(failure(
            &apex.name,
            rtype::NSEC3,
            "NSEC3PARAM present but no NSEC3 records",
        ));
        return;
    }
    for (i, r) in recs.iter().enumerate() {
        let want = &recs[(i + 1) % recs.len()].hash;
        if &r.next != want {
            failures.push(failure(
                &r.node.name,
                rtype::NSEC3,
                format!(
                    "NSEC3 next hashed owner is {}, but the next NSEC3 in the zone is {}",
                    BASE32HEX_NOPAD.encode(&r.next).to_ascii_lowercase(),
                    BASE32HEX_NOPAD.encode(want).to_ascii_lowercase()
                ),
            ));
        }
    }
    let need = needed_nsec3(zone, real, &p);
    let found: Vec<Failure> = need
        .par_iter()
        .filter_map(|w| {
            let at = recs.binary_search_by(|r| r.hash.as_slice().cmp(w.hash.as_slice()));
            match (at, w.required) {
                (Ok(i), true) => {
                    let want = w.node.map(|n| expected_types(n, false)).unwrap_or_default();
                    let have = recs[i].types();
                    (have != want).then(|| {
                        failure(
                            &w.name,
                            rtype::NSEC3,
                            format!("NSEC3 type bit map is [{}], expected [{}]", type_list(&have), type_list(&want)),
                        )
                    })
                }
                (Ok(_), false) => None,
                (Err(_), true) => Some(failure(&w.name, rtype::NSEC3, "name has no NSEC3 record: the chain is incomplete")),
                (Err(i), false) => {
                    // Opt-out: the NSEC3 that covers this hash must have the opt-out flag.
                    let cover = &recs[(i + recs.len() - 1) % recs.len()];
                    (cover.flags & 1 == 0).then(|| {
                        failure(&w.name, rtype::NSEC3, "insecure delegation has no NSEC3 and the covering NSEC3 does not have the opt-out flag")
                    })
                }
            }
        })
        .collect();
    failures.extend(found);
    let orphans: Vec<Failure> = recs
        .par_iter()
        .filter(|r| {
            need.binary_search_by(|w| w.hash.as_slice().cmp(r.hash.as_slice()))
                .is_err()
        })
        .map(|r| {
            failure(
                &r.node.name,
                rtype::NSEC3,
                "NSEC3 matches no name in the zone",
            )
        })
        .collect();
    failures.extend(orphans);
}

/// A name the NSEC3 chain must (or, under opt-out, may) cover.
struct Wanted<'a> {
    hash: [u8; 20],
    name: Name,
    /// The name's node; `None` for an empty non-terminal.
    node: Option<&'a Node>,
    /// False for insecure delegations and for empty non-terminals with nothing required below.
    required: bool,
}

/// Every name the NSEC3 chain covers, sorted by hash.
fn needed_nsec3<'a>(
    zone: &crate::zone::Zone,
    real: &[&'a Node],
    p: &Nsec3Params,
) -> Vec<Wanted<'a>> {
    let depth = zone.origin.label_count() + 1;
    let mut wanted: Vec<Wanted<'a>> = real
        .par_iter()
        .filter(|n| n.kind != NodeKind::BelowCut)
        .map(|n| Wanted {
            hash: nsec3::hash(&n.name, p),
            name: n.name.clone(),
            node: Some(*n),
            required: n.kind != NodeKind::Delegation || n.has(rtype::DS),
        })
        .collect();
    // Empty non-terminals: ancestors up to the apex that are not names of their own. Only
    // names more than one label below the apex have any.
    let deep: Vec<(Name, bool)> = wanted
        .iter()
        .filter(|w| w.name.label_count() > depth)
        .map(|w| (w.name.clone(), w.required))
        .collect();
    if !deep.is_empty() {
        let existing: HashSet<&[u8]> = real.iter().map(|n| n.name.as_wire()).collect();
        let mut ents: HashMap<Name, bool> = HashMap::new();
        for (name, required) in deep {
            let mut up = name.parent();
            while let Some(a) = up {
                if a == zone.origin
                    || !a.is_subdomain_of(&zone.origin)
                    || existing.contains(a.as_wire())
                {
                    break;
                }
                up = a.parent();
                *ents.entry(a).or_insert(false) |= required;
            }
        }
        wanted.extend(ents.into_iter().map(|(name, required)| Wanted {
            hash: nsec3::hash(&name, p),
            name,
            node: None,
            required,
        }));
    }
    wanted.par_sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
    wanted
}
