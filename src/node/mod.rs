//! A signer node: Raft over the sled store, the mutual-TLS transport, the admin API, the
//! leader's signing loop and every node's checks.
//!
//! ```text
//!  node run ─► open store + state machine ─► Raft ─┬─► transport::serve (raft_listen)
//!                                                   ├─► admin::server (socket, admin_listen)
//!                                                   ├─► leader::run   (signs only while leader)
//!                                                   └─► follower::run (validate on apply, readiness)
//! ```

pub mod restore;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::Instant as _;
use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use serde::Serialize;

use crate::config::NodeConfig;
use crate::hsm::sealed::Sealer;
use crate::hsm::{Keystore, SigningKey};
use crate::keys::{Algorithm, DnsKey, KeyId};
use crate::replica::machine::StateMachine;
use crate::replica::{KeyRecord, NodeId, Raft, Version};
use crate::store::LogStore;
use crate::transport;
use crate::zone::Name;

/// What one node knows about itself and does not replicate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Local {
    /// Zone → the last version this node validated and would serve.
    pub last_good: BTreeMap<String, Version>,
    /// Zone → why the newest committed version failed validation here.
    pub alarms: BTreeMap<String, String>,
    pub readiness: Readiness,
    /// Zone → what the last signing run on this node did (leader only).
    pub last_run: BTreeMap<String, RunReport>,
    /// Zone → (current token, served token, overlay): the way back to the served version.
    #[serde(skip)]
    pub overlays: BTreeMap<
        String,
        (
            crate::replica::Token,
            crate::replica::Token,
            Arc<crate::replica::view::Overlay>,
        ),
    >,
    /// Why this leader does not sign or NOTIFY now (no quorum acknowledgement within the
    /// lease), while that lasts.
    pub self_fenced: Option<String>,
    /// The term in which this node, as leader, lost its quorum: in that term it never signs
    /// again (it hands leadership on when the quorum answers).
    pub fenced_term: Option<u64>,
    /// Why this new leader does not sign yet (its predecessor's fence failed).
    pub fence_block: Option<String>,
    /// Zones whose primary sent a NOTIFY that the leader has not acted on yet.
    pub notified: std::collections::BTreeSet<String>,
    /// Zone → what the key-lifecycle engine last said (waits, warnings, alarms) and the
    /// parent actions it wants (leader only).
    pub keys_notes: BTreeMap<String, Vec<String>>,
    /// Why this node's clock is not trusted for signing (it disagrees with the other
    /// voters'), while that lasts.
    pub clock_alarm: Option<String>,
    /// The leader's last clock comparison: when (monotonic, and this node's wall clock
    /// then), and its outcome.
    #[serde(skip)]
    pub clock_checked: Option<(tokio::time::Instant, u64, Result<(), String>)>,
    /// The last instant this node knew it held the cluster's newest committed state: a
    /// quorum acknowledged it as leader, or it had applied the commit index of an append
    /// a leader got it to accept. `None` until then after a start.
    #[serde(skip)]
    pub current_at: Option<tokio::time::Instant>,
    /// Zone → since when a newer committed version than the one served (`last_good`) is
    /// known here (validation running, or failed).
    #[serde(skip)]
    pub behind: BTreeMap<String, tokio::time::Instant>,
    /// Zone → why this node does not answer for it now (see [`Node::stale`]).
    pub stale: BTreeMap<String, String>,
    /// Zone -> the (serial, content hash) this node served last, kept in `DATA/served`
    /// across restarts ([`served`]).
    #[serde(skip)]
    pub served: BTreeMap<String, (u32, [u8; 32])>,
    /// Zone -> why this node does not answer for it at all: the cluster now holds another
    /// content under a serial this node served.
    pub conflicts: BTreeMap<String, String>,
}

/// Small records a node keeps in its data dir across restarts: what it served (`served`:
/// a serial this node answered with must never come back with another content) and what
/// the other members announced of their stores (`announced`, see [`restore`]).
pub mod kept {
    use std::path::Path;

    /// The record in `path`, or an empty one when there is none (or it does not decode).
    pub fn load<T: serde::de::DeserializeOwned + Default>(path: &Path) -> T {
        std::fs::read(path)
            .ok()
            .and_then(|b| crate::replica::decode(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the record (temp file, fsync, rename).
    pub fn save<T: serde::Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
        let mut f = crate::zone::write::AtomicFile::create(path)?;
        f.write_all(&crate::replica::encode(v))?;
        f.commit()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The fence hook: its program (checked executable), or why it is not usable.
    pub fence: String,
    pub checked_at: u64,
    pub keys_tested: usize,
    pub problems: Vec<String>,
    /// The problems with keys this node cannot sign with (also in `problems`): a leader
    /// with one hands leadership over.
    #[serde(skip)]
    pub key_problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub at: u64,
    pub serial: u32,
    pub ms: u64,
    pub signed: u64,
    pub reused: u64,
    pub changes: u64,
    pub error: Option<String>,
}

/// Private keys of the cluster, as this node can reach them.
pub struct KeyResolver {
    /// Off: every key is unreachable (an HSM outage; `drill hsm-loss` turns it off).
    pub available: std::sync::atomic::AtomicBool,
    sealer: Option<Sealer>,
    store: Option<Box<dyn Keystore>>,
    cache: Mutex<HashMap<KeyId, Arc<dyn SigningKey>>>,
    /// Chaos runs: the switch that makes every key misbehave (`fault_control`).
    fault: Option<Arc<crate::hsm::fault::Control>>,
    /// What key creation times are read from.
    clock: crate::runtime::Clock,
}

impl KeyResolver {
    pub fn new(cfg: &NodeConfig, clock: &crate::runtime::Clock) -> Result<KeyResolver, String> {
        let sealer = match &cfg.passphrase_file {
            Some(p) => Some(Sealer::from_file(p).map_err(|e| e.to_string())?),
            None => None,
        };
        let store = if cfg.keystore.starts_with("pkcs11:") {
            // Several nodes (or a restarting HSM client) may open a shared token at once;
            // give it a few attempts before giving up.
            let mut tries = 0;
            loop {
                match crate::hsm::open(&cfg.keystore) {
                    Ok(s) => break Some(s),
                    Err(e) if tries < 10 => {
                        tries += 1;
                        tracing::warn!("keystore: {e}; retrying");
                        std::thread::sleep(std::time::Duration::from_millis(300));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        } else {
            None
        };
        if let Some(p) = &cfg.fault_control {
            tracing::warn!(file = %p.display(), "fault injection enabled (chaos runs only)");
        }
        Ok(KeyResolver {
            fault: cfg.fault_control.clone().map(|p| {
                let clock = clock.clone();
                let hooks = crate::hsm::fault::Hooks {
                    clock: Box::new(move |s| clock.set_offset(s)),
                    fsync_errors: Box::new(crate::store::inject_fsync_errors),
                    drop_control: Box::new(crate::transport::drop_control),
                };
                crate::hsm::fault::Control::follow(p, hooks)
            }),
            clock: clock.clone(),
            available: std::sync::atomic::AtomicBool::new(true),
            sealer,
            store,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn describe(&self) -> String {
        match &self.store {
            Some(s) => s.describe(),
            None if self.sealer.is_none() => "none (witness)".into(),
            None => "embedded (sealed in the replicated state)".into(),
        }
    }

    /// The signing key of a committed key record.
    pub fn resolve(&self, rec: &KeyRecord) -> Result<Arc<dyn SigningKey>, String> {
        if !self.available.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("keystore unavailable (taken away by a drill)".into());
        }
        if let Some(k) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&rec.id)
        {
            return Ok(self.faulty(k.clone()));
        }
        let dnskey = DnsKey::from_rdata(&rec.dnskey)
            .ok_or_else(|| format!("key {}: bad DNSKEY rdata", rec.tag))?;
        let key = match (&rec.sealed, &self.sealer, &self.store) {
            (Some(sealed), Some(s), _) => s
                .open(dnskey, sealed, &rec.handle)
                .map_err(|e| e.to_string())?,
            (Some(_), None, _) => {
                return Err(format!(
                    "key {} of {} is sealed in the cluster state but this node has no passphrase_file",
                    rec.tag, rec.zone
                ));
            }
            (None, _, Some(store)) => {
                let zone = Name::parse(rec.zone.as_bytes(), None).map_err(|e| e.to_string())?;
                store
                    .load(&zone)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|k| k.dnskey().id() == rec.id)
                    .ok_or_else(|| {
                        format!(
                            "key {} of {} ({}) is not in keystore {}",
                            rec.tag,
                            rec.zone,
                            rec.handle,
                            store.describe()
                        )
                    })?
            }
            (None, _, None) => {
                return Err(format!(
                    "key {} of {} lives in {} but this node has no PKCS#11 keystore",
                    rec.tag, rec.zone, rec.handle
                ));
            }
        };
        if key.dnskey().id() != rec.id {
            return Err(format!(
                "key {} of {}: private key does not match its record",
                rec.tag, rec.zone
            ));
        }
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.id, key.clone());
        Ok(self.faulty(key))
    }

    fn faulty(&self, k: Arc<dyn SigningKey>) -> Arc<dyn SigningKey> {
        match &self.fault {
            Some(c) => c.wrap(k),
            None => k,
        }
    }

    /// Makes a new key for `zone` (leader only); it exists for the cluster once committed.
    pub fn generate(&self, zone: &str, alg: u8, role: &str) -> Result<KeyRecord, String> {
        let algorithm = Algorithm::from_number(alg).map_err(|e| e.to_string())?;
        let ksk = role != "zsk";
        if self
            .fault
            .as_ref()
            .is_some_and(|c| c.mode() == crate::hsm::fault::Mode::Error)
        {
            return Err("keystore: device error (injected)".into());
        }
        let name = Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
        let (key, sealed, handle) = match &self.store {
            Some(store) => {
                let k = store
                    .generate(&name, algorithm, ksk)
                    .map_err(|e| e.to_string())?;
                let h = k.handle().to_string();
                (k, None, h)
            }
            None => {
                let sealer = self
                    .sealer
                    .as_ref()
                    .ok_or("no passphrase_file for the embedded keystore")?;
                let (k, sealed) = sealer
                    .generate(algorithm, ksk, "embedded")
                    .map_err(|e| e.to_string())?;
                (k, Some(sealed), "embedded".to_string())
            }
        };
        let d = key.dnskey();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d.id(), key.clone());
        Ok(KeyRecord {
            zone: zone.into(),
            id: d.id(),
            role: role.into(),
            algorithm: alg,
            tag: d.key_tag(),
            dnskey: d.rdata(),
            state: "pool".into(),
            created: self.clock.now(),
            handle,
            sealed,
        })
    }
}

/// Why this node may not publish (sign, NOTIFY, write file outputs) now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("not the leader")]
    NotLeader,
    /// The quorum stopped acknowledging within the lease: the leader fences itself.
    #[error("self-fenced: no quorum acknowledgement for {ms} ms (lease {lease_ms} ms)")]
    QuorumSilent { ms: u64, lease_ms: u64 },
    /// Right after an election, before the first acknowledgement.
    #[error("self-fenced: not yet acknowledged by a quorum")]
    NotYetAcknowledged,
}

/// A running node.
pub struct Node {
    pub id: NodeId,
    /// This node's wall clock.
    pub clock: crate::runtime::Clock,
    pub cfg: NodeConfig,
    pub raft: Raft,
    pub sm: StateMachine,
    pub keys: KeyResolver,
    pub local: Mutex<Local>,
    /// TSIG keys of `[[tsig]]`.
    pub tsig: Vec<crate::dns::tsig::TsigKey>,
    /// The last append a leader got this node to accept.
    pub contact: transport::Contact,
    /// How this node reaches the others for control (clock, status, init, forwarded admin
    /// requests): the mutual-TLS transport, or the simulation's network.
    pub peers: Arc<dyn Peers>,
    /// This node's Raft store: its identity and this incarnation ([`restore`]).
    pub identity: crate::store::StoreIdentity,
    pub log_store: Option<LogStore>,
    /// The cluster has recorded this store for this node.
    pub adopted: std::sync::atomic::AtomicBool,
    /// Why this node grants no vote and acknowledges nothing now ([`restore`]).
    pub hold: transport::Hold,
}

/// The DNS server's view of this node.
impl crate::serve::Source for Node {
    fn state(&self) -> &StateMachine {
        &self.sm
    }

    fn tsig(&self) -> &[crate::dns::tsig::TsigKey] {
        &self.tsig
    }

    /// The version of `zone` this node serves: its token, and the overlay back to it from
    /// the content when the newest version is not validated here (yet). None: no validated
    /// version, or this node is not known to be current ([`Node::stale`]).
    fn served(
        &self,
        zone: &str,
        z: &crate::replica::state::ZoneState,
    ) -> Option<crate::serve::Served> {
        let cur = z.current.as_ref()?;
        // One lock, no copy of the version: this runs for every query.
        let mut l = self.local();
        if self.stale(&mut l, zone, z).is_some() {
            return None;
        }
        let (good_serial, good_token) = l.last_good.get(zone).map(|g| (g.serial, g.token))?;
        if good_token == cur.token {
            return Some((cur.serial, cur.token, None));
        }
        if let Some((c, g, o)) = l.overlays.get(zone)
            && *c == cur.token
            && *g == good_token
        {
            return Some((good_serial, good_token, Some(o.clone())));
        }
        drop(l);
        let o = Arc::new(crate::replica::view::overlay(z, good_token)?);
        self.local()
            .overlays
            .insert(zone.to_string(), (cur.token, good_token, o.clone()));
        Some((good_serial, good_token, Some(o)))
    }

    fn transfers_stopped(&self) -> bool {
        self.cfg
            .dns
            .as_ref()
            .is_some_and(|d| d.stop_transfers_when_fenced)
            && self.local().self_fenced.is_some()
    }

    fn notified(&self, zone: String) {
        self.local().notified.insert(zone);
    }
}

/// Node-to-node control requests ([`transport::Control`]).
#[async_trait::async_trait]
pub trait Peers: Send + Sync {
    async fn ask(
        &self,
        to: NodeId,
        addr: &crate::replica::NodeAddr,
        req: transport::Control,
        ttl: Duration,
    ) -> Result<transport::ControlReply, transport::ControlError>;
}

/// [`Peers`] over the mutual-TLS transport.
pub struct TlsPeers {
    pub me: NodeId,
    pub tls: Arc<rustls::ClientConfig>,
}

#[async_trait::async_trait]
impl Peers for TlsPeers {
    async fn ask(
        &self,
        to: NodeId,
        addr: &crate::replica::NodeAddr,
        req: transport::Control,
        ttl: Duration,
    ) -> Result<transport::ControlReply, transport::ControlError> {
        transport::control(&self.tls, self.me, to, &addr.raft, req, ttl).await
    }
}

impl Node {
    /// Unix seconds now on this node's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Now on the key-lifecycle clock (real time unless a drill or test speeds it up).
    pub fn kasp_now(&self) -> u64 {
        let t = self.now();
        let (scale, epoch) = (self.cfg.signer.kasp_time_scale, self.cfg.signer.kasp_epoch);
        if scale <= 1 || t < epoch {
            return t;
        }
        epoch.saturating_add((t - epoch).saturating_mul(scale))
    }

    /// Why this node must not answer for `zone` now, if it must not: the version it would
    /// serve may have been superseded longer ago than the zone's propagation delay (on the
    /// key clock) allows. The key-lifecycle engine counts on no server answering with a
    /// superseded version for longer than that (a node frozen, cut off or restarted would
    /// otherwise hand validators a DNSKEY RRset or signatures the cluster has moved past);
    /// like an expired secondary, such a node answers SERVFAIL until a leader has brought
    /// it up to date. A node knows nothing about its currency after a start until then.
    pub fn stale(
        &self,
        l: &mut Local,
        zone: &str,
        z: &crate::replica::state::ZoneState,
    ) -> Option<String> {
        if let Some(c) = l.conflicts.get(zone) {
            return Some(c.clone());
        }
        let cfg = z.config.as_ref()?;
        // Never below four heartbeats: a follower learns it is current only that often.
        let limit = Duration::from_millis(
            ((cfg.policy.propagation_delay as u64).saturating_mul(1000)
                / self.cfg.signer.kasp_time_scale.max(1))
            .max(4 * self.cfg.raft.heartbeat_ms),
        );
        let now = tokio::time::Instant::now();
        let mut since = l.current_at;
        if let (Some(cur), Some(g)) = (&z.current, l.last_good.get(zone))
            && cur.token != g.token
        {
            // (A lookup first: this runs for every query, and the name is copied only once.)
            let b = match l.behind.get(zone) {
                Some(b) => *b,
                None => *l.behind.entry(zone.to_string()).or_insert(now),
            };
            since = since.map(|s| s.min(b));
        }
        match since {
            Some(s) if now.duration_since(s) <= limit => None,
            Some(s) => Some(format!(
                "not known to be current for {} ms (the zone's propagation delay allows {} ms)",
                now.duration_since(s).as_millis(),
                limit.as_millis()
            )),
            None => Some("not known to be current since this node started".into()),
        }
    }

    pub fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// May this node sign and publish now? Only as leader, and only while a quorum has
    /// acknowledged it within the lease (the election timeout minimum): a leader cut off
    /// from the majority stops signing and NOTIFY before another node can be elected
    /// (self-fencing). Resumes by itself when acknowledgements come back, or as follower.
    pub fn may_publish(&self) -> Result<(), Unfit> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
            return Err(Unfit::NotLeader);
        }
        let lease = Duration::from_millis(self.cfg.raft.election_min_ms);
        let voters = m.membership_config.membership().voter_ids().count();
        match &m.last_quorum_acked {
            _ if voters <= 1 => Ok(()),
            Some(at) if at.elapsed() < lease => Ok(()),
            Some(at) => Err(Unfit::QuorumSilent {
                ms: at.elapsed().as_millis() as u64,
                lease_ms: lease.as_millis() as u64,
            }),
            None => Err(Unfit::NotYetAcknowledged),
        }
    }

    /// Sends a control request to member (or configured peer) `to`.
    pub async fn ask(
        &self,
        to: NodeId,
        req: transport::Control,
        ttl: Duration,
    ) -> Result<transport::ControlReply, transport::ControlError> {
        let addr = self
            .address_of(to)
            .ok_or_else(|| transport::ControlError::NotSent {
                to,
                why: "not a member".into(),
            })?;
        self.peers.ask(to, &addr, req, ttl).await
    }

    /// Sends `req` to each of `to` at once; the answers in the same order.
    pub async fn ask_each(
        &self,
        to: &[NodeId],
        req: transport::Control,
        ttl: Duration,
    ) -> Vec<(
        NodeId,
        Result<transport::ControlReply, transport::ControlError>,
    )> {
        let asks = to.iter().map(|id| {
            let req = req.clone();
            async move { (*id, self.ask(*id, req, ttl).await) }
        });
        futures::future::join_all(asks).await
    }

    /// The voters of the membership Raft has now.
    pub fn voters(&self) -> Vec<NodeId> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// The address of member `id` (or, before the cluster is initialised, of a peer of
    /// this node's config).
    pub fn address_of(&self, id: NodeId) -> Option<crate::replica::NodeAddr> {
        let m = self.raft.metrics().borrow_watched().clone();
        m.membership_config
            .membership()
            .nodes()
            .find(|(n, _)| **n == id)
            .map(|(_, a)| a.clone())
            .or_else(|| self.cfg.members().get(&id).cloned())
    }

    /// Is `id` allowed to open an RPC connection: a configured peer or a member.
    pub fn admits(&self, id: NodeId) -> bool {
        if id == self.id || self.cfg.peers.iter().any(|p| p.id == id) {
            return true;
        }
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .nodes()
            .any(|(n, _)| *n == id)
    }
}

/// The Raft settings of a node (`[raft]` and fixed choices).
pub fn raft_config(cfg: &NodeConfig) -> Result<openraft::Config, String> {
    let r = &cfg.raft;
    openraft::Config {
        cluster_name: "quorumsign".into(),
        heartbeat_interval: r.heartbeat_ms,
        election_timeout_min: r.election_min_ms,
        election_timeout_max: r.election_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_every),
        max_in_snapshot_log_to_keep: r.keep_logs,
        install_snapshot_timeout: 120_000,
        // One append request is bounded in bytes by the log store (`store::SEND_BYTES`; a
        // version travels as entries of about 2 MiB), and in count here.
        max_payload_entries: 64,
        // A member restarted with a wiped data dir is refilled from the leader (snapshot or
        // log) instead of being left behind; it grants no vote meanwhile (`transport::Blank`).
        allow_log_reversion: Some(true),
        // A restarted leader earns leadership again in an election rather than resuming it
        // from its stored vote: a store restored from an older copy must not lead with its
        // older log (`restore`).
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("raft config: {e}"))
}

/// Logs (and shows in status) when this leader self-fences and when it may publish again.
pub(crate) async fn watch_lease(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(node.cfg.raft.heartbeat_ms.max(20)));
    loop {
        tick.tick().await;
        let now_fenced = if node.is_leader() {
            node.may_publish().err()
        } else {
            None
        };
        let was = node.local().self_fenced.clone();
        // Lost the quorum it had (not merely "not acknowledged yet" after an election): this
        // node resumes only as a follower, so the term is remembered.
        // (Beyond the longest election timeout, so a busy moment that only delays
        // acknowledgements past the lease pauses signing but does not give leadership away.)
        let lost = now_fenced.is_some() && {
            use openraft::type_config::async_runtime::WatchReceiver;
            let m = node.raft.metrics();
            let m = m.borrow_watched();
            m.last_quorum_acked.as_ref().is_some_and(|at| {
                at.elapsed() >= Duration::from_millis(node.cfg.raft.election_max_ms)
            })
        };
        match (&was, &now_fenced) {
            // (Right after an election "not yet acknowledged" is normal: not logged.)
            (None, Some(e @ Unfit::QuorumSilent { .. })) => {
                tracing::warn!("{e}; signing and NOTIFY stop")
            }
            (Some(_), None) if node.is_leader() => {
                tracing::info!("quorum acknowledgements are back")
            }
            _ => {}
        }
        let mut l = node.local();
        if lost
            && l.fenced_term
                .is_none_or(|t| t < node.raft.metrics().borrow_watched().current_term)
        {
            tracing::warn!(
                "quorum lost for longer than the election timeout: this node resumes only as a follower"
            );
        }
        // Having followed another leader is the rejoining that lifts it.
        {
            let m = node.raft.metrics();
            let m = m.borrow_watched();
            if m.current_leader.is_some_and(|x| x != node.id) {
                l.fenced_term = None;
            }
        }
        if lost {
            use openraft::type_config::async_runtime::WatchReceiver;
            l.fenced_term = Some(node.raft.metrics().borrow_watched().current_term);
        }
        l.self_fenced = now_fenced.map(|e| e.to_string());
        drop(l);
        track_currency(&node);
    }
}

/// Moves `Local::current_at` forward, and logs each zone this node stops or resumes
/// answering for (`Node::stale`).
fn track_currency(node: &Node) {
    use openraft::type_config::async_runtime::WatchReceiver;
    let now = tokio::time::Instant::now();
    let at = {
        let m = node.raft.metrics();
        let m = m.borrow_watched();
        if m.state == ServerState::Leader && m.current_leader == Some(node.id) {
            if m.membership_config.membership().voter_ids().count() <= 1 {
                Some(now)
            } else {
                m.last_quorum_acked
                    .as_ref()
                    .and_then(|a| now.checked_sub(a.elapsed()))
            }
        } else {
            let c = *node.contact.lock().unwrap_or_else(|e| e.into_inner());
            c.filter(|(_, commit)| m.last_applied >= *commit)
                .map(|(t, _)| t)
        }
    };
    // The state machine's lock before `local`, as everywhere else.
    node.sm.with(|st| {
        let mut l = node.local();
        if let Some(at) = at
            && l.current_at.is_none_or(|c| c < at)
        {
            l.current_at = Some(at);
        }
        let zones: Vec<(String, Option<String>)> = st
            .zones
            .iter()
            .filter(|(_, z)| z.current.is_some())
            .map(|(n, z)| (n.clone(), node.stale(&mut l, n, z)))
            .collect();
        log_staleness(&mut l, zones);
    });
}

fn log_staleness(l: &mut Local, zones: Vec<(String, Option<String>)>) {
    for (zone, why) in zones {
        match (l.stale.contains_key(&zone), why) {
            (false, Some(why)) => {
                tracing::warn!(zone, "no longer answering for the zone: {why}");
                l.stale.insert(zone, why);
            }
            (true, Some(why)) => {
                l.stale.insert(zone, why);
            }
            (true, None) => {
                tracing::info!(zone, "answering for the zone again: up to date");
                l.stale.remove(&zone);
            }
            (false, None) => {}
        }
    }
}
