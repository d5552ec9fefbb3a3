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

use super::{Command, LogId, NodeId, Origin, Outcome, Token, TypeConfig};
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

impl ZoneState {
    /// The unsigned zone this version was made from (the content without what the signer
    /// adds), in presentation form: a new leader's input when the input is a primary it
    /// has not transferred from yet.
    pub fn to_unsigned_text(&self) -> String {
        use crate::zone::rtype;
        let mut out = String::with_capacity(self.content.len() * 64);
        for ((owner, t), v) in &self.content {
            if matches!(
                *t,
                rtype::DNSKEY | rtype::NSEC | rtype::NSEC3 | rtype::NSEC3PARAM | rtype::RRSIG
            ) {
                continue;
            }
            for d in &v.rdatas {
                crate::zone::write::push_record(&mut out, &owner.0, *t, v.ttl, d);
            }
        }
        out
    }

    /// The signed zone in presentation form, in canonical order.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.content.len() * 200);
        for ((owner, t), v) in &self.content {
            for d in &v.rdatas {
                crate::zone::write::push_record(&mut out, &owner.0, *t, v.ttl, d);
            }
            for s in &v.sigs {
                crate::zone::write::push_record(
                    &mut out,
                    &owner.0,
                    crate::zone::rtype::RRSIG,
                    v.ttl,
                    s,
                );
            }
        }
        out
    }

    /// The content hash the zone would have after `changes`, without changing anything.
    pub fn hash_after<'a>(&self, changes: impl Iterator<Item = &'a RrsetChange>) -> [u8; 32] {
        self.shifted(self.digest_sums(changes))
    }

    /// [`Self::hash_after`] of many changes, on all cores (the sum is order-free).
    pub fn hash_after_all(&self, changes: &[RrsetChange]) -> [u8; 32] {
        use rayon::prelude::*;
        let sums = changes
            .par_chunks(4096)
            .map(|ch| self.digest_sums(ch.iter()))
            .reduce(
                || ([0u8; 32], [0u8; 32]),
                |(mut a1, mut s1), (a2, s2)| {
                    hash_step(&mut a1, &a2, false);
                    hash_step(&mut s1, &s2, false);
                    (a1, s1)
                },
            );
        self.shifted(sums)
    }

    /// The sums of the digests `changes` add and of those they take away (what the
    /// content holds now for each RRset they name).
    fn digest_sums<'a>(
        &self,
        changes: impl Iterator<Item = &'a RrsetChange>,
    ) -> ([u8; 32], [u8; 32]) {
        digest_sums(changes, |c| {
            self.content.get(&(Owner(c.owner.clone()), c.rtype))
        })
    }

    /// The content hash moved by sums that [`Self::digest_sums`] made.
    fn shifted(&self, (add, sub): ([u8; 32], [u8; 32])) -> [u8; 32] {
        let mut h = self.hash;
        hash_step(&mut h, &add, false);
        hash_step(&mut h, &sub, true);
        h
    }

    /// Applies `changes`, recording in `undo` what each replaced.
    fn apply_changes(
        &mut self,
        changes: Vec<RrsetChange>,
        undo: &mut Vec<((Owner, u16), Option<RrsetVal>)>,
    ) {
        for c in changes {
            let key = (Owner(c.owner.clone()), c.rtype);
            let old = self.content.remove(&key);
            if let Some(old) = &old {
                hash_step(&mut self.hash, &rrset_digest(&c.owner, c.rtype, old), true);
            }
            if let Some(new) = c.val {
                hash_step(
                    &mut self.hash,
                    &rrset_digest(&c.owner, c.rtype, &new),
                    false,
                );
                self.content.insert(key.clone(), new);
            }
            undo.push((key, old));
        }
    }

    /// Fills empty content with `staged` (in strictly increasing key order): the map is
    /// built bottom-up, its nodes full, where one insert after another leaves them about
    /// half full (~60 bytes more per RRset).
    ///
    /// Each part becomes a map of its own, and maps of like size are merged as a binary
    /// counter carries (`append` of disjoint, ordered maps builds a full tree while it frees
    /// the two it consumes). Collecting all parts into one vector first, as
    /// `BTreeMap::from_iter` needs, held the whole version a second time plus a sort's
    /// scratch space: ~300 MiB at 1M delegations, on every node at once.
    fn fill(&mut self, staged: Vec<Staged>) {
        type Map = BTreeMap<(Owner, u16), RrsetVal>;
        debug_assert!(self.content.is_empty());
        let mut stack: Vec<Map> = Vec::new();
        let mut last_owner: Option<Owner> = None;
        for part in staged {
            hash_step(&mut self.hash, &part.sum, false);
            let mut entries = Vec::with_capacity(part.changes.len());
            for c in part.changes {
                let Some(v) = c.val else { continue };
                // RRsets of one owner share its name (each arrived with its own copy).
                let owner = match &last_owner {
                    Some(o) if o.0 == c.owner => o.clone(),
                    _ => Owner(c.owner),
                };
                last_owner = Some(owner.clone());
                entries.push(((owner, c.rtype), v));
            }
            let mut map: Map = entries.into_iter().collect();
            while stack.last().is_some_and(|top| top.len() <= map.len()) {
                let mut earlier = stack.pop().expect("checked");
                earlier.append(&mut map);
                map = earlier;
            }
            stack.push(map);
        }
        let mut content = Map::new();
        while let Some(mut earlier) = stack.pop() {
            earlier.append(&mut content);
            content = earlier;
        }
        self.content = content;
    }

    /// Keeps what a version changed (before and after) in the journal, within its bounds.
    fn record_delta(
        &mut self,
        undo: Vec<((Owner, u16), Option<RrsetVal>)>,
        token: Token,
        serial: u32,
    ) {
        let Some(prev) = &self.current else {
            self.journal.clear();
            return;
        };
        if undo.len() > JOURNAL_MAX_RRSETS {
            self.journal.clear();
            return;
        }
        let mut before: BTreeMap<(Owner, u16), Option<RrsetVal>> = BTreeMap::new();
        for (key, old) in undo {
            before.entry(key).or_insert(old);
        }
        let changes = before
            .into_iter()
            .map(|(key, old)| {
                let new = self.content.get(&key).cloned();
                (key, old, new)
            })
            .collect();
        self.journal.push(Delta {
            from_serial: prev.serial,
            to_serial: serial,
            from_token: prev.token,
            token,
            changes,
        });
        let mut total: usize = self.journal.iter().map(|d| d.changes.len()).sum();
        while self.journal.len() > HISTORY_MAX || total > JOURNAL_MAX_RRSETS {
            total -= self.journal.remove(0).changes.len();
        }
    }

    fn undo(&mut self, undo: Vec<((Owner, u16), Option<RrsetVal>)>, hash: [u8; 32]) {
        for (key, old) in undo.into_iter().rev() {
            match old {
                Some(v) => {
                    self.content.insert(key, v);
                }
                None => {
                    self.content.remove(&key);
                }
            }
        }
        self.hash = hash;
    }
}

impl ClusterState {
    pub fn zone_keys(&self, zone: &str) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(move |k| k.zone == zone)
    }

    /// Applies one normal entry. `log_id` gives the fencing token of a publish.
    pub fn apply(&mut self, log_id: &LogId, cmd: Command) -> Outcome {
        self.apply_decoded(log_id, cmd, None)
    }

    /// [`Self::apply`], given the changes of a `Stage` entry already decoded (outside the
    /// state's lock: see `machine`); `None` decodes them here.
    pub fn apply_decoded(
        &mut self,
        log_id: &LogId,
        cmd: Command,
        decoded: Option<std::io::Result<Staged>>,
    ) -> Outcome {
        let token = Token::new(log_id.committed_leader_id().term, log_id.index());
        match cmd {
            Command::AddZone { zone, origin } => {
                let out = match self.zones.get(&zone.name) {
                    Some(z) if z.config.is_some() => {
                        Outcome::Refused(format!("zone {} already exists", zone.name))
                    }
                    None if self.keys.iter().any(|k| k.zone == zone.name) => {
                        Outcome::Refused(format!(
                            "zone {} was removed and its keys are kept retired: a security officer \
                         purges them first (keys purge {} --confirm {})",
                            zone.name, zone.name, zone.name
                        ))
                    }
                    _ => {
                        let name = zone.name.clone();
                        self.zones.insert(
                            name,
                            ZoneState {
                                config: Some(zone),
                                ..Default::default()
                            },
                        );
                        Outcome::Done
                    }
                };
                self.audit(token, origin, &out);
                out
            }
            Command::RemoveZone { name, origin } => {
                // The keys stay (retired with the zone) until a security officer purges
                // them: a removal by mistake is undone without a key roll.
                let out = if self.zones.remove(&name).is_some() {
                    Outcome::Done
                } else {
                    Outcome::Refused(format!("no zone {name}"))
                };
                self.audit(token, origin, &out);
                out
            }
            Command::SetZone { zone, origin } => {
                let out = match self.zones.get_mut(&zone.name) {
                    Some(z) if z.config.is_some() => {
                        // A new input is a reload: the next version is built from all of it.
                        if z.config.as_ref().is_some_and(|c| c.input != zone.input) {
                            z.reload_seq += 1;
                        }
                        z.config = Some(zone);
                        Outcome::Done
                    }
                    _ => Outcome::Refused(format!("no zone {}", zone.name)),
                };
                self.audit(token, origin, &out);
                out
            }
            Command::Reload { name, origin } => {
                let out = match self.zones.get_mut(&name) {
                    Some(z) => {
                        z.reload_seq += 1;
                        Outcome::Done
                    }
                    None => Outcome::Refused(format!("no zone {name}")),
                };
                self.audit(token, origin, &out);
                out
            }
            Command::AddKey { key } => {
                if !self.zones.contains_key(&key.zone) {
                    return Outcome::Refused(format!("no zone {}", key.zone));
                }
                if self.keys.iter().any(|k| k.id == key.id) {
                    return Outcome::Refused(format!("key {} exists", key.id));
                }
                let Some(role) = crate::kasp::Role::parse(&key.role) else {
                    return Outcome::Refused(format!("key {}: unknown role {}", key.id, key.role));
                };
                let z = self.zones.get_mut(&key.zone).expect("checked");
                if let Some(other) = z
                    .keyset
                    .keys
                    .values()
                    .find(|k| k.tag == key.tag && k.algorithm == key.algorithm)
                {
                    return Outcome::Refused(format!(
                        "key {}: tag {} collides with key {} of the zone",
                        key.id, key.tag, other.id
                    ));
                }
                z.keyset.keys.insert(
                    key.id,
                    crate::kasp::KeyState::new(key.id, key.tag, key.algorithm, role, key.created),
                );
                self.keys.push(key);
                Outcome::Done
            }
            Command::KeyEval { zone, now, facts } => {
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                let Some(policy) = z.config.as_ref().map(|c| c.synced_policy()) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                let (set, ev) = crate::kasp::evaluate(&z.keyset, &policy, &facts, now);
                z.keyset = set;
                if !ev.purged.is_empty() {
                    self.keys.retain(|k| !ev.purged.contains(&k.id));
                }
                Outcome::Done
            }
            Command::KeysShown { zone, seq, at } => {
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                if z.current.as_ref().is_none_or(|v| v.keyset_seq < seq) {
                    return Outcome::Refused(format!(
                        "{zone}: no published version shows key state {seq}"
                    ));
                }
                crate::kasp::engine::published(&mut z.keyset, seq, at);
                Outcome::Done
            }
            Command::KeyEvent {
                zone,
                event,
                origin,
            } => {
                let out = match self.zones.get_mut(&zone) {
                    None => Outcome::Refused(format!("no zone {zone}")),
                    Some(z) => match z.config.as_ref().map(|c| c.synced_policy()) {
                        None => Outcome::Refused(format!("no zone {zone}")),
                        Some(policy) => {
                            match crate::kasp::observe(&mut z.keyset, &policy, &event) {
                                Ok(_) => Outcome::Done,
                                Err(e) => Outcome::Refused(format!("zone {zone}: {e}")),
                            }
                        }
                    },
                };
                if let Some(origin) = origin {
                    self.audit(token, origin, &out);
                }
                out
            }
            Command::Stage {
                zone,
                upload,
                part,
                changes,
            } => {
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                // One version is under construction at a time: the first part of an upload
                // drops whatever an earlier (perhaps deposed) leader left half-staged.
                if part == 0 {
                    z.staged.clear();
                }
                let parts = z.staged.entry(upload).or_default();
                if parts.len() as u32 != part {
                    return Outcome::Refused(format!(
                        "upload {upload}: part {part} out of order (have {})",
                        parts.len()
                    ));
                }
                match decoded.unwrap_or_else(|| changes.decode().map(Staged::new)) {
                    Ok(changes) => parts.push(changes),
                    Err(e) => {
                        return Outcome::Refused(format!("upload {upload}: part {part}: {e}"));
                    }
                }
                Outcome::Done
            }
            Command::Publish {
                zone,
                upload,
                parts,
                base,
                mut version,
            } => {
                let published = self
                    .published_hash(&zone, version.serial)
                    .filter(|h| *h != version.hash);
                let Some(z) = self.zones.get_mut(&zone) else {
                    return Outcome::Refused(format!("no zone {zone}"));
                };
                let staged = z.staged.remove(&upload).unwrap_or_default();
                let current = z.current.as_ref().map(|v| v.hash);
                if current != base {
                    return Outcome::Refused(format!(
                        "zone {zone}: version built on {} but the current one is {}",
                        base.map_or("nothing".into(), |h| hex(&h[..8])),
                        current.map_or("nothing".into(), |h| hex(&h[..8]))
                    ));
                }
                if staged.len() as u32 != parts {
                    return Outcome::Refused(format!(
                        "zone {zone}: upload {upload} has {} of {parts} parts",
                        staged.len()
                    ));
                }
                if let Some(cur) = &z.current
                    && !crate::zone::serial::le(cur.serial, version.serial.wrapping_sub(1))
                {
                    return Outcome::Refused(format!(
                        "zone {zone}: serial {} does not follow {}",
                        version.serial, cur.serial
                    ));
                }
                if let Some(h) = published {
                    return Outcome::Refused(format!(
                        "zone {zone}: serial {} was published with content {}; it never carries \
                         another (the leader moves the serial forward)",
                        version.serial,
                        hex(&h[..8])
                    ));
                }
                let n_changes: usize = staged.iter().map(|p| p.changes.len()).sum();
                // What a version changed is kept for the validator's incremental check; a
                // version that changed more is validated in full, which an empty list says.
                let touched: Option<Vec<(Name, u16)>> =
                    (n_changes <= RECENT_TOUCHED_MAX).then(|| {
                        staged
                            .iter()
                            .flat_map(|p| &p.changes)
                            .map(|c| (c.owner.clone(), c.rtype))
                            .collect()
                    });
                let before = z.hash;
                // A first version (or a zone emptied) is built in one pass, with full B-tree
                // nodes and no undo list (`None`).
                let undo = if z.content.is_empty() && strictly_ordered(&staged) {
                    z.fill(staged);
                    let rss_mib = crate::runtime::mem::rss_for(n_changes);
                    tracing::info!(
                        zone,
                        rrsets = z.content.len(),
                        rss_mib,
                        "first version filled"
                    );
                    None
                } else {
                    let mut undo = Vec::with_capacity(n_changes);
                    for part in staged {
                        z.apply_changes(part.changes, &mut undo);
                    }
                    Some(undo)
                };
                if z.hash != version.hash {
                    let after = z.hash;
                    match undo {
                        Some(undo) => z.undo(undo, before),
                        None => {
                            z.content.clear();
                            z.hash = before;
                        }
                    }
                    return Outcome::Refused(format!(
                        "zone {zone}: content hash after applying is {}, the leader announced {}",
                        hex(&after[..8]),
                        hex(&version.hash[..8])
                    ));
                }
                match undo {
                    Some(undo) => z.record_delta(undo, token, version.serial),
                    None => z.journal.clear(),
                }
                match touched {
                    Some(touched) => {
                        z.recent.push_back((token.index, touched));
                        while z.recent.len() > RECENT_MAX {
                            z.recent.pop_front();
                        }
                    }
                    None => z.recent.clear(),
                }
                debug_assert_eq!(z.hash, version.hash);
                version.token = token;
                version.rrsets = z.content.len() as u64;
                z.history.push_back(version.clone());
                while z.history.len() > HISTORY_MAX {
                    z.history.pop_front();
                }
                z.current = Some(version.clone());
                let p = self.published.entry(zone.clone()).or_default();
                p.push_back((version.serial, version.hash));
                while p.len() > PUBLISHED_KEPT {
                    p.pop_front();
                }
                Outcome::Published {
                    serial: version.serial,
                    token,
                }
            }
            Command::Audit { origin } => {
                self.audit(token, origin, &Outcome::Done);
                Outcome::Done
            }
            Command::LeaderStart { node, term } => {
                self.last_leader = Some((node, term));
                self.handover = None;
                Outcome::Done
            }
            Command::Handover { from, to } => {
                self.handover = Some((from, to));
                Outcome::Done
            }
            Command::Fenced {
                target,
                ok,
                outcome,
                mut origin,
            } => {
                if ok {
                    self.fenced.insert(target, token.term);
                }
                origin.command = format!("{} — {}", origin.command, outcome);
                let out = if ok {
                    Outcome::Done
                } else {
                    Outcome::Refused(format!("fence of node {target} failed"))
                };
                self.audit(token, origin, &out);
                Outcome::Done
            }
            Command::Unfence { target, origin } => {
                let out = if self.fenced.remove(&target).is_some() {
                    Outcome::Done
                } else {
                    Outcome::Refused(format!("node {target} is not fenced"))
                };
                self.audit(token, origin, &out);
                out
            }
            Command::StoreSeen { stores } => {
                for (node, record) in stores {
                    self.stores.entry(node).or_default().update(record);
                }
                Outcome::Done
            }
            Command::PurgeKeys { zone, origin } => {
                let out = if self.zones.contains_key(&zone) {
                    Outcome::Refused(format!(
                        "zone {zone} is still signed: remove it first (zone remove)"
                    ))
                } else if !self.keys.iter().any(|k| k.zone == zone) {
                    Outcome::Refused(format!("no retired keys of zone {zone}"))
                } else {
                    self.keys.retain(|k| k.zone != zone);
                    Outcome::Done
                };
                self.audit(token, origin, &out);
                out
            }
        }
    }

    fn audit(&mut self, token: Token, origin: Origin, out: &Outcome) {
        self.audit.push_back(AuditRecord {
            term: token.term,
            index: token.index,
            origin,
            outcome: match out {
                Outcome::Refused(m) => format!("refused: {m}"),
                _ => "ok".into(),
            },
        });
        while self.audit.len() > AUDIT_MAX {
            self.audit.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Part;

    fn lid(index: u64) -> LogId {
        LogId::new(
            openraft::impls::leader_id_adv::LeaderId {
                term: 2,
                node_id: 1,
            },
            index,
        )
    }

    fn name(s: &str) -> Name {
        Name::parse(s.as_bytes(), None).unwrap()
    }

    fn change(owner: &str, data: u8) -> RrsetChange {
        RrsetChange {
            owner: name(owner),
            rtype: 1,
            val: Some(RrsetVal {
                ttl: 60,
                rdatas: crate::zone::Rdatas::one(&[192, 0, 2, data]),
                sigs: Vec::new(),
            }),
        }
    }

    fn origin() -> Origin {
        Origin {
            at: 0,
            by: "test".into(),
            command: "zone add".into(),
        }
    }

    /// A state holding the zone `example.` (file input), added at index 1.
    fn with_example_zone() -> ClusterState {
        let mut st = ClusterState::default();
        st.apply(
            &lid(1),
            Command::AddZone {
                zone: ZoneConfig::new("example", "file:/dev/null"),
                origin: origin(),
            },
        );
        st
    }

    /// Stages `changes` and publishes them as `serial`, announcing `hash` (or the true one).
    fn publish(
        st: &mut ClusterState,
        idx: &mut u64,
        changes: Vec<RrsetChange>,
        serial: u32,
        hash: Option<[u8; 32]>,
    ) -> Outcome {
        let z = &st.zones["example."];
        let base = z.current.as_ref().map(|v| v.hash);
        let hash = hash.unwrap_or_else(|| z.hash_after(changes.iter()));
        *idx += 1;
        let upload = *idx;
        st.apply(
            &lid(*idx),
            Command::Stage {
                zone: "example.".into(),
                upload,
                part: 0,
                changes: Part::encode(&changes),
            },
        );
        *idx += 1;
        let version = Version {
            serial,
            hash,
            ..Default::default()
        };
        st.apply(
            &lid(*idx),
            Command::Publish {
                zone: "example.".into(),
                upload,
                parts: 1,
                base,
                version,
            },
        )
    }

    /// A serial once published never carries another content, also after the zone was
    /// removed and added again; the same content under it is no conflict.
    #[test]
    fn a_published_serial_never_carries_another_content() {
        let mut st = with_example_zone();
        let mut idx = 1;
        let first = publish(&mut st, &mut idx, vec![change("a.example.", 1)], 7, None);
        assert!(
            matches!(first, Outcome::Published { serial: 7, .. }),
            "{first:?}"
        );
        let h7 = st.published_hash("example.", 7).unwrap();
        idx += 1;
        st.apply(
            &lid(idx),
            Command::RemoveZone {
                name: "example.".into(),
                origin: origin(),
            },
        );
        idx += 1;
        st.apply(
            &lid(idx),
            Command::AddZone {
                zone: ZoneConfig::new("example", "file:/dev/null"),
                origin: origin(),
            },
        );
        assert_eq!(st.last_published("example."), Some(7));
        let again = publish(&mut st, &mut idx, vec![change("b.example.", 2)], 7, None);
        let Outcome::Refused(why) = again else {
            panic!("serial 7 published with another content: {again:?}");
        };
        assert!(why.contains("serial 7 was published"), "{why}");
        assert!(st.zones["example."].current.is_none());
        let same = publish(&mut st, &mut idx, vec![change("a.example.", 1)], 7, None);
        assert!(matches!(same, Outcome::Published { .. }), "{same:?}");
        assert_eq!(st.published_hash("example.", 7), Some(h7));
    }

    /// A snapshot of the state's layout before `stores` and `published` still loads.
    #[test]
    fn a_state_of_the_layout_before_loads() {
        let mut st = with_example_zone();
        let mut idx = 1;
        publish(&mut st, &mut idx, vec![change("a.example.", 1)], 7, None);
        #[derive(Serialize)]
        struct Before<'a> {
            last_applied: &'a Option<LogId>,
            membership: &'a openraft::alias::StoredMembershipOf<TypeConfig>,
            zones: &'a BTreeMap<String, ZoneState>,
            keys: &'a Vec<KeyRecord>,
            audit: &'a VecDeque<AuditRecord>,
            last_leader: &'a Option<(NodeId, u64)>,
            handover: &'a Option<(NodeId, NodeId)>,
            fenced: &'a BTreeMap<NodeId, u64>,
        }
        let old = crate::replica::encode(&Before {
            last_applied: &st.last_applied,
            membership: &st.membership,
            zones: &st.zones,
            keys: &st.keys,
            audit: &st.audit,
            last_leader: &st.last_leader,
            handover: &st.handover,
            fenced: &st.fenced,
        });
        let back = ClusterState::decode(&old).unwrap();
        assert_eq!(back.last_applied, st.last_applied);
        assert_eq!(
            back.published_hash("example.", 7),
            st.published_hash("example.", 7)
        );
        let now = ClusterState::decode(&crate::replica::encode(&st)).unwrap();
        assert_eq!(now.published, st.published);
    }

    /// `zone set` with a new input counts as a reload (the next version is built from all
    /// of it); with the same input it does not.
    #[test]
    fn a_new_input_is_a_reload() {
        let mut st = ClusterState::default();
        let cfg = ZoneConfig::new("example", "file:/dev/null");
        st.apply(
            &lid(1),
            Command::AddZone {
                zone: cfg.clone(),
                origin: origin(),
            },
        );
        let seq = |st: &ClusterState| st.zones["example."].reload_seq;
        let mut same = cfg.clone();
        same.refresh_s += 1;
        let set = |zone| Command::SetZone {
            zone,
            origin: origin(),
        };
        assert_eq!(st.apply(&lid(2), set(same)), Outcome::Done);
        assert_eq!(seq(&st), 0, "same input: no reload");
        let mut moved = cfg.clone();
        moved.input = "primary:127.0.0.1:53".into();
        assert_eq!(st.apply(&lid(3), set(moved)), Outcome::Done);
        assert_eq!(seq(&st), 1, "new input: a reload");
        let mut gone = cfg;
        gone.name = "missing.".into();
        assert!(matches!(st.apply(&lid(4), set(gone)), Outcome::Refused(_)));
    }

    /// A version showing a key change does not start its waits; the leader's `KeysShown`
    /// does, and only for a state a published version shows.
    #[test]
    fn key_waits_start_at_keys_shown_not_at_publication() {
        let mut st = with_example_zone();
        let id = crate::keys::KeyId([3; 32]);
        let mut k = crate::kasp::KeyState::new(id, 3, 13, crate::kasp::Role::Zsk, 0);
        k.pending = [0, 5, 0, 0];
        k.changed = [0, 100, 0, 0];
        let z = st.zones.get_mut("example.").unwrap();
        z.keyset.keys.insert(id, k);
        let pending = |st: &ClusterState| {
            let k = &st.zones["example."].keyset.keys[&id];
            (k.pending[1], k.changed[1])
        };
        let shown = |st: &mut ClusterState, i: u64| {
            st.apply(
                &lid(i),
                Command::KeysShown {
                    zone: "example.".into(),
                    seq: 5,
                    at: 700,
                },
            )
        };
        // No version shows state 5 yet.
        assert!(matches!(shown(&mut st, 2), Outcome::Refused(_)));
        assert_eq!(pending(&st), (5, 100));
        // A version showing it is published: still pending.
        st.apply(
            &lid(3),
            Command::Stage {
                zone: "example.".into(),
                upload: 1,
                part: 0,
                changes: Part::encode(&[change("a.example.", 1)]),
            },
        );
        let hash = st.zones["example."].hash_after([change("a.example.", 1)].iter());
        let out = st.apply(
            &lid(4),
            Command::Publish {
                zone: "example.".into(),
                upload: 1,
                parts: 1,
                base: None,
                version: Version {
                    serial: 1,
                    hash,
                    keyset_seq: 5,
                    ..Default::default()
                },
            },
        );
        assert!(matches!(out, Outcome::Published { .. }), "{out:?}");
        assert_eq!(pending(&st), (5, 100));
        // The leader saw it committed: the wait starts then.
        assert_eq!(shown(&mut st, 5), Outcome::Done);
        assert_eq!(pending(&st), (0, 700));
    }

    #[test]
    fn journal_takes_the_content_back_to_an_earlier_version_and_feeds_ixfr() {
        use crate::replica::view::{View, overlay};
        let mut st = ClusterState::default();
        let mut idx = 1;
        st.apply(
            &lid(1),
            Command::AddZone {
                zone: ZoneConfig::new("example", "file:/dev/null"),
                origin: origin(),
            },
        );
        let gone = |o: &str| RrsetChange {
            owner: name(o),
            rtype: 1,
            val: None,
        };
        publish(
            &mut st,
            &mut idx,
            vec![change("a.example.", 1), change("b.example.", 2)],
            10,
            None,
        );
        let v1 = st.zones["example."].clone();
        publish(
            &mut st,
            &mut idx,
            vec![change("a.example.", 3), change("c.example.", 4)],
            11,
            None,
        );
        publish(
            &mut st,
            &mut idx,
            vec![gone("b.example."), change("d.example.", 5)],
            12,
            None,
        );
        let z = &st.zones["example."];
        assert_eq!(z.journal.len(), 2, "no delta for the first version");
        assert_eq!((z.journal[0].from_serial, z.journal[1].to_serial), (10, 12));
        // The served view of version 10, rebuilt from the content of version 12.
        let o = overlay(z, v1.current.as_ref().unwrap().token).expect("journal reaches back");
        let view = View {
            content: &z.content,
            overlay: Some(&o),
        };
        let back: Vec<_> = view.all().map(|(k, v)| (k.clone(), v.clone())).collect();
        let want: Vec<_> = v1
            .content
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(back, want);
        // IXFR from 11: only the last delta; from 10: both; from 9: none (AXFR instead).
        assert_eq!(z.deltas_from(|d| d.from_serial == 11).unwrap().len(), 1);
        assert_eq!(z.deltas_from(|d| d.from_serial == 10).unwrap().len(), 2);
        assert!(z.deltas_from(|d| d.from_serial == 9).is_none());
    }

    /// A first version fills the empty content in one pass: the same content and hash as
    /// applying its changes one by one (the path taken when they are not in order), owners
    /// shared between their RRsets, and a wrong hash leaves the zone empty.
    /// A stage part travels as the leader encoded it: through a log entry's encoding its
    /// bytes come back unchanged, and bytes that do not hold what the part announces are
    /// refused when it is applied, with the state unchanged.
    #[test]
    fn a_part_travels_as_encoded_and_a_bad_one_is_refused() {
        let changes = vec![change("a.example.", 1), change("b.example.", 2)];
        let part = Part::encode(&changes);
        let cmd = Command::Stage {
            zone: "example.".into(),
            upload: 5,
            part: 0,
            changes: part.clone(),
        };
        let back: Command = crate::replica::decode(&crate::replica::encode(&cmd)).unwrap();
        let Command::Stage { changes: got, .. } = back else {
            panic!("not a stage entry")
        };
        assert_eq!(got, part);
        assert_eq!(got.decode().unwrap(), changes);

        // Two changes announced, one encoded.
        let one = crate::replica::encode(&&changes[..1]);
        let mut bytes = crate::replica::encode(&(2u32, crate::replica::Run(&one)));
        let short: Part = crate::replica::decode(&bytes).unwrap();
        assert!(short.decode().is_err());
        // A byte cut off the end.
        bytes = crate::replica::encode(&part);
        let whole: Part = crate::replica::decode(&bytes).unwrap();
        let cut = Part {
            count: whole.count,
            bytes: whole.bytes[..whole.bytes.len() - 1].into(),
        };
        assert!(cut.decode().is_err());

        let mut st = with_example_zone();
        let out = st.apply(
            &lid(2),
            Command::Stage {
                zone: "example.".into(),
                upload: 5,
                part: 0,
                changes: short,
            },
        );
        assert!(
            matches!(&out, Outcome::Refused(m) if m.contains("part 0") && m.contains("announced")),
            "{out:?}"
        );
        assert_eq!(st.zones["example."].staged.get(&5).map_or(0, Vec::len), 0);
    }

    #[test]
    fn a_fill_from_many_parts_merges_them_into_the_same_content() {
        let names: Vec<String> = (0..37).map(|i| format!("n{i:03}.example.")).collect();
        let mut all: Vec<RrsetChange> = names.iter().map(|n| change(n, 1)).collect();
        all.sort_by(|a, b| a.owner.cmp_canonical(&b.owner));
        let mut parts = Vec::new();
        let mut rest = all.clone();
        for size in [1, 2, 3, 5, 8, 13, 1, 4] {
            let tail = rest.split_off(size.min(rest.len()));
            parts.push(Staged::new(std::mem::replace(&mut rest, tail)));
        }
        assert!(rest.is_empty() && strictly_ordered(&parts));
        // Each part in order, but two of them swapped: not in order as a whole.
        let mut swapped = parts.clone();
        swapped.swap(3, 4);
        assert!(swapped.iter().all(|p| p.ordered) && !strictly_ordered(&swapped));
        let mut filled = ZoneState::default();
        filled.fill(parts);
        let mut one_by_one = ZoneState::default();
        assert_eq!(
            one_by_one.hash_after_all(&all),
            one_by_one.hash_after(all.iter())
        );
        one_by_one.apply_changes(all, &mut Vec::new());
        assert_eq!(filled.content.len(), 37);
        assert_eq!(filled.content, one_by_one.content);
        assert_eq!(filled.hash, one_by_one.hash);
        // Over content that is there: what is removed and replaced counts too.
        let later: Vec<RrsetChange> = (0..37)
            .map(|i| {
                let mut c = change(&names[i], 2);
                if i % 3 == 0 {
                    c.val = None;
                }
                c
            })
            .collect();
        assert_eq!(
            filled.hash_after_all(&later),
            filled.hash_after(later.iter())
        );
        assert_ne!(filled.hash_after_all(&later), filled.hash);
    }

    #[test]
    fn a_first_version_fills_the_content_as_one_by_one_would() {
        let zone_with = |changes: Vec<RrsetChange>, hash: Option<[u8; 32]>| {
            let mut st = with_example_zone();
            let mut idx = 1;
            let out = publish(&mut st, &mut idx, changes, 10, hash);
            (out, st.zones["example."].clone())
        };
        let mut ns = change("a.example.", 1);
        ns.rtype = 2;
        let ordered = vec![
            change("a.example.", 1),
            ns.clone(),
            change("b.example.", 2),
            change("c.example.", 3),
        ];
        let strictly = |c: &[RrsetChange]| strictly_ordered(&[Staged::new(c.to_vec())]);
        assert!(strictly(&ordered));
        let mut shuffled = ordered.clone();
        shuffled.reverse();
        assert!(!strictly(&shuffled));

        let (out, filled) = zone_with(ordered, None);
        assert!(
            matches!(out, Outcome::Published { serial: 10, .. }),
            "{out:?}"
        );
        let (out, one_by_one) = zone_with(shuffled, None);
        assert!(
            matches!(out, Outcome::Published { serial: 10, .. }),
            "{out:?}"
        );
        assert_eq!(filled.content, one_by_one.content);
        assert_eq!(filled.hash, one_by_one.hash);
        assert_eq!(filled.content.len(), 4);
        let owners: Vec<&Owner> = filled.content.keys().map(|(o, _)| o).collect();
        assert!(
            std::ptr::eq(
                owners[0].0.as_wire().as_ptr(),
                owners[1].0.as_wire().as_ptr()
            ),
            "the A and NS RRsets of a.example. share one name"
        );

        let (out, refused) = zone_with(vec![change("a.example.", 1)], Some([7; 32]));
        assert!(
            matches!(&out, Outcome::Refused(m) if m.contains("content hash")),
            "{out:?}"
        );
        assert!(refused.content.is_empty() && refused.current.is_none());
        assert_eq!(refused.hash, ZoneState::default().hash);
    }

    #[test]
    fn publish_checks_base_hash_serial_and_parts_and_leaves_state_intact_when_refused() {
        let mut st = ClusterState::default();
        let mut idx = 1;
        st.apply(
            &lid(1),
            Command::AddZone {
                zone: ZoneConfig::new("example", "file:/dev/null"),
                origin: origin(),
            },
        );
        assert_eq!(
            publish(
                &mut st,
                &mut idx,
                vec![change("a.example.", 1), change("b.example.", 2)],
                10,
                None
            ),
            Outcome::Published {
                serial: 10,
                token: Token::new(2, 3)
            }
        );
        let good = st.zones["example."].clone();
        assert_eq!(good.content.len(), 2);

        // A hash the content does not have: refused, nothing changed.
        let out = publish(
            &mut st,
            &mut idx,
            vec![change("a.example.", 9)],
            11,
            Some([7; 32]),
        );
        assert!(
            matches!(&out, Outcome::Refused(m) if m.contains("content hash")),
            "{out:?}"
        );
        let z = &st.zones["example."];
        assert_eq!(
            (&z.content, z.hash, &z.current),
            (&good.content, good.hash, &good.current)
        );

        // A serial that does not move forward.
        let out = publish(&mut st, &mut idx, vec![change("a.example.", 9)], 10, None);
        assert!(
            matches!(&out, Outcome::Refused(m) if m.contains("does not follow")),
            "{out:?}"
        );

        // Built on a version that is no longer current (a deposed leader).
        idx += 1;
        st.apply(
            &lid(idx),
            Command::Stage {
                zone: "example.".into(),
                upload: 99,
                part: 0,
                changes: Part::encode(&[change("c.example.", 3)]),
            },
        );
        idx += 1;
        let stale = Version {
            serial: 12,
            hash: [1; 32],
            ..Default::default()
        };
        let out = st.apply(
            &lid(idx),
            Command::Publish {
                zone: "example.".into(),
                upload: 99,
                parts: 1,
                base: None,
                version: stale,
            },
        );
        assert!(
            matches!(&out, Outcome::Refused(m) if m.contains("built on")),
            "{out:?}"
        );

        // Parts out of order.
        idx += 1;
        let out = st.apply(
            &lid(idx),
            Command::Stage {
                zone: "example.".into(),
                upload: 100,
                part: 1,
                changes: Part::encode(&[]),
            },
        );
        assert!(
            matches!(&out, Outcome::Refused(m) if m.contains("out of order")),
            "{out:?}"
        );

        // A good one after all that, with a removal.
        let rm = RrsetChange {
            owner: name("b.example."),
            rtype: 1,
            val: None,
        };
        let out = publish(
            &mut st,
            &mut idx,
            vec![change("a.example.", 5), rm],
            13,
            None,
        );
        assert!(
            matches!(out, Outcome::Published { serial: 13, .. }),
            "{out:?}"
        );
        let z = &st.zones["example."];
        assert_eq!(z.content.len(), 1);
        let mut fresh = [0u8; 32];
        for ((o, t), v) in &z.content {
            hash_step(&mut fresh, &rrset_digest(&o.0, *t, v), false);
        }
        assert_eq!(fresh, z.hash, "incremental hash equals a fresh one");
        assert!(
            z.staged.is_empty(),
            "nothing left half-staged: {:?}",
            z.staged.keys()
        );
        assert_eq!(st.audit.len(), 1);
    }
}
