//! The replicated state: openraft types, the commands a leader proposes, and the state
//! machine every node applies them to.
//!
//! ```text
//!  leader: AddZone / AddKey ─┐
//!  leader: Stage × n ────────┼─► Raft log (sled, durable) ─► apply on every node
//!  leader: Publish ──────────┘        (majority commit)        └─► ClusterState
//! ```
//! A signed version travels as `Stage` chunks (bounded RRset changes) and becomes current
//! only with its `Publish`, which names the version it was built on: a deposed leader's
//! publish is refused because the base moved.

pub mod machine;
pub mod state;
pub mod view;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::codec::{decode, decode_counted, encode};
pub use state::{ClusterState, KeyRecord, RrsetChange, RrsetVal, Version, ZoneConfig};

pub type NodeId = u64;

/// Where a node listens: Raft RPC (mutual TLS) and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub raft: String,
    pub admin: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft {} admin {}", self.raft, self.admin)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Outcome,
        Node = NodeAddr,
        AsyncRuntime = crate::runtime::rt::Rt,
);

pub type Raft = openraft::Raft<TypeConfig, machine::StateMachine>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;

/// The fencing token of a version: the term and log index of the entry that made it
/// current. A later version has a greater token; file outputs and NOTIFYs carry it, so a
/// deposed leader's late write is refused. Encoded as the pair `(term, index)`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct Token {
    pub term: u64,
    pub index: u64,
}

impl Token {
    pub const fn new(term: u64, index: u64) -> Token {
        Token { term, index }
    }
}

impl From<(u64, u64)> for Token {
    fn from((term, index): (u64, u64)) -> Token {
        Token { term, index }
    }
}

impl From<Token> for (u64, u64) {
    fn from(t: Token) -> (u64, u64) {
        (t.term, t.index)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.term, self.index)
    }
}

/// What an operator asked for, kept in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub at: u64,
    pub by: String,
    pub command: String,
}

/// A node's Raft store as the cluster last saw it: what a store restored from an older copy
/// is recognised by (`node::restore`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    /// The store's identity, drawn when it was first opened (hex).
    pub store: String,
    /// The incarnation it ran as: a number drawn at each opening of the store.
    pub incarnation: u64,
    /// The highest log index the leader saw it acknowledge.
    pub acked: u64,
}

impl StoreRecord {
    /// Takes a later record of the same node: the acknowledged index of one incarnation
    /// only grows; another store or incarnation replaces it.
    pub fn update(&mut self, later: StoreRecord) {
        if self.store == later.store && self.incarnation == later.incarnation {
            self.acked = self.acked.max(later.acked);
        } else {
            *self = later;
        }
    }
}

/// The commands of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    AddZone {
        zone: ZoneConfig,
        origin: Origin,
    },
    RemoveZone {
        name: String,
        origin: Origin,
    },
    /// New input and publication options for an existing zone (its signing policy —
    /// denial, algorithm, CSK — stays).
    SetZone {
        zone: ZoneConfig,
        origin: Origin,
    },
    /// Asks the leader to re-read a zone's input now.
    Reload {
        name: String,
        origin: Origin,
    },
    /// A key that now exists for the cluster (made by the leader).
    AddKey {
        key: KeyRecord,
    },
    /// The key-lifecycle engine evaluated at `now` with these facts: every node applies
    /// the same evaluation (deterministic), so a standby continues the same roll.
    KeyEval {
        zone: String,
        now: u64,
        facts: crate::kasp::Facts,
    },
    /// An observation (DS seen or gone at the parent) or an operator's key decision;
    /// `origin` is set for operator commands (audit log).
    KeyEvent {
        zone: String,
        event: crate::kasp::Event,
        origin: Option<Origin>,
    },
    /// The leader saw the version showing key-lifecycle state `seq` committed: the waits
    /// of the record changes it shows start `at` (key clock), never earlier. (A version's
    /// entry can be committed long after it was proposed, by the next leader when the one
    /// that proposed it died, so the proposal's time would start them too soon.)
    KeysShown {
        zone: String,
        seq: u64,
        at: u64,
    },
    /// Part of a version under construction.
    Stage {
        zone: String,
        upload: u64,
        part: u32,
        changes: Part,
    },
    /// Makes a staged version current, if `base` is still the current version's hash.
    Publish {
        zone: String,
        upload: u64,
        parts: u32,
        base: Option<[u8; 32]>,
        version: Version,
    },
    /// An operator command recorded as such (leader transfer, node add/remove).
    Audit {
        origin: Origin,
    },
    /// A leader starts signing in `term` (after fencing its predecessor when needed).
    LeaderStart {
        node: NodeId,
        term: u64,
    },
    /// The leader is about to hand leadership to `to` cleanly (no fence needed).
    Handover {
        from: NodeId,
        to: NodeId,
    },
    /// The outcome of fencing `target` (by the hook, or confirmed by an operator).
    Fenced {
        target: NodeId,
        ok: bool,
        outcome: String,
        origin: Origin,
    },
    /// An operator lets a fenced node back.
    Unfence {
        target: NodeId,
        origin: Origin,
    },
    /// A security officer destroys the retired keys of a removed zone (`keys purge`).
    PurgeKeys {
        zone: String,
        origin: Origin,
    },
    /// The leader saw these members' stores so.
    StoreSeen {
        stores: Vec<(NodeId, StoreRecord)>,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::AddZone { zone, .. } => write!(f, "add zone {}", zone.name),
            Command::RemoveZone { name, .. } => write!(f, "remove zone {name}"),
            Command::SetZone { zone, .. } => write!(f, "set zone {}", zone.name),
            Command::Reload { name, .. } => write!(f, "reload zone {name}"),
            Command::AddKey { key } => write!(f, "add key {} of {}", key.tag, key.zone),
            Command::KeyEval { zone, now, .. } => write!(f, "key evaluation of {zone} at {now}"),
            Command::KeyEvent { zone, event, .. } => write!(f, "{zone}: {event}"),
            Command::KeysShown { zone, seq, at } => {
                write!(f, "{zone}: key state {seq} shown at {at}")
            }
            Command::Stage {
                zone,
                upload,
                part,
                changes,
            } => write!(
                f,
                "stage {zone} upload {upload} part {part} ({} changes)",
                changes.len()
            ),
            Command::Publish { zone, version, .. } => {
                write!(f, "publish {zone} serial {}", version.serial)
            }
            Command::Audit { origin } => write!(f, "audit {}", origin.command),
            Command::LeaderStart { node, term } => write!(f, "leader {node} starts term {term}"),
            Command::Handover { from, to } => write!(f, "handover {from} -> {to}"),
            Command::Fenced { target, ok, .. } => write!(f, "fenced {target}: {ok}"),
            Command::Unfence { target, .. } => write!(f, "unfence {target}"),
            Command::PurgeKeys { zone, .. } => write!(f, "purge the keys of {zone}"),
            Command::StoreSeen { stores } => {
                write!(f, "stores seen:")?;
                for (node, r) in stores {
                    write!(
                        f,
                        " node {node} {} incarnation {:x} acked {};",
                        r.store, r.incarnation, r.acked
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The RRset changes of one `Stage` entry, encoded once by the leader that made them.
///
/// The log, the cache of its newest entries and every append request copy these bytes
/// as they are; each node decodes them once, when it applies the entry. Carried as
/// records, a 1M-delegation version was encoded and decoded seven times on its way
/// (three encodings on the leader, a decoding and an encoding on each follower, and
/// its Arc-shared records cloned per reader): ~40% of the cluster's CPU while staging.
#[derive(Clone, PartialEq, Eq)]
pub struct Part {
    count: u32,
    bytes: std::sync::Arc<[u8]>,
}

impl Part {
    pub fn encode(changes: &[RrsetChange]) -> Part {
        Part {
            count: changes.len() as u32,
            bytes: encode(&changes).into(),
        }
    }

    /// How many changes the part holds.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The changes; an error when the bytes do not hold as many as announced.
    pub fn decode(&self) -> std::io::Result<Vec<RrsetChange>> {
        let (changes, used) = decode_counted::<Vec<RrsetChange>>(&self.bytes)?;
        if changes.len() != self.len() || used != self.bytes.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "part holds {} changes in {used} of its {} bytes; {} announced",
                    changes.len(),
                    self.bytes.len(),
                    self.len()
                ),
            ));
        }
        Ok(changes)
    }
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Part({} changes, {} bytes)",
            self.count,
            self.bytes.len()
        )
    }
}

/// Bytes written as one run (`serialize_bytes`), not element by element.
struct Run<'a>(&'a [u8]);

impl Serialize for Run<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for Part {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.count)?;
        t.serialize_element(&Run(&self.bytes))?;
        t.end()
    }
}

struct RunBuf(Vec<u8>);

impl<'de> Deserialize<'de> for RunBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RunBuf, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RunBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<RunBuf, E> {
                Ok(RunBuf(b.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<RunBuf, E> {
                Ok(RunBuf(b))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<RunBuf, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(RunBuf(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Part, D::Error> {
        let (count, RunBuf(bytes)) = <(u32, RunBuf)>::deserialize(d)?;
        Ok(Part {
            count,
            bytes: bytes.into(),
        })
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    #[default]
    Done,
    Published {
        serial: u32,
        token: Token,
    },
    Refused(String),
}
