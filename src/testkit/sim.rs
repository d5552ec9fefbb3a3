//! Deterministic simulation: three nodes — the real Raft, store, state machine, signing
//! loop, validation on apply and lease watch — in one process, on a simulated network and
//! a simulated clock.
//!
//! ```text
//!  seed ─┬─► network: every message delayed 1–10 ms, 2 % lost, links cut by the schedule
//!        ├─► openraft's election timeouts (runtime::rt seeds this thread's generator)
//!        └─► schedule, per round: the zone changes (reload through the leader), then one
//!            of: a node isolated 2–5 s | the leader's messages to the others dropped |
//!            a node crashed (Raft shut down, tasks aborted) and restarted from its data
//!            dir 1–3 s later | nothing but losses
//!  clock: tokio's paused time, advanced only when every task waits
//!  checks every 100 ms of simulated time and at each round's end:
//!     one leader per term; one hash per serial on every node; a node's serial never goes
//!     back; a fencing token never goes back with the serial; no validation alarm; after
//!     the fault heals, a new version validated on every node within 20 s
//! ```
//! Everything random comes from the seed, so a failing seed is run again with the same
//! schedule, messages and timeouts. (Two things stay outside the seed: ECDSA signatures
//! are randomised, and sled flushes on its own threads; neither changes which version a
//! node serves.)

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use openraft::alias::VoteOf;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::async_runtime::WatchReceiver;

use crate::config::NodeConfig;
use crate::follower as check;
use crate::leader;
use crate::node::{KeyResolver, Local, Node, raft_config, watch_lease};
use crate::replica::machine::{Snapshot, StateMachine};
use crate::replica::{Command, NodeAddr, NodeId, Origin, Raft, TypeConfig, ZoneConfig};
use crate::runtime::rt;
use crate::store::LogStore;

const ZONE: &str = "sim.test.";
const IDS: [NodeId; 3] = [1, 2, 3];
/// Longest simulated time from a healed fault to a new version validated everywhere.
const BOUND: Duration = Duration::from_secs(20);

/// What one simulated run did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    /// The schedule as it was applied, with simulated times (ms).
    pub events: Vec<String>,
    pub violations: Vec<String>,
    /// Distinct versions published (serials).
    pub versions: usize,
    /// Leaders elected (distinct terms with a leader).
    pub terms: usize,
    /// Checks made.
    pub checks: u64,
    pub sim_ms: u64,
}

/// Runs `rounds` rounds from `seed`, with the nodes' data under `dir`.
pub fn run(seed: u64, dir: &Path, rounds: u32) -> Outcome {
    rt::seed_thread(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async { simulate(seed, dir.to_path_buf(), rounds).await })
}

/// The simulated wall clock starts here (2026-01-01).
const START: u64 = 1_767_225_600;

/// SplitMix64, for the schedule and the network.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// The simulated network: who runs, which links are cut, and each link's own dice (so
/// that how sends to different nodes interleave does not change any message's fate).
struct Net {
    rafts: BTreeMap<NodeId, Raft>,
    /// The running nodes, for control requests (clock, status).
    nodes: BTreeMap<NodeId, std::sync::Weak<Node>>,
    cut: BTreeSet<(NodeId, NodeId)>,
    seed: u64,
    dice: BTreeMap<(NodeId, NodeId), Dice>,
    loss_pct: u64,
}

impl Net {
    fn dice(&mut self, from: NodeId, to: NodeId) -> &mut Dice {
        let seed = self.seed ^ (from << 40) ^ (to << 20);
        self.dice.entry((from, to)).or_insert(Dice(seed))
    }
}

type Shared = Arc<Mutex<Net>>;

fn lock(n: &Shared) -> std::sync::MutexGuard<'_, Net> {
    n.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
struct SimNetwork {
    me: NodeId,
    net: Shared,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: NodeId, _node: &NodeAddr) -> SimPeer {
        SimPeer {
            me: self.me,
            target,
            net: self.net.clone(),
        }
    }
}

struct SimPeer {
    me: NodeId,
    target: NodeId,
    net: Shared,
}

fn unreachable(why: &str) -> Unreachable<TypeConfig> {
    Unreachable::new(&io::Error::other(format!("simulated: {why}")))
}

impl SimPeer {
    /// One way across the network: the target's Raft if the message arrives.
    async fn cross(&self, from: NodeId, to: NodeId) -> Result<Raft, Unreachable<TypeConfig>> {
        let (delay, lost, cut, raft) = {
            let mut n = lock(&self.net);
            let loss = n.loss_pct;
            let d = n.dice(from, to);
            let delay = 1 + d.below(10);
            let lost = d.below(100) < loss;
            (
                delay,
                lost,
                n.cut.contains(&(from, to)),
                n.rafts.get(&to).cloned(),
            )
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        match raft {
            _ if cut => Err(unreachable("link cut")),
            _ if lost => Err(unreachable("message lost")),
            None => Err(unreachable("node down")),
            Some(r) => Ok(r),
        }
    }

    async fn there(&self) -> Result<Raft, Unreachable<TypeConfig>> {
        self.cross(self.me, self.target).await
    }

    async fn back(&self) -> Result<(), Unreachable<TypeConfig>> {
        self.cross(self.target, self.me).await.map(|_| ())
    }
}

/// Control requests across the simulated network, answered by the target node itself.
struct SimControl {
    me: NodeId,
    net: Shared,
}

#[async_trait::async_trait]
impl crate::node::Peers for SimControl {
    async fn ask(
        &self,
        to: NodeId,
        _addr: &NodeAddr,
        req: crate::transport::Control,
        _ttl: Duration,
    ) -> Result<crate::transport::ControlReply, crate::transport::ControlError> {
        use crate::transport::ControlError::{Failed, NotSent};
        let peer = SimPeer {
            me: self.me,
            target: to,
            net: self.net.clone(),
        };
        let why = |e: &dyn std::fmt::Display| e.to_string();
        peer.there()
            .await
            .map_err(|e| NotSent { to, why: why(&e) })?;
        let node = lock(&self.net).nodes.get(&to).and_then(|n| n.upgrade());
        let node = node.ok_or_else(|| Failed {
            to,
            why: "down".into(),
        })?;
        let r = crate::admin::answer_control(&node, self.me, req).await;
        peer.back().await.map_err(|e| Failed { to, why: why(&e) })?;
        Ok(r)
    }
}

fn remote<E: std::fmt::Display>(e: E) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(e.to_string()))
}

impl RaftNetworkV2<TypeConfig> for SimPeer {
    type SnapshotData = io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let r = self.there().await.map_err(RPCError::Unreachable)?;
        let res = r.append_entries(rpc).await.map_err(remote)?;
        self.back().await.map_err(RPCError::Unreachable)?;
        Ok(res)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let r = self.there().await.map_err(RPCError::Unreachable)?;
        let res = r.vote(rpc).await.map_err(remote)?;
        self.back().await.map_err(RPCError::Unreachable)?;
        Ok(res)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let r = self.there().await.map_err(StreamingError::Unreachable)?;
        let res = r
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::from_string(e.to_string())))?;
        self.back().await.map_err(StreamingError::Unreachable)?;
        Ok(res)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let r = self.there().await.map_err(RPCError::Unreachable)?;
        let res = r.handle_transfer_leader(req).await.map_err(remote)?;
        self.back().await.map_err(RPCError::Unreachable)?;
        Ok(res)
    }
}

/// A running node and the tasks it runs.
struct SimNode {
    node: Arc<Node>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The node's config: nothing listens (control goes over the simulated network), a short
/// election timeout, and a fast signing tick.
fn config(dir: &Path, id: NodeId) -> Result<NodeConfig, String> {
    let mut t = format!(
        "id = {id}\ndata_dir = \"n{id}\"\nraft_listen = \"127.0.0.1:9\"\n\
         keystore = \"embedded\"\npassphrase_file = \"pass\"\nlog_level = \"warn\"\n\
         [tls]\nca = \"unused.pem\"\ncert = \"unused.pem\"\nkey = \"unused.pem\"\n\
         [raft]\nheartbeat_ms = 100\nelection_min_ms = 600\nelection_max_ms = 1200\n\
         snapshot_every = 40\nkeep_logs = 8\n\
         [signer]\ntick_ms = 200\nreadiness_s = 5\n"
    );
    for p in IDS.iter().filter(|p| **p != id) {
        t.push_str(&format!("[[peers]]\nid = {p}\nraft = \"127.0.0.1:9\"\n"));
    }
    NodeConfig::from_text(&t, &dir.join(format!("node-{id}.toml")))
}

async fn start(dir: &Path, id: NodeId, net: &Shared) -> Result<SimNode, String> {
    let cfg = config(dir, id)?;
    // A crashed node's stores may take a moment to be released by sled's threads: that
    // wait is real time, not simulated time, so it changes nothing in the run.
    let mut tries = 0;
    let (log, sm) = loop {
        let opened = LogStore::open(&cfg.data_dir.join("raft"))
            .map_err(|e| e.to_string())
            .and_then(|l| {
                StateMachine::open(&cfg.data_dir.join("state"))
                    .map(|s| (l, s))
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok(x) => break x,
            Err(_) if tries < 250 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("node {id}: {e}")),
        }
    };
    let clock = crate::runtime::Clock::simulated(START);
    let keys = KeyResolver::new(&cfg, &clock)?;
    let network = SimNetwork {
        me: id,
        net: net.clone(),
    };
    let raft = Raft::new(id, Arc::new(raft_config(&cfg)?), network, log, sm.clone())
        .await
        .map_err(|e| format!("node {id}: raft: {e}"))?;
    lock(net).rafts.insert(id, raft.clone());
    let node = Arc::new(Node {
        id,
        clock,
        cfg,
        raft,
        sm,
        keys,
        local: Mutex::new(Local::default()),
        tsig: Vec::new(),
        contact: Default::default(),
        peers: Arc::new(SimControl {
            me: id,
            net: net.clone(),
        }),
        identity: Default::default(),
        log_store: None,
        adopted: Default::default(),
        hold: Default::default(),
    });
    lock(net).nodes.insert(id, Arc::downgrade(&node));
    let tasks = vec![
        tokio::spawn(leader::run(node.clone())),
        tokio::spawn(check::run(node.clone())),
        tokio::spawn(watch_lease(node.clone())),
    ];
    Ok(SimNode { node, tasks })
}

async fn stop(n: SimNode, net: &Shared) {
    lock(net).rafts.remove(&n.node.id);
    lock(net).nodes.remove(&n.node.id);
    for t in &n.tasks {
        t.abort();
    }
    for t in n.tasks {
        let _ = t.await;
    }
    let _ = n.node.raft.shutdown().await;
}

/// What the checks remember between looks: the shared invariant checkers (the chaos
/// harness's: V, S, K, F over what each node serves), and what only a simulation can see
/// (every node's Raft role, the tokens of every version).
#[derive(Default)]
struct Seen {
    checkers: super::checkers::Checkers,
    leader_of_term: BTreeMap<u64, NodeId>,
    hash_of_serial: BTreeMap<u32, [u8; 32]>,
    token_of_serial: BTreeMap<u32, crate::replica::Token>,
    serial_of_node: BTreeMap<NodeId, u32>,
    checks: u64,
}

impl Seen {
    /// One look at every running node.
    fn look(&mut self, nodes: &BTreeMap<NodeId, SimNode>, at: u64, out: &mut Outcome) {
        let reported = self.checkers.violations.len();
        for (id, n) in nodes {
            self.checks += 1;
            let (state, term) = {
                let m = n.node.raft.metrics();
                let m = m.borrow_watched();
                (m.state, m.current_term)
            };
            if state == ServerState::Leader {
                match self.leader_of_term.insert(term, *id) {
                    Some(other) if other != *id => out.violations.push(format!(
                        "{at} ms: two leaders in term {term}: {other} and {id}"
                    )),
                    _ => {}
                }
            }
            let (good, alarm) = {
                let l = n.node.local();
                (l.last_good.get(ZONE).cloned(), l.alarms.get(ZONE).cloned())
            };
            if let Some(a) = &alarm {
                out.violations
                    .push(format!("{at} ms: node {id}: validation alarm: {a}"));
            }
            let Some(v) = good else { continue };
            self.hash_of_serial.insert(v.serial, v.hash);
            self.serial_of_node.insert(*id, v.serial);
            // (Seen through the journal when the content moved on: its keys are not read.)
            if let Some(dnskeys) = served_dnskeys(&n.node, &v) {
                let observation = super::checkers::Observation {
                    at_ms: at,
                    node: *id,
                    zone: ZONE.into(),
                    serial: v.serial,
                    hash: crate::replica::state::hex(&v.hash),
                    dnskeys,
                    min_expiration: v.min_expiration,
                    valid: Some(alarm.is_none()),
                };
                self.checkers.observe(&observation, n.node.now() as u32, 0);
            }
            match self.token_of_serial.insert(v.serial, v.token) {
                Some(t) if t != v.token => out.violations.push(format!(
                    "{at} ms: serial {} published under two tokens {t} and {}",
                    v.serial, v.token
                )),
                _ => {}
            }
        }
        for v in &self.checkers.violations[reported..] {
            out.violations
                .push(format!("{at} ms: {}: {}", v.invariant, v.what));
        }
        // Tokens grow with serials.
        let mut last: Option<(u32, crate::replica::Token)> = None;
        for (s, t) in &self.token_of_serial {
            if let Some((ps, pt)) = last
                && pt >= *t
            {
                out.violations.push(format!(
                    "{at} ms: serial {s} has token {t}, not above serial {ps}'s {pt}"
                ));
            }
            last = Some((*s, *t));
        }
    }
}

/// The DNSKEY RRset of version `v` as node `n` holds it (sorted rdatas), when the content
/// is that version.
fn served_dnskeys(n: &Node, v: &crate::replica::Version) -> Option<Vec<Vec<u8>>> {
    let origin = crate::zone::Name::parse(ZONE.as_bytes(), None).expect("zone name");
    n.sm.with(|st| {
        let z = st.zones.get(ZONE)?;
        (z.current.as_ref()?.token == v.token).then_some(())?;
        let set = z.content.get(&(
            crate::replica::state::Owner(origin),
            crate::zone::rtype::DNSKEY,
        ))?;
        let mut keys: Vec<Vec<u8>> = set.rdatas.iter().map(|d| d.to_vec()).collect();
        keys.sort();
        Some(keys)
    })
}

fn leader_of(nodes: &BTreeMap<NodeId, SimNode>) -> Option<Arc<Node>> {
    nodes
        .values()
        .map(|n| n.node.clone())
        .find(|n| n.is_leader())
}

/// Proposes `cmd` through whichever node leads, for at most 10 s of simulated time.
async fn propose(nodes: &BTreeMap<NodeId, SimNode>, cmd: Command) -> bool {
    for _ in 0..100 {
        if let Some(l) = leader_of(nodes)
            && l.raft.client_write(cmd.clone()).await.is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn simulate(seed: u64, dir: PathBuf, rounds: u32) -> Outcome {
    let mut out = Outcome {
        seed,
        ..Default::default()
    };
    let t0 = tokio::time::Instant::now();
    let ms = || t0.elapsed().as_millis() as u64;
    let _ = std::fs::create_dir_all(&dir);
    let zone_file = dir.join("sim.zone");
    let mut text = String::from(
        "$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.53\n",
    );
    // (The nodes talk through the simulated network: no TLS files are read.)
    if let Err(e) = std::fs::write(dir.join("pass"), format!("sim-{seed}-passphrase"))
        .and_then(|_| std::fs::write(dir.join("unused.pem"), ""))
        .and_then(|_| std::fs::write(&zone_file, &text))
    {
        out.violations.push(format!("setup: {e}"));
        return out;
    }
    let net: Shared = Arc::new(Mutex::new(Net {
        rafts: BTreeMap::new(),
        nodes: BTreeMap::new(),
        cut: BTreeSet::new(),
        seed: seed ^ 0x5eed_5eed_5eed_5eed,
        dice: BTreeMap::new(),
        loss_pct: 2,
    }));
    let mut nodes: BTreeMap<NodeId, SimNode> = BTreeMap::new();
    for id in IDS {
        match start(&dir, id, &net).await {
            Ok(n) => {
                nodes.insert(id, n);
            }
            Err(e) => {
                out.violations.push(format!("setup: {e}"));
                return out;
            }
        }
    }
    let members: BTreeMap<NodeId, NodeAddr> = nodes[&1].node.cfg.members();
    for n in nodes.values() {
        let _ = n.node.raft.initialize(members.clone()).await;
    }
    let clock = crate::runtime::Clock::simulated(START);
    let origin = |command: String| Origin {
        at: clock.now(),
        by: "simulation".into(),
        command,
    };
    let add = Command::AddZone {
        zone: ZoneConfig::new(ZONE, &format!("file:{}", zone_file.display())),
        origin: origin(format!("zone add {ZONE}")),
    };
    if !propose(&nodes, add).await {
        out.violations
            .push("no leader took the zone within 10 s".into());
        return out;
    }
    let mut seen = Seen::default();
    let mut dice = Dice(seed.rotate_left(17) ^ 0xd1ce);
    for round in 0..rounds {
        // Workload: one RRset changed, then a reload.
        let before = seen.serial_of_node.values().copied().max().unwrap_or(0);
        text.push_str(&format!("r{round} TXT \"round {round}\"\n"));
        if let Err(e) = std::fs::write(&zone_file, &text) {
            out.violations.push(format!("zone file: {e}"));
            break;
        }
        let reload = Command::Reload {
            name: ZONE.into(),
            origin: origin(format!("zone reload {ZONE}")),
        };
        if !propose(&nodes, reload).await {
            out.violations.push(format!(
                "{} ms: round {round}: no leader took the reload within 10 s",
                ms()
            ));
        }
        // Nemesis.
        let leader = leader_of(&nodes).map(|n| n.id);
        let victim = IDS[dice.below(3) as usize];
        let hold = Duration::from_millis(1000 + dice.below(4000));
        let mut crashed = None;
        let what = match dice.below(4) {
            0 => {
                let mut n = lock(&net);
                for o in IDS.iter().filter(|o| **o != victim) {
                    n.cut.insert((victim, *o));
                    n.cut.insert((*o, victim));
                }
                format!("node {victim} isolated for {hold:?}")
            }
            1 => match leader {
                Some(l) => {
                    let mut n = lock(&net);
                    for o in IDS.iter().filter(|o| **o != l) {
                        n.cut.insert((l, *o));
                    }
                    format!("leader {l}'s messages to the others dropped for {hold:?}")
                }
                None => "no leader to cut off".into(),
            },
            2 => {
                if let Some(n) = nodes.remove(&victim) {
                    stop(n, &net).await;
                    crashed = Some(victim);
                }
                format!("node {victim} crashed, restarted after {hold:?}")
            }
            _ => "message losses only".into(),
        };
        out.events
            .push(format!("{} ms: round {round}: {what}", ms()));
        let end = tokio::time::Instant::now() + hold;
        while tokio::time::Instant::now() < end {
            seen.look(&nodes, ms(), &mut out);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        lock(&net).cut.clear();
        if let Some(id) = crashed {
            match start(&dir, id, &net).await {
                Ok(n) => {
                    nodes.insert(id, n);
                }
                Err(e) => out.violations.push(format!("restart: {e}")),
            }
        }
        // Healed: a newer version, validated on every node, within the bound.
        let healed = tokio::time::Instant::now();
        let mut served = false;
        while healed.elapsed() < BOUND {
            seen.look(&nodes, ms(), &mut out);
            let serials: Vec<Option<u32>> = nodes
                .values()
                .map(|n| n.node.local().last_good.get(ZONE).map(|v| v.serial))
                .collect();
            if serials.iter().all(|s| s.is_some_and(|s| s > before))
                && serials.windows(2).all(|w| w[0] == w[1])
            {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !served {
            out.violations.push(format!(
                "{} ms: round {round}: no new version on every node within {BOUND:?} of healing",
                ms()
            ));
        }
        if out.violations.len() > 20 {
            break;
        }
    }
    out.versions = seen.hash_of_serial.len();
    out.terms = seen.leader_of_term.len();
    out.checks = seen.checks + seen.checkers.checks.values().sum::<u64>();
    out.sim_ms = ms();
    for (_, n) in std::mem::take(&mut nodes) {
        stop(n, &net).await;
    }
    out
}
