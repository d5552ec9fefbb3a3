//! Checks of the NSEC (RFC 4034 §4) and NSEC3 (RFC 5155 §7.1, §6 opt-out) chains.

use std::collections::HashMap;

use rayon::prelude::*;

use data_encoding::BASE32HEX_NOPAD;

use super::{Failure, failure};
use crate::zone::nsec3::{self, Nsec3Params};
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

/// The denial chain of a zone read window by window ([`super::Source`]): what each window
/// leaves behind is compact (an NSEC3 record or a name to cover is under 50 octets), the
/// checks of the whole chain run once every window was seen.
pub(crate) struct Chain {
    origin: Name,
    apex: Name,
    mode: Mode,
    /// A name has an NSEC record.
    has_nsec: bool,
    failures: Vec<Failure>,
}

enum Mode {
    /// No NSEC3PARAM at the apex: links are checked as the names come.
    Nsec {
        /// The last name of the chain so far, its link not checked yet.
        last: Option<Node>,
        first: Option<Name>,
    },
    Nsec3 {
        p: Nsec3Params,
        recs: Vec<Nsec3Rec>,
        wanted: Vec<Wanted>,
        /// Names of this zone above the window being read (ancestors of what comes next).
        above: Vec<Name>,
        /// Empty non-terminals: whether a name that must be covered lies below.
        ents: HashMap<Name, bool>,
    },
    /// The NSEC3PARAM cannot be used.
    Broken,
}

impl Chain {
    pub(crate) fn new(origin: &Name, apex: &Node) -> Chain {
        let mut failures = Vec::new();
        let mode = match apex.rrset(rtype::NSEC3PARAM).map(|s| &s.rdatas[0]) {
            None => Mode::Nsec {
                last: None,
                first: None,
            },
            Some(param)
                if param.len() < 5 || param[0] != 1 || param.len() != 5 + param[4] as usize =>
            {
                failures.push(failure(
                    &apex.name,
                    rtype::NSEC3PARAM,
                    "malformed or unsupported NSEC3PARAM",
                ));
                Mode::Broken
            }
            Some(param) => Mode::Nsec3 {
                p: Nsec3Params {
                    iterations: u16::from_be_bytes([param[2], param[3]]),
                    salt: param[5..].to_vec(),
                    opt_out: false,
                },
                recs: Vec::new(),
                wanted: Vec::new(),
                above: Vec::new(),
                ents: HashMap::new(),
            },
        };
        Chain {
            origin: origin.clone(),
            apex: apex.name.clone(),
            mode,
            has_nsec: false,
            failures,
        }
    }

    /// Takes in the next window of nodes.
    pub(crate) fn add(&mut self, nodes: &[Node]) {
        let real = |n: &&Node| !super::is_nsec3_node(n);
        if !self.has_nsec {
            self.has_nsec = nodes.iter().filter(real).any(|n| n.has(rtype::NSEC));
        }
        let failures = &mut self.failures;
        match &mut self.mode {
            Mode::Nsec { last, first } => {
                for n in nodes
                    .iter()
                    .filter(|n| n.kind == NodeKind::BelowCut && n.has(rtype::NSEC))
                {
                    failures.push(failure(&n.name, rtype::NSEC, "NSEC below a zone cut"));
                }
                let chain: Vec<&Node> = nodes
                    .iter()
                    .filter(real)
                    .filter(|n| n.kind != NodeKind::BelowCut)
                    .collect();
                let Some(head) = chain.first() else {
                    return;
                };
                if let Some(prev) = last.take() {
                    failures.extend(check_nsec_link(&prev, &head.name));
                }
                first.get_or_insert_with(|| head.name.clone());
                let links: Vec<Failure> = (0..chain.len() - 1)
                    .into_par_iter()
                    .flat_map_iter(|i| check_nsec_link(chain[i], &chain[i + 1].name))
                    .collect();
                failures.extend(links);
                *last = chain.last().map(|n| (*n).clone());
            }
            Mode::Nsec3 {
                p,
                recs,
                wanted,
                above,
                ents,
            } => {
                let origin = &self.origin;
                let found: Vec<Result<Nsec3Rec, Vec<Failure>>> = nodes
                    .par_iter()
                    .filter(|n| super::is_nsec3_node(n))
                    .filter_map(|n| {
                        let mut f = Vec::new();
                        match parse_nsec3(n, origin, p, &mut f) {
                            Some(r) => Some(Ok(r)),
                            None => (!f.is_empty()).then_some(Err(f)),
                        }
                    })
                    .collect();
                for r in found {
                    match r {
                        Ok(r) => recs.push(r),
                        Err(f) => failures.extend(f),
                    }
                }
                wanted.par_extend(
                    nodes
                        .par_iter()
                        .filter(real)
                        .filter(|n| n.kind != NodeKind::BelowCut)
                        .map(|n| Wanted {
                            hash: nsec3::hash(&n.name, p),
                            types: fingerprint(&expected_types(n, false)),
                            required: n.kind != NodeKind::Delegation || n.has(rtype::DS),
                            name: n.name.clone(),
                        }),
                );
                // Empty non-terminals: the ancestors of a name up to its nearest existing
                // one. In canonical order a name's existing ancestors all came before it.
                let depth = origin.label_count() + 1;
                for n in nodes.iter().filter(real) {
                    while above.last().is_some_and(|a| !n.name.is_subdomain_of(a)) {
                        above.pop();
                    }
                    if n.kind != NodeKind::BelowCut && n.name.label_count() > depth {
                        let required = n.kind != NodeKind::Delegation || n.has(rtype::DS);
                        let mut up = n.name.parent();
                        while let Some(a) = up {
                            if a == *origin
                                || !a.is_subdomain_of(origin)
                                || above.last() == Some(&a)
                            {
                                break;
                            }
                            up = a.parent();
                            *ents.entry(a).or_insert(false) |= required;
                        }
                    }
                    above.push(n.name.clone());
                }
            }
            Mode::Broken => {}
        }
    }

    /// Checks the chain as a whole; returns its name.
    pub(crate) fn finish(self, src: &dyn super::Source, failures: &mut Vec<Failure>) -> String {
        let Chain {
            origin,
            apex,
            mode,
            has_nsec,
            failures: found,
        } = self;
        match mode {
            Mode::Nsec { last, first } => {
                if !has_nsec {
                    failures.push(failure(
                        &apex,
                        rtype::NSEC,
                        "zone has no NSEC chain and no NSEC3PARAM: no authenticated denial of existence",
                    ));
                    return "none".into();
                }
                failures.extend(found);
                if let (Some(last), Some(first)) = (last, first) {
                    failures.extend(check_nsec_link(&last, &first));
                }
                "NSEC".into()
            }
            _ if has_nsec => {
                failures.push(failure(
                    &apex,
                    rtype::NSEC3PARAM,
                    "zone has both NSEC records and an NSEC3PARAM",
                ));
                "mixed".into()
            }
            Mode::Broken => {
                failures.extend(found);
                "NSEC3".into()
            }
            Mode::Nsec3 {
                p,
                recs,
                mut wanted,
                ents,
                ..
            } => {
                failures.extend(found);
                wanted.extend(ents.into_iter().map(|(name, required)| Wanted {
                    hash: nsec3::hash(&name, &p),
                    types: fingerprint(&[]),
                    required,
                    name,
                }));
                check_nsec3(src, &origin, &apex, recs, wanted, failures);
                "NSEC3".into()
            }
        }
    }
}

/// A type list as a short digest: what a window keeps of a bit map, or of the types a name
/// needs, to compare them later.
fn fingerprint(types: &[u16]) -> [u8; 8] {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    types.hash(&mut h);
    h.finish().to_le_bytes()
}

/// The NSEC at `n`, of a chain whose next name is `want`: present, one record, pointing to
/// that name, with the right bit map.
fn check_nsec_link(n: &Node, want: &Name) -> Vec<Failure> {
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

/// One NSEC3 record as the chain check keeps it (a 1M-name zone has 1M of them). Its
/// owner is the hash below the apex; its type bit map is kept as a [`fingerprint`].
struct Nsec3Rec {
    hash: [u8; HASH_LEN],
    next: [u8; HASH_LEN],
    flags: u8,
    types: [u8; 8],
}

/// SHA-1, the one NSEC3 hash algorithm (RFC 5155 §11).
const HASH_LEN: usize = 20;

fn parse_nsec3(
    node: &Node,
    origin: &Name,
    p: &Nsec3Params,
    failures: &mut Vec<Failure>,
) -> Option<Nsec3Rec> {
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
    let Some(types) = bitmap_types(&d[6 + salt_len + hl..]) else {
        bad(failures, "malformed NSEC3 type bit map");
        return None;
    };
    Some(Nsec3Rec {
        hash,
        next,
        flags,
        types: fingerprint(&types),
    })
}

/// The types the NSEC3 record at `node` lists (a well-formed one: see [`parse_nsec3`]).
fn nsec3_types(node: &Node) -> Vec<u16> {
    let Some(d) = node.rrset(rtype::NSEC3).and_then(|s| s.rdatas.first()) else {
        return Vec::new();
    };
    let types = || {
        let salt_len = *d.get(4)? as usize;
        let hl = *d.get(5 + salt_len)? as usize;
        bitmap_types(d.get(6 + salt_len + hl..)?)
    };
    types().unwrap_or_default()
}

fn check_nsec3(
    src: &dyn super::Source,
    origin: &Name,
    apex: &Name,
    mut recs: Vec<Nsec3Rec>,
    mut need: Vec<Wanted>,
    failures: &mut Vec<Failure>,
) {
    let owner = |h: &[u8; HASH_LEN]| nsec3::hashed_owner(h, origin);
    recs.par_sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
    if recs.is_empty() {
        failures.push(failure(
            apex,
            rtype::NSEC3,
            "NSEC3PARAM present but no NSEC3 records",
        ));
        return;
    }
    for (i, r) in recs.iter().enumerate() {
        let want = &recs[(i + 1) % recs.len()].hash;
        if &r.next != want {
            failures.push(failure(
                &owner(&r.hash),
                rtype::NSEC3,
                format!(
                    "NSEC3 next hashed owner is {}, but the next NSEC3 in the zone is {}",
                    BASE32HEX_NOPAD.encode(&r.next).to_ascii_lowercase(),
                    BASE32HEX_NOPAD.encode(want).to_ascii_lowercase()
                ),
            ));
        }
    }
    need.par_sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
    /// What the walk over the names found; a bit map that differs is described once the
    /// types on both sides are looked up (a second pass over the zone).
    enum Found<'a> {
        Failure(Failure),
        Types(&'a Wanted),
    }
    let found: Vec<Found<'_>> = need
        .par_iter()
        .filter_map(|w| {
            let at = recs.binary_search_by(|r| r.hash.cmp(&w.hash));
            match (at, w.required) {
                (Ok(i), true) => (recs[i].types != w.types).then_some(Found::Types(w)),
                (Ok(_), false) => None,
                (Err(_), true) => Some(Found::Failure(failure(&w.name, rtype::NSEC3, "name has no NSEC3 record: the chain is incomplete"))),
                (Err(i), false) => {
                    // Opt-out: the NSEC3 that covers this hash must have the opt-out flag.
                    let cover = &recs[(i + recs.len() - 1) % recs.len()];
                    (cover.flags & 1 == 0).then(|| {
                        Found::Failure(failure(&w.name, rtype::NSEC3, "insecure delegation has no NSEC3 and the covering NSEC3 does not have the opt-out flag"))
                    })
                }
            }
        })
        .collect();
    let mut types = HashMap::new();
    if found.iter().any(|f| matches!(f, Found::Types(_))) {
        types = bitmaps_of(src, &found_types(&found), origin);
    }
    fn found_types<'a>(found: &[Found<'a>]) -> Vec<&'a Wanted> {
        found
            .iter()
            .filter_map(|f| match f {
                Found::Types(w) => Some(*w),
                Found::Failure(_) => None,
            })
            .collect()
    }
    for f in found {
        failures.push(match f {
            Found::Failure(f) => f,
            Found::Types(w) => {
                let (have, want) = types.remove(&w.hash).unwrap_or_default();
                failure(
                    &w.name,
                    rtype::NSEC3,
                    format!(
                        "NSEC3 type bit map is [{}], expected [{}]",
                        type_list(&have),
                        type_list(&want)
                    ),
                )
            }
        });
    }
    let orphans: Vec<Failure> = recs
        .par_iter()
        .filter(|r| need.binary_search_by(|w| w.hash.cmp(&r.hash)).is_err())
        .map(|r| {
            failure(
                &owner(&r.hash),
                rtype::NSEC3,
                "NSEC3 matches no name in the zone",
            )
        })
        .collect();
    failures.extend(orphans);
}

/// For each of `wanted` (by hash): the types its NSEC3 record lists and those it should,
/// looked up in a second pass over the zone.
fn bitmaps_of(
    src: &dyn super::Source,
    wanted: &[&Wanted],
    origin: &Name,
) -> HashMap<[u8; HASH_LEN], (Vec<u16>, Vec<u16>)> {
    let mut out: HashMap<[u8; HASH_LEN], (Vec<u16>, Vec<u16>)> = wanted
        .iter()
        .map(|w| (w.hash, Default::default()))
        .collect();
    let by_name: HashMap<&Name, [u8; HASH_LEN]> =
        wanted.iter().map(|w| (&w.name, w.hash)).collect();
    let hashed: HashMap<Name, [u8; HASH_LEN]> = wanted
        .iter()
        .map(|w| (nsec3::hashed_owner(&w.hash, origin), w.hash))
        .collect();
    src.windows(&mut |nodes: &[Node]| {
        for n in nodes {
            if super::is_nsec3_node(n) {
                if let Some(h) = hashed.get(&n.name) {
                    out.get_mut(h).expect("listed").0 = nsec3_types(n);
                }
            } else if n.kind != NodeKind::BelowCut
                && let Some(h) = by_name.get(&n.name)
            {
                out.get_mut(h).expect("listed").1 = expected_types(n, false);
            }
        }
    });
    out
}

/// A name the NSEC3 chain must (or, under opt-out, may) cover.
struct Wanted {
    hash: [u8; HASH_LEN],
    /// [`fingerprint`] of the types its NSEC3 must list (none for an empty non-terminal).
    types: [u8; 8],
    /// False for insecure delegations and for empty non-terminals with nothing required below.
    required: bool,
    name: Name,
}
