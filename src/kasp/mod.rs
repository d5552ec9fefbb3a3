//! Key lifecycle: policy-driven rollovers as a pure function of (key states, policy,
//! observed facts, now).
//!
//! ```text
//!  leader, every loop:  evaluate(set, policy, facts, now) ── changes? ──► propose KeyEval{now, facts}
//!                                                                          │ (Raft)
//!  every node, apply:   evaluate(set, policy, facts, now) ◄────────────────┘  same answer everywhere
//!  leader:              actions ─► generate keys (AddKey), submit/retract DS, purge
//!  operator / checker:  observe(DsSeen{ttl} | DsGone | BackupCommit | Rollover | ClockOk) ─► Raft
//!  Publish of a version built from keyset `seq` ─► published(at): waits start from there
//! ```
//!
//! Each key has four records — DS, DNSKEY (DK), RRSIG over the DNSKEY RRset (KR) and
//! RRSIGs over zone data (RS) — each hidden, rumoured, omnipresent or unretentive (the
//! model of "Flexible and Robust Key Rollover in DNSSEC", see shared/KASP.md). The signer
//! publishes a DNSKEY iff DK ∈ {R, O}, signs the DNSKEY RRset with it iff KR ∈ {R, O}, and
//! zone data iff RS ∈ {R, O}.
//!
//! Waits on the parent's DS use max(configured DS TTL, every DS TTL the parent was seen
//! serving): the .nz incident of 2023 (shared/seeds/004) came from trusting the
//! configuration alone.

pub mod engine;
pub mod parent;
pub mod policy;
pub mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use engine::{evaluate, observe};
pub use policy::Policy;

use crate::keys::KeyId;

/// The state of one record of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum St {
    /// Hidden: not published, in no cache.
    H,
    /// Rumoured: published, not yet in every cache.
    R,
    /// Omnipresent: every validator sees it.
    O,
    /// Unretentive: withdrawn, possibly still cached.
    U,
    /// Not applicable (DS and KR of a ZSK, RS of a KSK).
    NA,
}

impl St {
    pub fn shown(self) -> bool {
        matches!(self, St::R | St::O)
    }
}

impl fmt::Display for St {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            St::H => "hidden",
            St::R => "rumoured",
            St::O => "omnipresent",
            St::U => "unretentive",
            St::NA => "-",
        })
    }
}

/// Record indices.
pub const DS: usize = 0;
pub const DK: usize = 1;
pub const KR: usize = 2;
pub const RS: usize = 3;
pub const RECORDS: [&str; 4] = ["DS", "DNSKEY", "RRSIG(DNSKEY)", "RRSIG(data)"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Ksk,
    Zsk,
    Csk,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Ksk => "ksk",
            Role::Zsk => "zsk",
            Role::Csk => "csk",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "ksk" => Some(Role::Ksk),
            "zsk" => Some(Role::Zsk),
            "csk" => Some(Role::Csk),
            _ => None,
        }
    }

    /// Does the key have record `r` at all?
    pub fn has(self, r: usize) -> bool {
        match self {
            Role::Ksk => r != RS,
            Role::Zsk => r == DK || r == RS,
            Role::Csk => true,
        }
    }

    /// Carries the SEP bit and a DS at the parent.
    pub fn is_ksk(self) -> bool {
        self != Role::Zsk
    }

    pub fn signs_data(self) -> bool {
        self != Role::Ksk
    }
}

/// Where a key is headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Goal {
    /// Generated ahead, waiting to be used (records stay hidden).
    Pool,
    /// Being introduced or in use: records go to omnipresent.
    Active,
    /// Being retired: records go to hidden, then the key is purged.
    Retire,
}

/// What the parent was last seen doing with a key's DS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parent {
    Unknown,
    Seen { at: u64, ttl: u32 },
    Gone { at: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    pub id: KeyId,
    pub tag: u16,
    pub algorithm: u8,
    pub role: Role,
    pub goal: Goal,
    pub rec: [St; 4],
    /// When each record last changed state (for R and U: when the first version showing
    /// the change was published).
    pub changed: [u64; 4],
    /// Per record, the key-set `seq` of a change not yet in a published version (0: none):
    /// its wait has not started.
    pub pending: [u64; 4],
    pub created: u64,
    /// When the key became the active one of its role (its lifetime counts from here).
    pub active_since: Option<u64>,
    pub backed_up: bool,
    pub parent: Parent,
    /// When all records became hidden (for the purge delay).
    pub hidden_since: Option<u64>,
}

impl KeyState {
    pub fn new(id: KeyId, tag: u16, algorithm: u8, role: Role, created: u64) -> KeyState {
        let mut rec = [St::H; 4];
        for (r, s) in rec.iter_mut().enumerate() {
            if !role.has(r) {
                *s = St::NA;
            }
        }
        KeyState {
            id,
            tag,
            algorithm,
            role,
            goal: Goal::Pool,
            rec,
            changed: [created; 4],
            pending: [0; 4],
            created,
            active_since: None,
            backed_up: false,
            parent: Parent::Unknown,
            hidden_since: None,
        }
    }

    /// What the signer does with this key.
    pub fn usage(&self) -> KeyUse {
        KeyUse {
            publish: self.rec[DK].shown(),
            sign_dnskey: self.rec[KR].shown(),
            sign_data: self.rec[RS].shown(),
        }
    }

    pub fn all_hidden(&self) -> bool {
        self.rec.iter().all(|s| matches!(s, St::H | St::NA))
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {} tag {} alg {}",
            self.role.name(),
            self.id,
            self.tag,
            self.algorithm
        )
    }
}

/// What the signer does with one key in a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyUse {
    pub publish: bool,
    pub sign_dnskey: bool,
    pub sign_data: bool,
}

/// A TTL that was in force until `until` (so caches may hold it until `until + ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlWas {
    pub until: u64,
    pub kind: TtlKind,
    pub ttl: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TtlKind {
    Dnskey,
    Sig,
    Ds,
    Negative,
}

/// The key-lifecycle state of one zone: replicated, changed only by [`evaluate`] and
/// [`observe`] (both deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// By id; serialized as a list (JSON maps need string keys).
    #[serde(with = "as_list")]
    pub keys: BTreeMap<KeyId, KeyState>,
    /// Predecessor → successor links per record: (record, predecessor, successor).
    pub links: BTreeSet<(u8, KeyId, KeyId)>,
    /// Bumped on every change of a record state; a version records the `seq` it was
    /// built from, and its publication starts the waits of pending records.
    pub seq: u64,
    /// Highest DS TTL the parent was ever seen serving.
    pub ds_ttl_observed: u32,
    /// TTLs in force when the engine last evaluated, and older ones still cached.
    pub ttls: Option<Ttls>,
    pub ttl_history: Vec<TtlWas>,
    pub last_eval: u64,
    /// Set when the clock jumped forward past the policy's limit: waits are held until an
    /// operator confirms the clock (`keys clock-ok`).
    pub clock_hold: Option<String>,
    /// Rolls an operator asked for.
    pub roll_requested: BTreeSet<Role>,
    /// Warnings and reasons the engine is waiting, from the last evaluation.
    pub notes: Vec<String>,
}

/// TTLs that decide how long caches hold the records of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ttls {
    pub dnskey: u32,
    /// max(min(SOA TTL, SOA MINIMUM), max zone TTL, denial TTL).
    pub sig: u32,
    /// Configured parent DS TTL.
    pub ds: u32,
    /// min(SOA TTL, SOA MINIMUM): how long a "no DNSKEY" answer may be cached.
    pub negative: u32,
}

/// What the zone looks like now, measured by the leader from its current version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub max_zone_ttl: u32,
    pub soa_ttl: u32,
    pub soa_minimum: u32,
}

/// Something the leader must do outside the state machine. Actions are declarative: the
/// same action is emitted again on every evaluation until it is no longer needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Make a key of this role and algorithm (for the pool).
    Generate { role: Role, algorithm: u8 },
    /// The parent should publish this key's DS (and CDS/CDNSKEY show it).
    SubmitDs { key: KeyId, tag: u16 },
    /// The parent should withdraw this key's DS.
    RetractDs { key: KeyId, tag: u16 },
}

/// One record's change in an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub key: KeyId,
    pub tag: u16,
    pub record: usize,
    pub from: St,
    pub to: St,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} {} {} → {}",
            self.tag, RECORDS[self.record], self.from, self.to
        )
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eval {
    pub transitions: Vec<Transition>,
    /// Keys whose goal changed (rolls started), in order.
    pub goals: Vec<(KeyId, Goal)>,
    pub purged: Vec<KeyId>,
    pub actions: Vec<Action>,
    /// Earliest time a blocked transition could fire.
    pub next: Option<u64>,
    pub notes: Vec<String>,
    /// The new state differs from the old in more than the evaluation time and notes
    /// (records, goals, purges, TTLs in force, a clock hold): worth committing.
    pub changed: bool,
}

impl Eval {
    /// Whether committing this evaluation changes the replicated state.
    pub fn changes_state(&self) -> bool {
        self.changed
    }
}

/// An observed fact or operator decision, committed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The parent serves this key's DS (every server agreed), with this TTL.
    DsSeen { key: KeyId, ttl: u32, at: u64 },
    /// No server of the parent serves this key's DS any more.
    DsGone { key: KeyId, at: u64 },
    /// These keys are in the backup.
    BackupCommit { keys: Vec<KeyId>, at: u64 },
    /// Start a roll of this role now (manual mode, or early).
    Rollover { role: Role },
    /// The operator confirms the clock after a jump.
    ClockOk,
    /// A parent server was seen serving a DS TTL (raises the effective DS TTL).
    DsTtlSeen { ttl: u32 },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::DsSeen { key, ttl, .. } => write!(f, "DS of key {key} seen (TTL {ttl})"),
            Event::DsGone { key, .. } => write!(f, "DS of key {key} gone"),
            Event::BackupCommit { keys, .. } => write!(f, "backup of {} keys", keys.len()),
            Event::Rollover { role } => write!(f, "{} rollover requested", role.name()),
            Event::ClockOk => f.write_str("clock confirmed"),
            Event::DsTtlSeen { ttl } => write!(f, "parent DS TTL {ttl} seen"),
        }
    }
}

mod as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::KeyState;
    use crate::keys::KeyId;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<KeyId, KeyState>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<&KeyState> = m.values().collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<KeyId, KeyState>, D::Error> {
        let v: Vec<KeyState> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|k| (k.id, k)).collect())
    }
}
