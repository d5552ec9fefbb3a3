//! The build paths that sign only what changed: the same-shape path (changed RRsets, the
//! chain untouched) and the shape path (names or types that came or went, with the chain
//! around them: [`crate::signer::incremental`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::build::cache_at;
use crate::ingest::held::made_by_signer;
use crate::replica::state::{Owner, ZoneState};
use crate::replica::{KeyRecord, RrsetChange, RrsetVal};
use crate::signer::{SignOptions, sign_zone};
use crate::zone::{Limits, Name, Zone, rtype};

/// Signs only the changed RRsets: a small zone of the apex and the changed names goes
/// through the signer with the current signatures as its cache; the new RRSIGs of the
/// changed RRsets are taken, each checked against the DNSKEY RRset before use.
#[allow(clippy::too_many_arguments)]
pub(super) fn quick_sign(
    z: &ZoneState,
    origin: &Name,
    unsigned: &Zone,
    changed: Vec<(Name, u16)>,
    signing: &[Arc<dyn crate::hsm::SigningKey>],
    opts: &SignOptions,
    keys: &[KeyRecord],
) -> Result<Option<(Vec<RrsetChange>, u64)>, String> {
    use crate::zone::{Parsed, Record};
    let owners: HashSet<&Name> = changed.iter().map(|(o, _)| o).chain([origin]).collect();
    let mut records = Vec::new();
    for node in unsigned.nodes.iter().filter(|n| owners.contains(&n.name)) {
        for set in &node.rrsets {
            for d in &set.rdatas {
                records.push(Record {
                    owner: node.name.clone(),
                    rtype: set.rtype,
                    ttl: set.ttl,
                    rdata: Box::from(d),
                    line: 0,
                });
            }
        }
    }
    let (mini, _) = Zone::build(
        Parsed {
            records,
            warnings: Vec::new(),
        },
        origin,
        "changed RRsets",
        &Limits::default(),
    )
    .map_err(|e| e.to_string())?;
    let cache = cache_at(z, &owners, origin, keys);
    let signed = sign_zone(mini, signing, opts, &cache, &|_, _| {}).map_err(|e| e.to_string())?;
    let fresh: HashMap<(Owner, u16), RrsetVal> = signed.into_entries().into_iter().collect();
    let apex_keys = (Owner(origin.clone()), rtype::DNSKEY);
    if fresh.get(&apex_keys) != z.content.get(&apex_keys) {
        return Ok(None); // the DNSKEY RRset would change: the full path runs
    }
    let verifier = crate::validate::incremental::Keys::of(&z.content, origin)?;
    let t = opts.now;
    let mut out = Vec::with_capacity(changed.len());
    let mut signed_n = 0;
    for (owner, rt) in changed {
        let key = (Owner(owner.clone()), rt);
        let old = z.content.get(&key).ok_or("changed RRset vanished")?;
        let new = fresh.get(&key).ok_or_else(|| {
            format!(
                "{} {}: not in the signed subset",
                owner.to_text(),
                rtype::to_text(rt)
            )
        })?;
        let val = if old.sigs.is_empty() {
            RrsetVal {
                ttl: new.ttl,
                rdatas: new.rdatas.clone(),
                sigs: Vec::new(),
            }
        } else {
            verifier.check(&owner, rt, new, t)?;
            signed_n += 1;
            new.clone()
        };
        out.push(RrsetChange {
            owner,
            rtype: rt,
            val: Some(val),
        });
    }
    Ok(Some((out, signed_n)))
}

/// Names or types came or went: the RRsets that differ and the NSEC/NSEC3 records around
/// them, made and signed without the whole zone (`node::shape`); `None` when the change
/// needs the whole build. `mini` holds every record at the touched owners and the apex.
pub(super) fn shape_sign(
    z: &ZoneState,
    origin: &Name,
    mini: &Zone,
    touched: Vec<(Name, u16)>,
    signing: &[Arc<dyn crate::hsm::SigningKey>],
    opts: &SignOptions,
) -> Result<Option<(Vec<RrsetChange>, u64)>, String> {
    let at = |o: &Name, t: u16| mini.node(o).and_then(|n| n.rrset(t));
    let soa = at(origin, rtype::SOA).ok_or("the changes lack the apex's SOA")?;
    let mut data = vec![(
        (origin.clone(), rtype::SOA),
        Some((soa.ttl, soa.rdatas.clone())),
    )];
    let touched: std::collections::BTreeSet<(Name, u16)> = touched.into_iter().collect();
    if touched.len() > SHAPE_CHANGES_MAX {
        return Ok(None);
    }
    for (owner, t) in touched {
        if (t == rtype::SOA && owner == *origin) || made_by_signer(t) {
            continue;
        }
        let new = at(&owner, t);
        let old = z.content.get(&(Owner(owner.clone()), t));
        match (old, new) {
            (Some(o), Some(n)) if o.ttl == n.ttl && o.rdatas == n.rdatas => {}
            (None, None) => {}
            (_, n) => data.push(((owner, t), n.map(|n| (n.ttl, n.rdatas.clone())))),
        }
    }
    let mut made = 0u64;
    let sign = |items: &[(&Name, &crate::zone::Rrset)]| {
        let cache = crate::signer::SignatureCache::default();
        let (sigs, n) = crate::signer::sign_rrsets(origin, items, signing, opts, &cache)
            .map_err(|e| e.to_string())?;
        made = n as u64;
        Ok(sigs)
    };
    let Some(changes) =
        crate::signer::incremental::apply(&z.content, origin, data, mini.denial_ttl(), sign)?
    else {
        return Ok(None);
    };
    // Every new RRSIG is verified as the follower will verify it.
    let verifier = crate::validate::incremental::Keys::of(&z.content, origin)?;
    let mut signed = 0;
    for c in &changes {
        if let Some(v) = c.val.as_ref().filter(|v| !v.sigs.is_empty()) {
            verifier.check(&c.owner, c.rtype, v, opts.now)?;
            signed += 1;
        }
    }
    debug_assert!(made >= signed);
    Ok(Some((changes, signed)))
}

/// More RRsets than this changed at once: the whole build (with the signature cache) is
/// the better path.
pub(super) const SHAPE_CHANGES_MAX: usize = 100_000;
