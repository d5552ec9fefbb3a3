//! `ClusterState`: what every node holds after applying the log, and how commands change it.
//!
//! Applying is deterministic and does no I/O: the same log gives the same state on every
//! node (invariant K). Signed content is kept per zone as RRsets in canonical order with
//! their RRSIGs; the content hash is a sum of per-RRset SHA-256 digests, so a version that
//! changes a few RRsets is hashed in time proportional to the change.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use super::{LogId, NodeId, Origin, Token, TypeConfig};
use crate::keys::KeyId;
use crate::zone::Name;

/// How many published versions each zone remembers (for status and, later, IXFR).
const HISTORY_MAX: usize = 32;
/// How many versions' change lists are kept for incremental validation.
const RECENT_MAX: usize = 8;
/// A version that changed more RRsets than this is not listed in `recent`: it clears it, so
/// that the validator checks it (and any version after it, until the list reaches back)
/// in full.
const RECENT_TOUCHED_MAX: usize = 200_000;
/// Most RRsets the IXFR journal of one zone holds; older deltas are dropped first, and a
/// version that changes more than this has no delta (IXFR falls back to AXFR).
const JOURNAL_MAX_RRSETS: usize = 200_000;
/// How many audit records are kept.
const AUDIT_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Zone name, absolute, lowercase.
    pub name: String,
    /// `file:PATH`.
    pub input: String,
    /// `nsec`, `nsec3` or `nsec3-optout`.
    pub denial: String,
    pub algorithm: u8,
    /// One combined signing key instead of a KSK and a ZSK.
    pub csk: bool,
    pub validity_s: u32,
    pub refresh_s: u32,
    pub jitter_s: u32,
    pub inception_offset_s: u32,
    /// SOA serial policy: `keep`, `increment`, `unixtime` or `datecounter`.
    pub serial: String,
    /// Signed zone file the leader writes after each version (absolute path), if any.
    pub output: Option<String>,
    /// Secondaries told of each new version: `ADDR:PORT` or `ADDR:PORT key NAME`.
    pub notify: Vec<String>,
    /// Who may transfer the signed zone: `PREFIX key NAME` (TSIG always required).
    pub transfer: Vec<String>,
    /// Largest input accepted, in records.
    pub max_records: u64,
    /// Key and signing policy; the fields above that it also holds (algorithm, CSK,
    /// signature timing, denial) are kept equal to it by [`ZoneConfig::set_policy`].
    pub policy: crate::kasp::Policy,
}

impl ZoneConfig {
    pub fn new(name: &str, input: &str) -> ZoneConfig {
        let mut name = name.to_ascii_lowercase();
        if !name.ends_with('.') {
            name.push('.');
        }
        ZoneConfig {
            name,
            input: input.into(),
            denial: "nsec3".into(),
            algorithm: 13,
            csk: false,
            validity_s: 14 * 86_400,
            refresh_s: 3 * 86_400,
            jitter_s: 12 * 3600,
            inception_offset_s: 3600,
            serial: "increment".into(),
            output: None,
            notify: Vec::new(),
            transfer: Vec::new(),
            max_records: 50_000_000,
            policy: crate::kasp::Policy::default(),
        }
    }

    /// Takes a policy, and with it the algorithm, key roles, signature timing and denial.
    pub fn set_policy(&mut self, p: crate::kasp::Policy) {
        self.algorithm = p.algorithm;
        self.csk = p.csk;
        self.validity_s = p.signature_validity;
        self.refresh_s = p.signature_refresh;
        self.jitter_s = p.signature_jitter;
        self.inception_offset_s = p.signature_inception_offset;
        self.denial = p.denial.clone();
        self.policy = p;
    }

    /// The policy with this zone's own signing fields laid over it (the fields win: they
    /// are what `zone add`/`zone set` options change).
    pub fn synced_policy(&self) -> crate::kasp::Policy {
        crate::kasp::Policy {
            algorithm: self.algorithm,
            csk: self.csk,
            signature_validity: self.validity_s,
            signature_refresh: self.refresh_s,
            signature_jitter: self.jitter_s,
            signature_inception_offset: self.inception_offset_s,
            denial: self.denial.clone(),
            ..self.policy.clone()
        }
    }
}

/// A key that exists for the cluster. Private material is either in a shared HSM
/// (`handle` is its PKCS#11 URI) or sealed with the cluster passphrase (`sealed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub zone: String,
    pub id: KeyId,
    /// `ksk`, `zsk` or `csk`.
    pub role: String,
    pub algorithm: u8,
    pub tag: u16,
    /// DNSKEY rdata.
    pub dnskey: Vec<u8>,
    /// `active` (signs and is published); the key-lifecycle engine adds the others.
    pub state: String,
    pub created: u64,
    pub handle: String,
    pub sealed: Option<Vec<u8>>,
}

/// One RRset of a signed version and its RRSIG rdatas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrsetVal {
    pub ttl: u32,
    pub rdatas: crate::zone::Rdatas,
    pub sigs: Vec<std::sync::Arc<[u8]>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrsetChange {
    pub owner: Name,
    pub rtype: u16,
    /// `None` removes the RRset.
    pub val: Option<RrsetVal>,
}

/// A published version of a zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub serial: u32,
    pub hash: [u8; 32],
    /// Filled in when the version is applied: the term and index of its `Publish`.
    pub token: Token,
    pub published_at: u64,
    pub leader: NodeId,
    pub rrsets: u64,
    pub changes: u64,
    /// RRsets signed for this version / signatures taken from the cache.
    pub signed: u64,
    pub reused: u64,
    /// RRsets whose content did not change but that were signed again before their refresh
    /// window (should stay 0: a failover must not re-sign what is not due).
    pub resigned_unchanged: u64,
    /// SHA-256 of the unsigned input this version was made from.
    pub input_digest: [u8; 32],
    /// The zone's `reload_seq` this version answered.
    pub reload_seq: u64,
    /// The keys that signed it.
    pub keys: Vec<KeyId>,
    /// Earliest RRSIG expiration in the version.
    pub min_expiration: u32,
    /// The input's own serial (a primary's SOA serial, or the file's).
    pub input_serial: u32,
    /// The key-lifecycle state (`KeySet::seq`) the version shows (the waits of the
    /// changes it shows start once the leader sees it committed: `Command::KeysShown`).
    pub keyset_seq: u64,
    /// TTLs measured on the unsigned input, for the key-lifecycle waits.
    pub facts: crate::kasp::Facts,
}

/// An owner name ordered canonically (RFC 4034 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner(pub Name);

impl Ord for Owner {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp_canonical(&o.0)
    }
}

impl PartialOrd for Owner {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The replicated RRsets of a zone.
pub type Content = BTreeMap<(Owner, u16), RrsetVal>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ZoneState {
    pub config: Option<ZoneConfig>,
    pub content: BTreeMap<(Owner, u16), RrsetVal>,
    pub hash: [u8; 32],
    pub current: Option<Version>,
    pub history: VecDeque<Version>,
    /// Versions under construction: upload id → parts.
    pub staged: BTreeMap<u64, Vec<Staged>>,
    /// Bumped by `zone reload`; the leader re-reads the input when it changes.
    pub reload_seq: u64,
    /// The RRsets each recent version changed, by the index of its Publish: what a node
    /// validates when it applies them.
    pub recent: VecDeque<(u64, Vec<(Name, u16)>)>,
    /// What recent versions changed, with the RRsets before and after: IXFR out, and the
    /// way back to the last version a node validated while it checks a newer one.
    pub journal: Vec<Delta>,
    /// Key lifecycle: per-key record states, decided by the engine through `KeyEval`.
    pub keyset: crate::kasp::KeySet,
}

/// One part of a version under construction, as a node holds it until the version's
/// `Publish`. What a first version's fill needs of it (the digests' sum, whether its
/// changes are in order) is worked out when the part is decoded, outside the state's
/// lock and while later parts are still arriving, not all at once at the publish.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Staged {
    pub changes: Vec<RrsetChange>,
    /// The sum of the digests of the RRsets it sets (see [`hash_step`]).
    sum: [u8; 32],
    /// Its changes are in strictly increasing (owner, type) order.
    ordered: bool,
}

impl Staged {
    pub fn new(changes: Vec<RrsetChange>) -> Staged {
        let (sum, _) = digest_sums(changes.iter(), |_| None);
        let ordered = changes.windows(2).all(|w| before(&w[0], &w[1]));
        Staged {
            changes,
            sum,
            ordered,
        }
    }
}

/// The sums of the digests of the RRsets `changes` set and of those `old` says they
/// replace or remove.
fn digest_sums<'a, 'b>(
    changes: impl Iterator<Item = &'a RrsetChange>,
    old: impl Fn(&RrsetChange) -> Option<&'b RrsetVal>,
) -> ([u8; 32], [u8; 32]) {
    let (mut add, mut sub) = ([0u8; 32], [0u8; 32]);
    for c in changes {
        if let Some(o) = old(c) {
            hash_step(&mut sub, &rrset_digest(&c.owner, c.rtype, o), false);
        }
        if let Some(new) = &c.val {
            hash_step(&mut add, &rrset_digest(&c.owner, c.rtype, new), false);
        }
    }
    (add, sub)
}

/// Does `a` come strictly before `b` in (owner, type) order?
fn before(a: &RrsetChange, b: &RrsetChange) -> bool {
    a.owner
        .cmp_canonical(&b.owner)
        .then(a.rtype.cmp(&b.rtype))
        .is_lt()
}

/// The change from one version to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub from_serial: u32,
    pub to_serial: u32,
    /// Tokens of the version it starts from and of the one it leads to.
    pub from_token: Token,
    pub token: Token,
    /// (RRset, before, after), in canonical order.
    pub changes: Vec<((Owner, u16), Option<RrsetVal>, Option<RrsetVal>)>,
}

impl ZoneState {
    /// The deltas from the first one `starts` accepts up to the current version, oldest
    /// first; `None` when the journal does not reach the current version or has no such
    /// start (compacted, or too big a change to keep).
    pub fn deltas_from(&self, starts: impl Fn(&Delta) -> bool) -> Option<&[Delta]> {
        let cur = self.current.as_ref()?;
        if self.journal.last().map(|d| d.token) != Some(cur.token) {
            return None;
        }
        let pos = self.journal.iter().position(starts)?;
        Some(&self.journal[pos..])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub index: u64,
    pub term: u64,
    pub origin: Origin,
    pub outcome: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterState {
    pub last_applied: Option<LogId>,
    pub membership: openraft::alias::StoredMembershipOf<TypeConfig>,
    pub zones: BTreeMap<String, ZoneState>,
    pub keys: Vec<KeyRecord>,
    pub audit: VecDeque<AuditRecord>,
    /// The last leader that started signing, and in which term.
    pub last_leader: Option<(NodeId, u64)>,
    /// A clean leadership transfer in progress: (from, to).
    pub handover: Option<(NodeId, NodeId)>,
    /// Nodes fenced, with the term in which that was done.
    pub fenced: BTreeMap<NodeId, u64>,
    /// Each member's store as the leader last saw it.
    pub stores: BTreeMap<NodeId, super::StoreRecord>,
    /// Zone -> the serials published last and their content hashes, oldest first (at most
    /// [`PUBLISHED_KEPT`]; kept when a zone is removed): a serial once published never
    /// carries another content.
    pub published: BTreeMap<String, VecDeque<(u32, [u8; 32])>>,
}

/// The state as it was encoded before `stores` and `published` were added: a snapshot of
/// that layout still loads (bincode encodes fields by position).
#[derive(Deserialize)]
struct ClusterStateBefore {
    last_applied: Option<LogId>,
    membership: openraft::alias::StoredMembershipOf<TypeConfig>,
    zones: BTreeMap<String, ZoneState>,
    keys: Vec<KeyRecord>,
    audit: VecDeque<AuditRecord>,
    last_leader: Option<(NodeId, u64)>,
    handover: Option<(NodeId, NodeId)>,
    fenced: BTreeMap<NodeId, u64>,
}

impl ClusterState {
    /// Decodes a snapshot's state, of this layout or the one before.
    pub fn decode(bytes: &[u8]) -> std::io::Result<ClusterState> {
        match super::decode::<ClusterState>(bytes) {
            Ok(st) => Ok(st),
            Err(e) => {
                let Ok(b) = super::decode::<ClusterStateBefore>(bytes) else {
                    return Err(e);
                };
                // The serials published so far are those of the current versions.
                let published = b
                    .zones
                    .iter()
                    .filter_map(|(name, z)| {
                        let v = z.current.as_ref()?;
                        Some((name.clone(), VecDeque::from([(v.serial, v.hash)])))
                    })
                    .collect();
                Ok(ClusterState {
                    last_applied: b.last_applied,
                    membership: b.membership,
                    zones: b.zones,
                    keys: b.keys,
                    audit: b.audit,
                    last_leader: b.last_leader,
                    handover: b.handover,
                    fenced: b.fenced,
                    stores: BTreeMap::new(),
                    published,
                })
            }
        }
    }
}

/// Serials remembered per zone in [`ClusterState::published`].
pub const PUBLISHED_KEPT: usize = 1024;

impl ClusterState {
    /// The content published under `serial` of `zone`, if remembered.
    pub fn published_hash(&self, zone: &str, serial: u32) -> Option<[u8; 32]> {
        self.published
            .get(zone)?
            .iter()
            .rev()
            .find(|(s, _)| *s == serial)
            .map(|(_, h)| *h)
    }

    /// The serial `zone` was published with last, if remembered (also after a removal).
    pub fn last_published(&self, zone: &str) -> Option<u32> {
        self.published.get(zone)?.back().map(|(s, _)| *s)
    }
}

/// SHA-256 of one RRset with its signatures: a term of the content hash.
pub fn rrset_digest(owner: &Name, rtype: u16, v: &RrsetVal) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(owner.as_wire());
    ctx.update(&rtype.to_be_bytes());
    ctx.update(&v.ttl.to_be_bytes());
    let rdatas = v.rdatas.iter().map(|d| &d[..]);
    let sigs = v.sigs.iter().map(|d| &d[..]);
    for (n, part) in [
        (
            v.rdatas.len(),
            Box::new(rdatas) as Box<dyn Iterator<Item = &[u8]>>,
        ),
        (v.sigs.len(), Box::new(sigs)),
    ] {
        ctx.update(&(n as u32).to_be_bytes());
        for d in part {
            ctx.update(&(d.len() as u32).to_be_bytes());
            ctx.update(d);
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn lanes(h: &[u8; 32]) -> [u64; 4] {
    std::array::from_fn(|i| u64::from_be_bytes(h[i * 8..i * 8 + 8].try_into().unwrap()))
}

fn from_lanes(l: [u64; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, v) in l.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Adds (or, with `sub`, removes) one RRset digest to a content hash.
pub fn hash_step(h: &mut [u8; 32], d: &[u8; 32], sub: bool) {
    let (a, b) = (lanes(h), lanes(d));
    *h = from_lanes(std::array::from_fn(|i| {
        if sub {
            a[i].wrapping_sub(b[i])
        } else {
            a[i].wrapping_add(b[i])
        }
    }));
}

/// Are the changes of all parts in strictly increasing (owner, type) order?
fn strictly_ordered(staged: &[Staged]) -> bool {
    let mut last: Option<&RrsetChange> = None;
    for p in staged {
        if !p.ordered {
            return false;
        }
        if let (Some(a), Some(b)) = (last, p.changes.first())
            && !before(a, b)
        {
            return false;
        }
        last = p.changes.last().or(last);
    }
    true
}

pub fn hex(h: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(h)
}

mod apply;
#[cfg(test)]
mod tests;
