//! The validator: an independent full check of a signed zone.
//!
//! # Background
//! What every validator in the world will check, checked before anyone else sees the zone:
//! - every RRSIG verifies with a DNSKEY of the apex and is inside its validity window
//!   (RFC 4035 §5.3);
//! - every authoritative RRset is signed, by every algorithm in the DNSKEY RRset
//!   (RFC 4035 §2.2), and nothing non-authoritative is (delegation NS, glue, occluded data);
//! - the DNSKEY RRset is signed by a key-signing key, and optionally chains to a trust
//!   anchor (a DS or DNSKEY record);
//! - the NSEC chain (RFC 4034 §4) or NSEC3 chain (RFC 5155 §7.1) is complete and closed,
//!   with the right type bit maps and opt-out only where RFC 5155 §6 allows it.
//!
//! It shares only the zone model and canonical form with the signer; external validators
//! (dnssec-verify, ldns-verify-zone, kzonecheck) referee both in the tests.

pub mod denial;
pub mod incremental;

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use std::sync::Arc;

use crate::keys::BatchCheck;
use crate::keys::ecdsa_check::ScalarVerifier;
use crate::keys::ecdsa_table::TableVerifier;
use crate::keys::{DnsKey, RrsigHeader, Verifier, signed_data};
use crate::zone::serial;
use crate::zone::{Name, Node, NodeKind, Zone, rtype};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub now: u32,
    /// DS or DNSKEY rdata the zone must chain to: (type, rdata).
    pub trust_anchors: Vec<(u16, Vec<u8>)>,
    /// Skip the signature arithmetic of RRSIGs other than over the DNSKEY RRset: for the
    /// signer's publish gate, whose every signature was already checked as it was made.
    /// Everything else (coverage, windows, keys, labels, TTLs, chains) is still checked.
    pub signatures_prechecked: bool,
    /// Keys whose private scalar this process holds (the cluster's sealed soft keys): their
    /// signatures are checked by the verification equation through the scalar, in batches
    /// (about a third of a public-key verification; see [`ScalarVerifier`]). Keys not listed
    /// here, and DNSKEY-RRset signatures for the KSK test, use the public key.
    pub private_keys: Vec<Arc<ScalarVerifier>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub owner: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub zone: String,
    pub valid: bool,
    pub denial: String,
    pub rrsets_checked: usize,
    pub rrsigs_checked: usize,
    pub failures: Vec<Failure>,
}

pub(crate) fn failure(owner: &Name, t: u16, message: impl Into<String>) -> Failure {
    Failure {
        owner: owner.to_text(),
        rtype: rtype::to_text(t),
        message: message.into(),
    }
}

/// The apex keys, by (key tag, algorithm).
pub(crate) struct Keys {
    by_tag: HashMap<(u16, u8), Vec<(DnsKey, Verifier)>>,
    algorithms: Vec<u8>,
    /// (key tag, algorithm) held by exactly one key whose signatures are checked in batches:
    /// through its scalar when at hand, else through a table of its multiples (P-256).
    batched: HashMap<(u16, u8), Arc<dyn BatchCheck>>,
}

impl Keys {
    fn from_apex(apex: &Node, failures: &mut Vec<Failure>) -> Keys {
        match apex.rrset(rtype::DNSKEY) {
            Some(set) => Keys::from_dnskeys(&apex.name, &set.rdatas, failures),
            None => Keys {
                by_tag: HashMap::new(),
                algorithms: Vec::new(),
                batched: HashMap::new(),
            },
        }
    }

    /// Checks the signatures of the keys in `private` through their scalars and, with
    /// `tables`, those of the other P-256 keys through tables of their multiples.
    fn attach(&mut self, private: &[Arc<ScalarVerifier>], tables: bool) {
        for (tag, candidates) in &self.by_tag {
            let [(k, _)] = candidates.as_slice() else {
                continue;
            };
            if let Some(v) = private
                .iter()
                .find(|v| v.key() == (k.algorithm, k.public_key.as_slice()))
            {
                self.batched.insert(*tag, v.clone());
            } else if tables
                && k.algorithm == 13
                && let Ok(v) = TableVerifier::new(&k.public_key)
            {
                self.batched.insert(*tag, Arc::new(v));
            }
        }
    }

    /// The zone keys of a DNSKEY RRset at `apex`.
    pub(crate) fn from_dnskeys(
        apex: &Name,
        rdatas: &crate::zone::Rdatas,
        failures: &mut Vec<Failure>,
    ) -> Keys {
        let mut by_tag: HashMap<(u16, u8), Vec<(DnsKey, Verifier)>> = HashMap::new();
        let mut algorithms = Vec::new();
        for d in rdatas {
            let Some(k) = DnsKey::from_rdata(d) else {
                failures.push(failure(apex, rtype::DNSKEY, "malformed DNSKEY record"));
                continue;
            };
            if k.flags & crate::keys::FLAG_ZONE == 0 {
                continue;
            }
            match k.verifier() {
                Ok(v) => {
                    if !algorithms.contains(&k.algorithm) {
                        algorithms.push(k.algorithm);
                    }
                    by_tag
                        .entry((k.key_tag(), k.algorithm))
                        .or_default()
                        .push((k, v));
                }
                Err(e) => failures.push(failure(
                    apex,
                    rtype::DNSKEY,
                    format!("DNSKEY with tag {}: {e}", k.key_tag()),
                )),
            }
        }
        Keys {
            by_tag,
            algorithms,
            batched: HashMap::new(),
        }
    }
}

/// One RRset as the RRSIG checks see it.
pub(crate) struct SignedRrset<'a> {
    pub origin: &'a Name,
    pub owner: &'a Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdatas: &'a crate::zone::Rdatas,
}

/// Checks every RRSIG in `sigs` over the authoritative RRset `set`, and that each algorithm
/// of the DNSKEY RRset has a valid one. Returns the number of RRSIGs checked.
///
/// With `defer`, signatures of keys checked in batches are queued there (and
/// counted as good here); [`settle`] checks them and reports those that fail.
pub(crate) fn check_rrset_sigs(
    set: &SignedRrset<'_>,
    sigs: &[&(RrsigHeader, &[u8])],
    keys: &Keys,
    opts: &VerifyOptions,
    buf: &mut Vec<u8>,
    failures: &mut Vec<Failure>,
    mut defer: Option<&mut Vec<Deferred>>,
) -> usize {
    let mut good_algs: Vec<u8> = Vec::new();
    for (h, sig) in sigs {
        match check_rrsig(set, h, sig, keys, opts, buf, defer.as_deref_mut()) {
            Ok(()) => {
                if !good_algs.contains(&h.algorithm) {
                    good_algs.push(h.algorithm);
                }
            }
            Err(msg) => failures.push(failure(set.owner, set.rtype, msg)),
        }
    }
    for a in &keys.algorithms {
        if !good_algs.contains(a) {
            failures.push(failure(
                set.owner,
                set.rtype,
                format!(
                    "no valid RRSIG of algorithm {a}, which the DNSKEY RRset has (RFC 4035 §2.2)"
                ),
            ));
        }
    }
    sigs.len()
}

/// A signed zone as the validator reads it: its nodes in canonical order, each with its
/// kind set, a window at a time (the nodes of an NSEC3 chain may come apart from the
/// rest). A zone held in another form (a node's replicated content) is then never modelled
/// whole: at 1M delegations the model was ~270 MiB on top of the content.
pub trait Source: Sync {
    fn origin(&self) -> &Name;
    /// The apex node (the first of the first window).
    fn apex(&self) -> &Node;
    /// How many nodes there are (for progress).
    fn node_count(&self) -> usize;
    /// Hands every node to `f`, in windows; may be called again (to look closer at what
    /// the first pass found wrong).
    fn windows(&self, f: &mut dyn FnMut(&[Node]));
}

impl Source for Zone {
    fn origin(&self) -> &Name {
        &self.origin
    }
    fn apex(&self) -> &Node {
        Zone::apex(self)
    }
    fn node_count(&self) -> usize {
        self.nodes.len()
    }
    fn windows(&self, f: &mut dyn FnMut(&[Node])) {
        f(&self.nodes)
    }
}

/// A zone and an NSEC3 chain kept apart (the signer's output).
struct WithChain<'a>(&'a Zone, &'a [Node]);

impl Source for WithChain<'_> {
    fn origin(&self) -> &Name {
        &self.0.origin
    }
    fn apex(&self) -> &Node {
        self.0.apex()
    }
    fn node_count(&self) -> usize {
        self.0.nodes.len() + self.1.len()
    }
    fn windows(&self, f: &mut dyn FnMut(&[Node])) {
        f(&self.0.nodes);
        f(self.1)
    }
}

/// Checks a whole signed zone. `zone` must have been parsed with DNSSEC records kept.
pub fn verify_zone(zone: &Zone, opts: &VerifyOptions) -> Report {
    verify_source(zone, opts, &|_, _| {})
}

/// As [`verify_zone`]; `progress` hears (names checked, names).
pub fn verify_zone_with_progress(
    zone: &Zone,
    opts: &VerifyOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Report {
    verify_source(zone, opts, progress)
}

/// Checks a freshly signed zone before it is written: the signer's publish gate.
/// Structure, coverage and chains in full; signatures were checked one by one as they were
/// made (see [`VerifyOptions::signatures_prechecked`]), except the DNSKEY RRset's.
pub fn verify_signed(zone: &Zone, nsec3: &[Node], now: u32) -> Report {
    let opts = VerifyOptions {
        now,
        trust_anchors: Vec::new(),
        signatures_prechecked: true,
        private_keys: Vec::new(),
    };
    verify_source(&WithChain(zone, nsec3), &opts, &|_, _| {})
}

/// Checks the zone `src` reads, window by window: the signatures of each window as it
/// comes, the denial chain from what each window leaves behind (see [`denial::Chain`]).
pub fn verify_source(
    src: &dyn Source,
    opts: &VerifyOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Report {
    let origin = src.origin();
    let mut report = Report {
        zone: origin.to_text(),
        ..Default::default()
    };
    let mut failures = Vec::new();
    let apex = src.apex();
    let mut keys = Keys::from_apex(apex, &mut failures);
    // A key's table costs about a hundred signature checks to build.
    let tables = !opts.signatures_prechecked && src.node_count() >= TABLE_MIN_NODES;
    keys.attach(&opts.private_keys, tables);
    if apex.rrset(rtype::DNSKEY).is_none() {
        failures.push(failure(
            &apex.name,
            rtype::DNSKEY,
            "no DNSKEY RRset at the apex",
        ));
    }
    let mut chain = denial::Chain::new(origin, apex);
    let t0 = std::time::Instant::now();
    let (done, total) = (std::sync::atomic::AtomicUsize::new(0), src.node_count());
    // Summed as the threads go (a result per node was 40 bytes × every node of the zone).
    // In chunks: signatures checked in batches are settled a chunk's batch at a time.
    const CHUNK: usize = 256;
    src.windows(&mut |nodes: &[Node]| {
        let (sets, sigs, found) = nodes
            .par_chunks(CHUNK)
            .map(|chunk| {
                let d =
                    done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed) + chunk.len();
                if d / 4096 != (d - chunk.len()) / 4096 || d == total {
                    progress(d, total);
                }
                let mut queue = Vec::new();
                let mut acc = (0, 0, Vec::new());
                for n in chunk {
                    let (a, b, f) = check_node(origin, n, &keys, opts, &mut queue);
                    acc.0 += a;
                    acc.1 += b;
                    acc.2.extend(f);
                }
                settle(queue, &mut acc.2);
                acc
            })
            .reduce(
                || (0, 0, Vec::new()),
                |(a, b, mut f), (c, d, g)| {
                    f.extend(g);
                    (a + c, b + d, f)
                },
            );
        report.rrsets_checked += sets;
        report.rrsigs_checked += sigs;
        failures.extend(found);
        chain.add(nodes);
    });
    let t1 = std::time::Instant::now();
    check_ksk(origin, apex, &keys, opts, &mut failures);
    report.denial = chain.finish(src, &mut failures);
    tracing::debug!(
        checks_ms = (t1 - t0).as_millis() as u64,
        denial_ms = t1.elapsed().as_millis() as u64,
        "checked {origin}"
    );
    report.valid = failures.is_empty();
    report.failures = failures;
    report
}

pub(crate) fn is_nsec3_node(n: &Node) -> bool {
    !n.rrsets.is_empty() && n.rrsets.iter().all(|r| r.rtype == rtype::NSEC3)
}

/// Whether an RRset at this node is authoritative and so must be signed.
fn authoritative(kind: NodeKind, t: u16) -> bool {
    match kind {
        NodeKind::Apex | NodeKind::Auth => true,
        NodeKind::Delegation => matches!(t, rtype::DS | rtype::NSEC),
        NodeKind::BelowCut => false,
    }
}

/// Zones with at least this many nodes have their P-256 keys' signatures checked through
/// tables of the keys' multiples (see [`TableVerifier`]); the signer uses it too.
pub(crate) const TABLE_MIN_NODES: usize = 4096;

/// A signature queued for a batched check.
pub(crate) struct Deferred {
    check: Arc<dyn BatchCheck>,
    data: Vec<u8>,
    sig: Vec<u8>,
    owner: Name,
    rtype: u16,
    tag: u16,
    algorithm: u8,
}

/// Checks the queued signatures, a batch per key, and reports each that fails.
fn settle(mut queue: Vec<Deferred>, failures: &mut Vec<Failure>) {
    while let Some(first) = queue.first() {
        let v = first.check.clone();
        let (mine, rest): (Vec<Deferred>, Vec<Deferred>) =
            queue.into_iter().partition(|d| Arc::ptr_eq(&d.check, &v));
        let items: Vec<(&[u8], &[u8])> = mine
            .iter()
            .map(|d| (d.data.as_slice(), d.sig.as_slice()))
            .collect();
        for (d, ok) in mine.iter().zip(v.verify_batch(&items)) {
            if !ok {
                failures.push(failure(
                    &d.owner,
                    d.rtype,
                    does_not_verify(d.tag, d.algorithm),
                ));
            }
        }
        queue = rest;
    }
}

fn does_not_verify(tag: u16, algorithm: u8) -> String {
    format!("RRSIG (tag {tag}, algorithm {algorithm}) does not verify")
}

fn check_node(
    origin: &Name,
    node: &Node,
    keys: &Keys,
    opts: &VerifyOptions,
    defer: &mut Vec<Deferred>,
) -> (usize, usize, Vec<Failure>) {
    let mut failures = Vec::new();
    if crate::zone::cname_conflict(node) {
        failures.push(failure(
            &node.name,
            rtype::CNAME,
            "CNAME beside other data or more than one CNAME (RFC 1034 §3.6.2, RFC 2181 §10.1)",
        ));
    }
    let mut sigs_checked = 0;
    let mut parsed: Vec<(RrsigHeader, &[u8])> = Vec::with_capacity(node.sigs.len());
    for (_, d) in &node.sigs {
        match RrsigHeader::parse(d) {
            Some(p) => parsed.push(p),
            None => failures.push(failure(&node.name, rtype::RRSIG, "malformed RRSIG record")),
        }
    }
    let mut buf = Vec::with_capacity(512);
    for set in &node.rrsets {
        let sigs: Vec<&(RrsigHeader, &[u8])> = parsed
            .iter()
            .filter(|(h, _)| h.type_covered == set.rtype)
            .collect();
        if !authoritative(node.kind, set.rtype) {
            if !sigs.is_empty() {
                failures.push(failure(
                    &node.name,
                    set.rtype,
                    "non-authoritative data (delegation NS, glue or occluded) is signed",
                ));
            }
            continue;
        }
        if sigs.is_empty() {
            failures.push(failure(&node.name, set.rtype, "RRset is not signed"));
            continue;
        }
        let signed = SignedRrset {
            origin,
            owner: &node.name,
            rtype: set.rtype,
            ttl: set.ttl,
            rdatas: &set.rdatas,
        };
        sigs_checked += check_rrset_sigs(
            &signed,
            &sigs,
            keys,
            opts,
            &mut buf,
            &mut failures,
            Some(&mut *defer),
        );
    }
    for (h, _) in &parsed {
        if node.rrset(h.type_covered).is_none() {
            failures.push(failure(
                &node.name,
                h.type_covered,
                "RRSIG covers a type with no RRset here",
            ));
        }
    }
    (node.rrsets.len(), sigs_checked, failures)
}

fn check_rrsig(
    set: &SignedRrset<'_>,
    h: &RrsigHeader,
    sig: &[u8],
    keys: &Keys,
    opts: &VerifyOptions,
    buf: &mut Vec<u8>,
    defer: Option<&mut Vec<Deferred>>,
) -> Result<(), String> {
    let tag = h.key_tag;
    if &h.signer != set.origin {
        return Err(format!(
            "RRSIG (tag {tag}) has signer {} instead of the zone {}",
            h.signer, set.origin
        ));
    }
    if h.labels as usize > set.owner.label_count()
        || (h.labels as usize) < crate::keys::rrsig_labels(set.owner) as usize
    {
        return Err(format!(
            "RRSIG (tag {tag}) has label count {} for a name of {} labels",
            h.labels,
            set.owner.label_count()
        ));
    }
    if h.original_ttl != set.ttl {
        return Err(format!(
            "RRSIG (tag {tag}) original TTL {} differs from the RRset TTL {}",
            h.original_ttl, set.ttl
        ));
    }
    if !serial::le(h.inception, opts.now) {
        return Err(format!(
            "RRSIG (tag {tag}) is not yet valid: inception {}",
            crate::zone::rdata::format_rrsig_time(h.inception)
        ));
    }
    if !serial::le(opts.now, h.expiration) {
        return Err(format!(
            "RRSIG (tag {tag}) has expired: expiration {}",
            crate::zone::rdata::format_rrsig_time(h.expiration)
        ));
    }
    let Some(candidates) = keys.by_tag.get(&(tag, h.algorithm)) else {
        return Err(format!(
            "RRSIG (tag {tag}, algorithm {}) matches no DNSKEY at the apex",
            h.algorithm
        ));
    };
    if opts.signatures_prechecked && set.rtype != rtype::DNSKEY {
        return Ok(());
    }
    signed_data(h, set.owner, set.rtype, set.rdatas, buf);
    if let (Some(queue), Some(v)) = (defer, keys.batched.get(&(tag, h.algorithm))) {
        queue.push(Deferred {
            check: v.clone(),
            data: buf.clone(),
            sig: sig.to_vec(),
            owner: set.owner.clone(),
            rtype: set.rtype,
            tag,
            algorithm: h.algorithm,
        });
        return Ok(());
    }
    if candidates.iter().any(|(_, v)| v.verify(buf, sig)) {
        Ok(())
    } else {
        Err(does_not_verify(tag, h.algorithm))
    }
}

/// The DNSKEY RRset must be signed by a KSK, and by a trust anchor's key when one is given.
fn check_ksk(
    origin: &Name,
    apex: &Node,
    keys: &Keys,
    opts: &VerifyOptions,
    failures: &mut Vec<Failure>,
) {
    let Some(set) = apex.rrset(rtype::DNSKEY) else {
        return;
    };
    let mut buf = Vec::new();
    let signers: Vec<&DnsKey> = apex
        .sigs
        .iter()
        .filter_map(|(_, d)| RrsigHeader::parse(d))
        .filter(|(h, _)| {
            h.type_covered == rtype::DNSKEY
                && serial::le(h.inception, opts.now)
                && serial::le(opts.now, h.expiration)
        })
        .filter_map(|(h, sig)| {
            signed_data(&h, &apex.name, rtype::DNSKEY, &set.rdatas, &mut buf);
            keys.by_tag
                .get(&(h.key_tag, h.algorithm))?
                .iter()
                .find(|(_, v)| v.verify(&buf, sig))
                .map(|(k, _)| k)
        })
        .collect();
    if !signers.iter().any(|k| k.is_sep()) {
        failures.push(failure(
            &apex.name,
            rtype::DNSKEY,
            "DNSKEY RRset is not signed by a key-signing key (SEP flag)",
        ));
    }
    if opts.trust_anchors.is_empty() {
        return;
    }
    let anchored = signers.iter().any(|k| {
        opts.trust_anchors.iter().any(|(t, rd)| match *t {
            rtype::DNSKEY => DnsKey::from_rdata(rd)
                .is_some_and(|a| a.algorithm == k.algorithm && a.public_key == k.public_key),
            rtype::DS => rd.len() > 4 && k.ds_rdata(origin, rd[3]).is_some_and(|d| d == *rd),
            _ => false,
        })
    });
    if !anchored {
        failures.push(failure(
            &apex.name,
            rtype::DNSKEY,
            "DNSKEY RRset is not signed by any key of the trust anchor",
        ));
    }
}
