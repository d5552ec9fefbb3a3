//! The leader: a pure decision engine ([`engine`]) and the effects it asks for. Every tick
//! the loop gathers the facts and carries out the node's duty (stand by, hand over, start a
//! term, lead); leading, it runs each zone in a task of its own, a bounded number at once.
//!
//! ```text
//!  each zone's run (zone.rs):
//!   keys  ── key-lifecycle engine (kasp): generate what it asks for (AddKey, exists once
//!            committed), commit its evaluation (KeyEval) when records move
//!            (sign with: DNSKEY iff DK ∈ {R,O}, DNSKEY RRset iff KR ∈ {R,O}, data iff RS ∈ {R,O})
//!   due?  ── new input digest | zone reload | keys changed | a signature inside the refresh
//!            window | no version yet
//!   sign  ── parse input, next serial, signature cache from the replicated content,
//!            sign_zone (reuses every cached signature that is not due), publish gate
//!   diff  ── RRset changes against the current version, content hash after them
//!   propose Stage × n (bounded) then Publish{base = current hash}
//! ```
//! Only committed keys sign; a node that loses leadership mid-run gets its Publish refused
//! by Raft (not committed) or by the state machine (base moved).
//!
//! | file | what |
//! |---|---|
//! | `engine.rs` | the decisions, pure: duty, a zone's phase, whether a version is due, scheduling |
//! | `mod.rs` | the loop: facts in, the duty carried out, zone runs started and collected |
//! | `zone.rs` | one zone's run and what it remembers between runs |
//! | `duty.rs` | the clock comparison, hand-over, fencing the predecessor |
//! | `input.rs` | reading a changed file, asking a hidden primary, the standby's index |
//! | `build.rs`, `quick.rs` | the build paths: the whole zone, or only what changed |
//! | `propose.rs` | a version cut into bounded `Stage` entries, then `Publish` |
//! | `keys.rs` | the KASP step, parent checks |
//! | `publish.rs` | after a publish: file output and NOTIFY, fenced by the version's token |

mod build;
mod duty;
pub mod engine;
mod input;
mod keys;
mod propose;
pub mod publish;
mod quick;
mod zone;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::duty::{clock_agrees, ensure_fenced, hand_over};
use self::engine::{Duty, Facts, HandOver};
use self::input::standby_index;
use self::propose::propose;
use self::zone::{Memo, step};
use crate::node::{Node, RunReport};
use crate::replica::Command;

/// The leader's loop, on every node: each tick it gathers the facts, asks the engine what
/// this node owes the cluster ([`engine::duty`]) and carries it out. While it leads, each
/// zone runs in a task of its own ([`engine::schedule`]): a slow zone (a primary that
/// trickles a transfer, a large zone signed whole) holds up no other.
pub async fn run(node: Arc<Node>) {
    let mut zones = Zones::default();
    let mut started: Option<u64> = None;
    let mut fence_try: Option<(Instant, String)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(node.cfg.signer.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        zones.collect(&node).await;
        let mut facts = facts(&node, started);
        let mut duty = engine::duty(&facts);
        if duty == Duty::CheckClock {
            facts.clock = Some(clock_agrees(&node).await);
            duty = engine::duty(&facts);
        }
        if let Some(Ok(())) = facts.clock
            && node.local().clock_alarm.take().is_some()
        {
            tracing::info!("clock agrees with the other voters again");
        }
        match duty {
            Duty::Standby => {
                started = None;
                fence_try = None;
                zones.standby(&node);
            }
            Duty::Idle => {
                started = None;
                fence_try = None;
                zones.memo.clear();
            }
            Duty::Wait | Duty::CheckClock => {}
            Duty::HandOver(why) => {
                if let HandOver::Clock(alarm) = &why {
                    if node.local().clock_alarm.as_deref() != Some(alarm.as_str()) {
                        tracing::error!("ALARM: {alarm}; not signing, handing leadership over");
                    }
                    node.local().clock_alarm = Some(alarm.clone());
                }
                if let Err(e) = hand_over(&node, &why.to_string()).await {
                    tracing::warn!("leader cannot sign ({why}); hand-over: {e}");
                }
            }
            Duty::Start(term) => {
                if start(&node, term, &mut fence_try).await {
                    started = Some(term);
                }
            }
            Duty::Lead => zones.lead(&node),
        }
    }
}

/// The facts of this tick, the clock comparison not yet made.
fn facts(node: &Node, started: Option<u64>) -> Facts {
    use openraft::type_config::async_runtime::WatchReceiver;
    let l = node.local();
    Facts {
        leader: node.is_leader(),
        witness: node.cfg.witness,
        key_unusable: l.readiness.key_problems.first().cloned(),
        may_publish: node.may_publish().is_ok(),
        clock: None,
        term: node.raft.metrics().borrow_watched().current_term,
        fenced_term: l.fenced_term,
        started,
    }
}

/// A new term: fences the predecessor when it did not hand over, then commits
/// `LeaderStart`. Whether the term started.
async fn start(node: &Arc<Node>, term: u64, fence_try: &mut Option<(Instant, String)>) -> bool {
    let began = Instant::now();
    if let Err(e) = ensure_fenced(node, term, fence_try).await {
        node.local().fence_block = Some(e);
        return false;
    }
    let cmd = Command::LeaderStart {
        node: node.id,
        term,
    };
    if propose(node, cmd).await.is_err() {
        return false;
    }
    node.local().fence_block = None;
    tracing::info!(
        term,
        ms = began.elapsed().as_millis() as u64,
        "leading: predecessor fenced, LeaderStart committed"
    );
    true
}

/// A zone's run in its own task; it hands its memo back when it ends.
type ZoneRun = tokio::task::JoinHandle<(Memo, Result<(), String>)>;

/// The zones as the loop keeps them: what each remembers between runs, and the runs going on.
#[derive(Default)]
struct Zones {
    memo: HashMap<String, Memo>,
    running: HashMap<String, ZoneRun>,
}

impl Zones {
    /// Takes back the memo of every run that ended, and reports its outcome.
    async fn collect(&mut self, node: &Node) {
        let done: Vec<String> = self
            .running
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(z, _)| z.clone())
            .collect();
        for zone in done {
            let Some(handle) = self.running.remove(&zone) else {
                continue;
            };
            let (memo, result) = match handle.await {
                Ok(x) => x,
                Err(e) => (Memo::default(), Err(format!("the zone's run ended: {e}"))),
            };
            self.memo.insert(zone.clone(), memo);
            if let Err(e) = result {
                tracing::warn!(zone, "signing: {e}");
                node.local().last_run.insert(
                    zone,
                    RunReport {
                        at: node.now(),
                        error: Some(e),
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// A standby keeps only the index of the file the current version was built from, and
    /// keeps it up to date: as leader it reads a changed file around its change at once
    /// instead of comparing the whole of it (~11 s at 1M). (A run still going on from its
    /// time as leader keeps its memo until it ends.)
    fn standby(&mut self, node: &Arc<Node>) {
        let zones: Vec<String> = node.sm.with(|st| st.zones.keys().cloned().collect());
        self.memo.retain(|z, _| zones.contains(z));
        for zone in zones.iter().filter(|z| !self.running.contains_key(*z)) {
            let m = self.memo.entry(zone.clone()).or_default();
            *m = m.standby();
            standby_index(node, zone, m);
        }
    }

    /// Starts a run of every zone the engine schedules.
    fn lead(&mut self, node: &Arc<Node>) {
        let zones: Vec<String> = node.sm.with(|st| st.zones.keys().cloned().collect());
        self.memo.retain(|z, _| zones.contains(z));
        let running: HashSet<String> = self.running.keys().cloned().collect();
        let limit = node.cfg.signer.zone_tasks;
        for zone in engine::schedule(zones.iter().map(String::as_str), &running, limit) {
            let mut memo = self.memo.remove(zone).unwrap_or_default();
            let (node, name) = (node.clone(), zone.to_string());
            let run = tokio::spawn(async move {
                let r = step(&node, &name, &mut memo).await;
                (memo, r)
            });
            self.running.insert(zone.to_string(), run);
        }
    }
}
