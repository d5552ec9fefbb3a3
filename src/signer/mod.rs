//! The signer: plan, sign, check, assemble.
//!
//! ```text
//!  Zone ──► add DNSKEY (+NSEC3PARAM) ──► denial chain (NSEC | NSEC3)
//!        ──► plan: every authoritative RRset × selected key
//!                  ├─ cache hit (same content digest, same key, not refreshing) ─► reuse
//!                  └─ otherwise ─► job
//!        ──► sign jobs on all cores ──► verify each signature against its DNSKEY
//!        ──► SignedZone (+ the new SignatureCache)
//! ```
//! A signature that does not verify stops the run with an error naming the key, owner and
//! type; nothing is written (RFC 4035 §5.3.3 is what every validator will check).
//!
//! # Limitations
//! All given keys sign: the key-lifecycle engine decides which keys are active.

pub mod cache;
pub mod incremental;
pub mod nsec3;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

pub use cache::SignatureCache;
pub use nsec3::Nsec3Params;

use crate::hsm::{HsmError, SigningKey};
use crate::keys::BatchCheck;
use crate::keys::ecdsa_check::ScalarVerifier;
use crate::keys::ecdsa_table::TableVerifier;
use crate::keys::{KeyId, RrsigHeader, Verifier, rrsig_labels, signed_data};
use crate::zone::rdata::type_bitmap;
use crate::zone::{Name, Node, NodeKind, Rrset, Zone, rtype};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Nsec,
    Nsec3(Nsec3Params),
}

impl Denial {
    /// A zone's `denial` setting: `nsec`, `nsec3` or `nsec3-optout` (NSEC3 with the RFC 9276
    /// parameters: no extra iterations, no salt).
    pub fn parse(setting: &str) -> Result<Denial, String> {
        Ok(match setting {
            "nsec" => Denial::Nsec,
            "nsec3" | "nsec3-optout" => Denial::Nsec3(Nsec3Params {
                iterations: 0,
                salt: Vec::new(),
                opt_out: setting == "nsec3-optout",
            }),
            d => {
                return Err(format!(
                    "denial {d:?}: expected nsec, nsec3 or nsec3-optout"
                ));
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct SignOptions {
    /// Unix time the run treats as now.
    pub now: u32,
    /// Inception is set this far in the past, for clock skew.
    pub inception_offset_s: u32,
    pub validity_s: u32,
    /// Expirations are spread over this many seconds before `now + validity_s`,
    /// deterministically per RRset, so that re-signing does not come in one wave.
    pub jitter_s: u32,
    /// A cached signature expiring sooner than this is made again.
    pub refresh_s: u32,
    pub denial: Denial,
    /// TTL for the DNSKEY RRset; `None` keeps the input's or uses the SOA TTL.
    pub dnskey_ttl: Option<u32>,
    /// What each key does, as the key-lifecycle engine decided; a key not listed is
    /// published and signs by its SEP bit (KSK: the DNSKEY RRset, ZSK: the rest).
    pub usage: std::collections::BTreeMap<KeyId, crate::kasp::KeyUse>,
    /// Keys whose CDS (SHA-256) and CDNSKEY the apex carries; empty: none.
    pub cds: Vec<KeyId>,
}

impl SignOptions {
    pub fn new(now: u32) -> SignOptions {
        SignOptions {
            now,
            inception_offset_s: 3600,
            validity_s: 14 * 86_400,
            jitter_s: 12 * 3600,
            refresh_s: 3 * 86_400,
            denial: Denial::Nsec3(Nsec3Params {
                iterations: 0,
                salt: Vec::new(),
                opt_out: false,
            }),
            dnskey_ttl: None,
            usage: Default::default(),
            cds: Vec::new(),
        }
    }

    fn usage_of(&self, d: &crate::keys::DnsKey) -> crate::kasp::KeyUse {
        self.usage
            .get(&d.id())
            .copied()
            .unwrap_or(crate::kasp::KeyUse {
                publish: true,
                sign_dnskey: d.is_sep(),
                sign_data: !d.is_sep(),
            })
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    #[error("no keys to sign {0} with")]
    NoKeys(String),
    #[error(
        "no key-signing key (DNSKEY flags 257) for {0}: the DNSKEY RRset must be signed by a KSK"
    )]
    NoKsk(String),
    #[error(
        "key {handle} (tag {tag}, algorithm {alg}) returned a signature over {owner} {rtype} that does not verify against its public key; nothing was written"
    )]
    BadSignature {
        handle: String,
        tag: u16,
        alg: u8,
        owner: String,
        rtype: String,
    },
    #[error("key {handle}: public key unusable: {msg}")]
    BadKey { handle: String, msg: String },
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error("{0}")]
    Denial(String),
    #[error("{0}")]
    KeyTag(String),
    #[error("validity {validity_s} s must exceed jitter {jitter_s} s plus refresh {refresh_s} s")]
    BadTiming {
        validity_s: u32,
        jitter_s: u32,
        refresh_s: u32,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignStats {
    pub rrsets: usize,
    pub signed: usize,
    pub reused: usize,
}

/// A signed zone: the zone (with DNSKEY, NSEC3PARAM, NSEC and RRSIGs added), the NSEC3
/// chain, and the signature cache that describes every RRSIG in it.
pub struct SignedZone {
    pub zone: Zone,
    pub nsec3: Vec<Node>,
    pub cache: SignatureCache,
    pub stats: SignStats,
}

impl SignedZone {
    /// The publish gate: [`crate::validate::verify_signed`] on this zone and its chain.
    pub fn verify(&self, now: u32) -> crate::validate::Report {
        crate::validate::verify_signed(&self.zone, &self.nsec3, now)
    }

    /// The RRsets of a signed zone with their RRSIGs (consumes it: nothing is copied).
    pub fn into_entries(
        self,
    ) -> Vec<(
        (crate::replica::state::Owner, u16),
        crate::replica::RrsetVal,
    )> {
        use rayon::prelude::*;
        let SignedZone { zone, nsec3, .. } = self;
        // Each node on its own, on all cores; the collected order is the nodes' order.
        let of = |node: crate::zone::Node| {
            let covered: Vec<u16> = node
                .sigs
                .iter()
                .map(|(_, s)| RrsigHeader::parse(s).map_or(0, |(h, _)| h.type_covered))
                .collect();
            let mut out = Vec::with_capacity(node.rrsets.len());
            for set in node.rrsets {
                let mut sigs: Vec<_> = node
                    .sigs
                    .iter()
                    .zip(&covered)
                    .filter(|(_, t)| **t == set.rtype)
                    .map(|((_, s), _)| s.clone())
                    .collect();
                sigs.shrink_to_fit(); // collected from a filter: room for four
                out.push((
                    (crate::replica::state::Owner(node.name.clone()), set.rtype),
                    crate::replica::RrsetVal {
                        ttl: set.ttl,
                        rdatas: set.rdatas,
                        sigs,
                    },
                ));
            }
            out
        };
        let mut out: Vec<_> = zone.nodes.into_par_iter().flat_map_iter(of).collect();
        out.par_extend(nsec3.into_par_iter().flat_map_iter(of));
        out
    }
}

struct Signer {
    key: Arc<dyn SigningKey>,
    id: KeyId,
    tag: u16,
    check: Check,
}

/// How a fresh signature is checked before it is used.
enum Check {
    /// Public-key verification.
    PublicKey(Verifier),
    /// Many at a time, a chunk's batch: the ECDSA verification equation through the private
    /// scalar (soft keys), or through a table of the public key's multiples (P-256 keys
    /// that sign a large zone, such as PKCS#11 keys).
    Batch(Box<dyn BatchCheck>),
}

impl Check {
    /// `large`: the zone is large enough that a key's table pays for itself.
    fn for_key(k: &dyn SigningKey, large: bool) -> Result<Check, SignError> {
        let d = k.dnskey();
        let bad = |msg: String| SignError::BadKey {
            handle: k.handle().into(),
            msg,
        };
        if let Some(v) = crate::hsm::scalar_verifier(k) {
            return v
                .map(|v: ScalarVerifier| Check::Batch(Box::new(v)))
                .map_err(bad);
        }
        if large && d.algorithm == 13 {
            let v = TableVerifier::new(&d.public_key).map_err(bad)?;
            return Ok(Check::Batch(Box::new(v)));
        }
        d.verifier()
            .map(Check::PublicKey)
            .map_err(|e| bad(e.to_string()))
    }
}

/// Signs `zone` with `keys`, reusing what `cache` holds. `progress` hears (RRsets done, RRsets).
pub fn sign_zone(
    mut zone: Zone,
    keys: &[Arc<dyn SigningKey>],
    opts: &SignOptions,
    cache: &SignatureCache,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SignedZone, SignError> {
    if opts.validity_s <= opts.jitter_s.saturating_add(opts.refresh_s) {
        return Err(SignError::BadTiming {
            validity_s: opts.validity_s,
            jitter_s: opts.jitter_s,
            refresh_s: opts.refresh_s,
        });
    }
    if keys.is_empty() {
        return Err(SignError::NoKeys(zone.origin.to_text()));
    }
    let large = zone.nodes.len() >= crate::validate::TABLE_MIN_NODES;
    let (signers, ksks, zsks) = signers_of(&zone.origin, keys, opts, large)?;

    add_apex_records(&mut zone, keys, opts);
    let denial_ttl = zone.denial_ttl();
    let nsec3 = match &opts.denial {
        Denial::Nsec => {
            add_nsec(&mut zone, denial_ttl);
            Vec::new()
        }
        Denial::Nsec3(p) => nsec3::build(&zone, p, denial_ttl).map_err(SignError::Denial)?,
    };

    // Plan: every authoritative RRset, the keys that must sign it, and what the cache has.
    let targets: Vec<(bool, usize, usize)> = zone
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(ni, n)| signed_rrsets(n).map(move |ri| (false, ni, ri)))
        .chain(nsec3.iter().enumerate().map(|(ni, _)| (true, ni, 0)))
        .collect();
    let node_of = |t: &(bool, usize, usize)| if t.0 { &nsec3[t.1] } else { &zone.nodes[t.1] };
    let done = AtomicUsize::new(0);
    let plan = Plan {
        origin: &zone.origin,
        signers: &signers,
        ksks: &ksks,
        zsks: &zsks,
        cache,
        opts,
    };
    let chunks: Vec<Result<Vec<(CacheEntryOut, usize)>, SignError>> = targets
        .par_chunks(CHECK_BATCH)
        .map(|chunk| {
            let items: Vec<(&Name, &Rrset)> = chunk
                .iter()
                .map(|t| {
                    let node = node_of(t);
                    (&node.name, &node.rrsets[t.2])
                })
                .collect();
            let r = sign_chunk(&plan, &items);
            progress(
                done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len(),
                targets.len(),
            );
            r
        })
        .collect();
    let mut results = Vec::with_capacity(targets.len());
    for c in chunks {
        results.extend(c?);
    }

    let mut new_cache = SignatureCache {
        origin: Some(zone.origin.clone()),
        entries: Default::default(),
    };
    new_cache.entries.reserve(targets.len());
    let mut stats = SignStats {
        rrsets: targets.len(),
        ..Default::default()
    };
    let mut nsec3 = nsec3;
    for (t, (entry, signed)) in targets.iter().zip(results) {
        stats.signed += signed;
        stats.reused += entry.rrsigs.len() - signed;
        let node = if t.0 {
            &mut nsec3[t.1]
        } else {
            &mut zone.nodes[t.1]
        };
        let set = &node.rrsets[t.2];
        let (rt, ttl) = (set.rtype, set.ttl);
        for s in &entry.rrsigs {
            node.sigs.push((ttl, s.rdata.clone()));
        }
        new_cache.entries.insert(
            (node.name.clone(), rt),
            cache::CacheEntry {
                digest: entry.digest,
                rrsigs: entry.rrsigs,
            },
        );
    }
    progress(targets.len(), targets.len());
    Ok(SignedZone {
        zone,
        nsec3,
        cache: new_cache,
        stats,
    })
}

/// Signers, and which of them sign the DNSKEY RRset (KSKs) and the rest (ZSKs).
type Roles = (Vec<Signer>, Vec<usize>, Vec<usize>);

/// The keys as signers, with their roles.
fn signers_of(
    origin: &Name,
    keys: &[Arc<dyn SigningKey>],
    opts: &SignOptions,
    large: bool,
) -> Result<Roles, SignError> {
    crate::hsm::check_key_tags(keys).map_err(SignError::KeyTag)?;
    let signers: Vec<Signer> = keys
        .iter()
        .map(|k| {
            let d = k.dnskey();
            Ok(Signer {
                key: k.clone(),
                id: d.id(),
                tag: d.key_tag(),
                check: Check::for_key(k.as_ref(), large)?,
            })
        })
        .collect::<Result<_, SignError>>()?;
    let ksks: Vec<usize> = (0..signers.len())
        .filter(|&i| opts.usage_of(signers[i].key.dnskey()).sign_dnskey)
        .collect();
    if ksks.is_empty() {
        return Err(SignError::NoKsk(origin.to_text()));
    }
    let mut zsks: Vec<usize> = (0..signers.len())
        .filter(|&i| opts.usage_of(signers[i].key.dnskey()).sign_data)
        .collect();
    if zsks.is_empty() && opts.usage.is_empty() {
        zsks = ksks.clone(); // one combined signing key (CSK)
    }
    if zsks.is_empty() {
        return Err(SignError::NoKeys(origin.to_text()));
    }
    Ok((signers, ksks, zsks))
}

/// The RRSIG rdatas of each of a run of RRsets.
pub type RrsigSets = Vec<Vec<std::sync::Arc<[u8]>>>;

/// RRSIGs for some authoritative RRsets of one zone, made (or taken from `cache`) and
/// checked exactly as [`sign_zone`] makes them for the same RRsets: for a change to a
/// signed zone that does not need the whole zone. Returns each RRset's RRSIG rdatas and
/// how many RRSIGs were made.
pub fn sign_rrsets(
    origin: &Name,
    items: &[(&Name, &Rrset)],
    keys: &[Arc<dyn SigningKey>],
    opts: &SignOptions,
    cache: &SignatureCache,
) -> Result<(RrsigSets, usize), SignError> {
    let large = items.len() >= crate::validate::TABLE_MIN_NODES;
    let (signers, ksks, zsks) = signers_of(origin, keys, opts, large)?;
    let plan = Plan {
        origin,
        signers: &signers,
        ksks: &ksks,
        zsks: &zsks,
        cache,
        opts,
    };
    let chunks: Vec<Result<Vec<(CacheEntryOut, usize)>, SignError>> = items
        .par_chunks(CHECK_BATCH)
        .map(|chunk| sign_chunk(&plan, chunk))
        .collect();
    let mut out = Vec::with_capacity(items.len());
    let mut made = 0;
    for c in chunks {
        for (entry, n) in c? {
            made += n;
            out.push(entry.rrsigs.into_iter().map(|r| r.rdata).collect());
        }
    }
    Ok((out, made))
}

struct CacheEntryOut {
    digest: [u8; 32],
    rrsigs: Vec<cache::CachedRrsig>,
}

/// Indices of the RRsets at `node` that get RRSIGs.
fn signed_rrsets(n: &Node) -> impl Iterator<Item = usize> + '_ {
    n.rrsets.iter().enumerate().filter_map(move |(i, r)| {
        let yes = match n.kind {
            NodeKind::Apex | NodeKind::Auth => true,
            NodeKind::Delegation => matches!(r.rtype, rtype::DS | rtype::NSEC),
            NodeKind::BelowCut => false,
        };
        yes.then_some(i)
    })
}

/// RRsets signed together: each key signs a chunk's RRsets in one call, and the batched
/// checks of a chunk share one modular inversion.
const CHECK_BATCH: usize = 512;

/// What every chunk of signing work needs to see.
struct Plan<'a> {
    origin: &'a Name,
    signers: &'a [Signer],
    ksks: &'a [usize],
    zsks: &'a [usize],
    cache: &'a SignatureCache,
    opts: &'a SignOptions,
}

/// A signature to make: where its RRSIG goes, the RRSIG rdata before the signature, and
/// the data to sign.
struct Pending {
    item: usize,
    slot: usize,
    signer: usize,
    head: Vec<u8>,
    inception: u32,
    expiration: u32,
    data: Vec<u8>,
}

/// Signs (or reuses from the cache) every RRSIG of `items`; checks every fresh signature
/// before returning it. Returns per item its cache entry and how many RRSIGs were made.
/// Each key signs the chunk's data in one call ([`SigningKey::sign_batch`]).
fn sign_chunk(
    plan: &Plan<'_>,
    items: &[(&Name, &Rrset)],
) -> Result<Vec<(CacheEntryOut, usize)>, SignError> {
    let mut outs = Vec::with_capacity(items.len());
    let mut pending: Vec<Pending> = Vec::new();
    for (ii, (owner, set)) in items.iter().enumerate() {
        let digest = SignatureCache::digest(owner, set.rtype, set.ttl, &set.rdatas);
        let who = if matches!(set.rtype, rtype::DNSKEY | rtype::CDS | rtype::CDNSKEY) {
            plan.ksks
        } else {
            plan.zsks
        };
        let mut out = CacheEntryOut {
            digest,
            rrsigs: Vec::with_capacity(who.len()),
        };
        let mut signed = 0;
        for &ki in who {
            let s = &plan.signers[ki];
            if let Some(c) = plan.cache.reusable(
                owner,
                set.rtype,
                &digest,
                &s.id,
                plan.opts.now,
                plan.opts.refresh_s,
            ) {
                out.rrsigs.push(c.clone());
                continue;
            }
            pending.push(prepare_one(plan, ki, owner, set, ii, out.rrsigs.len()));
            // A placeholder until the key has signed.
            out.rrsigs.push(cache::CachedRrsig {
                key: s.id,
                inception: 0,
                expiration: 0,
                rdata: std::sync::Arc::from(&[][..]),
            });
            signed += 1;
        }
        outs.push((out, signed));
    }
    for (ki, s) in plan.signers.iter().enumerate() {
        let mine: Vec<&Pending> = pending.iter().filter(|p| p.signer == ki).collect();
        if mine.is_empty() {
            continue;
        }
        let data: Vec<&[u8]> = mine.iter().map(|p| p.data.as_slice()).collect();
        let sigs = s.key.sign_batch(&data)?;
        if sigs.len() != mine.len() {
            return Err(SignError::Hsm(HsmError::Sign {
                key: s.key.handle().into(),
                msg: format!(
                    "{} signatures returned for {} inputs",
                    sigs.len(),
                    mine.len()
                ),
            }));
        }
        let checks: Vec<(&[u8], &[u8])> = data
            .iter()
            .zip(&sigs)
            .map(|(d, g)| (*d, g.as_slice()))
            .collect();
        let ok = match &s.check {
            Check::PublicKey(v) => checks.iter().map(|(d, g)| v.verify(d, g)).collect(),
            Check::Batch(v) => v.verify_batch(&checks),
        };
        if let Some(bad) = ok.iter().position(|ok| !ok) {
            let (owner, set) = items[mine[bad].item];
            return Err(bad_signature(s, owner, set.rtype));
        }
        for (p, sig) in mine.iter().zip(sigs) {
            let mut rdata = Vec::with_capacity(p.head.len() + sig.len());
            rdata.extend_from_slice(&p.head);
            rdata.extend_from_slice(&sig);
            outs[p.item].0.rrsigs[p.slot] = cache::CachedRrsig {
                key: s.id,
                inception: p.inception,
                expiration: p.expiration,
                rdata: rdata.into(),
            };
        }
    }
    Ok(outs)
}

fn bad_signature(s: &Signer, owner: &Name, t: u16) -> SignError {
    SignError::BadSignature {
        handle: s.key.handle().into(),
        tag: s.tag,
        alg: s.key.dnskey().algorithm,
        owner: owner.to_text(),
        rtype: rtype::to_text(t),
    }
}

/// The RRSIG signer `signer` of the plan will make over `set` (item `item` of the chunk,
/// RRSIG `slot` of its entry): all but the signature, and the data it signs.
fn prepare_one(
    plan: &Plan<'_>,
    signer: usize,
    owner: &Name,
    set: &Rrset,
    item: usize,
    slot: usize,
) -> Pending {
    let (s, opts) = (&plan.signers[signer], plan.opts);
    let inception = opts.now.wrapping_sub(opts.inception_offset_s);
    let jitter = if opts.jitter_s == 0 {
        0
    } else {
        (jitter_seed(owner, set.rtype) % (opts.jitter_s as u64 + 1)) as u32
    };
    let expiration = opts.now.wrapping_add(opts.validity_s).wrapping_sub(jitter);
    let header = RrsigHeader {
        type_covered: set.rtype,
        algorithm: s.key.dnskey().algorithm,
        labels: rrsig_labels(owner),
        original_ttl: set.ttl,
        expiration,
        inception,
        key_tag: s.tag,
        signer: plan.origin.clone(),
    };
    let mut data = Vec::with_capacity(256);
    signed_data(&header, owner, set.rtype, &set.rdatas, &mut data);
    let mut head = Vec::with_capacity(128);
    header.write(&mut head);
    Pending {
        item,
        slot,
        signer,
        head,
        inception,
        expiration,
        data,
    }
}

/// A stable per-RRset number (FNV-1a) so jitter is the same on every run and every node.
fn jitter_seed(owner: &Name, t: u16) -> u64 {
    crate::fnv1a(owner.as_wire().iter().chain(&t.to_be_bytes()).copied())
}

fn add_apex_records(zone: &mut Zone, keys: &[Arc<dyn SigningKey>], opts: &SignOptions) {
    let (_, _, soa_ttl) = zone.soa();
    let existing = zone.apex().rrset(rtype::DNSKEY).cloned();
    let ttl = opts
        .dnskey_ttl
        .or(existing.as_ref().map(|r| r.ttl))
        .unwrap_or(soa_ttl);
    let mut rdatas: Vec<Box<[u8]>> = existing
        .map(|r| r.rdatas.iter().map(Box::from).collect())
        .unwrap_or_default();
    rdatas.extend(
        keys.iter()
            .filter(|k| opts.usage_of(k.dnskey()).publish)
            .map(|k| k.dnskey().rdata().into_boxed_slice()),
    );
    zone.set_apex_rrset(rtype::DNSKEY, ttl, rdatas);
    if !opts.cds.is_empty() {
        let origin = zone.origin.clone();
        let chosen: Vec<&crate::keys::DnsKey> = keys
            .iter()
            .map(|k| k.dnskey())
            .filter(|d| opts.cds.contains(&d.id()))
            .collect();
        let cds: Vec<Box<[u8]>> = chosen
            .iter()
            .filter_map(|d| d.ds_rdata(&origin, 2))
            .map(Vec::into_boxed_slice)
            .collect();
        let cdnskey: Vec<Box<[u8]>> = chosen
            .iter()
            .map(|d| d.rdata().into_boxed_slice())
            .collect();
        zone.set_apex_rrset(rtype::CDS, ttl, cds);
        zone.set_apex_rrset(rtype::CDNSKEY, ttl, cdnskey);
    }
    match &opts.denial {
        Denial::Nsec3(p) => zone.set_apex_rrset(
            rtype::NSEC3PARAM,
            0,
            vec![nsec3::nsec3param_rdata(p).into_boxed_slice()],
        ),
        Denial::Nsec => zone.set_apex_rrset(rtype::NSEC3PARAM, 0, Vec::new()),
    }
}

/// The types a denial record at `node` lists before RRSIG/NSEC: at a zone cut only NS and
/// DS (RFC 4035 §2.3), elsewhere every type present.
pub(crate) fn authoritative_types(node: &Node) -> Vec<u16> {
    let types = node.rrsets.iter().map(|r| r.rtype);
    match node.kind {
        NodeKind::Delegation => types
            .filter(|t| matches!(*t, rtype::NS | rtype::DS))
            .collect(),
        _ => types.collect(),
    }
}

/// RFC 4034 §4: one NSEC per authoritative name and delegation, in canonical order.
fn add_nsec(zone: &mut Zone, ttl: u32) {
    let chain: Vec<usize> = (0..zone.nodes.len())
        .filter(|&i| zone.nodes[i].kind != NodeKind::BelowCut)
        .collect();
    for (k, &i) in chain.iter().enumerate() {
        let next = zone.nodes[chain[(k + 1) % chain.len()]].name.clone();
        let node = &zone.nodes[i];
        let mut types = authoritative_types(node);
        types.extend([rtype::RRSIG, rtype::NSEC]);
        let mut rd = next.as_wire().to_vec();
        rd.extend_from_slice(&type_bitmap(&mut types));
        let node = &mut zone.nodes[i];
        node.rrsets.push(Rrset {
            rtype: rtype::NSEC,
            ttl,
            rdatas: crate::zone::Rdatas::one(&rd),
        });
        node.rrsets.sort_by_key(|r| r.rtype);
    }
}

impl SignedZone {
    /// Writes the signed zone in presentation form, node by node.
    pub fn write_text(
        &self,
        out: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        // Format windows of nodes on all cores, write each window in order: bounded memory.
        const NODES_PER_PIECE: usize = 2048;
        const PIECES_PER_WINDOW: usize = 64;
        let nodes: Vec<&Node> = self.zone.nodes.iter().chain(&self.nsec3).collect();
        for window in nodes.chunks(NODES_PER_PIECE * PIECES_PER_WINDOW) {
            let texts: Vec<String> = window
                .par_chunks(NODES_PER_PIECE)
                .map(format_nodes)
                .collect();
            for t in &texts {
                out(t)?;
            }
        }
        Ok(())
    }
}

fn format_nodes(nodes: &[&Node]) -> String {
    let mut buf = String::with_capacity(nodes.len() * 256);
    for node in nodes {
        for set in &node.rrsets {
            for d in &set.rdatas {
                crate::zone::write::push_record(&mut buf, &node.name, set.rtype, set.ttl, d);
            }
        }
        for (ttl, d) in &node.sigs {
            crate::zone::write::push_record(&mut buf, &node.name, rtype::RRSIG, *ttl, d);
        }
    }
    buf
}
