//! The leader's signing loop.
//!
//! ```text
//!  every tick, while leader, per zone:
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

mod build;
mod duty;
mod input;
mod keys;
mod propose;
mod quick;
mod zone;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::duty::{clock_agrees, ensure_fenced, hand_over};
use self::input::standby_index;
use self::propose::propose;
use self::zone::{Memo, step};
use crate::node::{Node, RunReport};
use crate::replica::Command;

pub async fn run(node: Arc<Node>) {
    let mut memo: HashMap<String, Memo> = HashMap::new();
    let mut started: Option<u64> = None;
    let mut fence_try: Option<(Instant, String)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(node.cfg.signer.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            started = None;
            fence_try = None;
            if node.cfg.witness {
                memo.clear();
                continue;
            }
            // A standby keeps only the index of the file the current version was built
            // from, and keeps it up to date: as leader it reads a changed file around its
            // change at once instead of comparing the whole of it (~11 s at 1M).
            let zones: Vec<String> = node.sm.with(|st| st.zones.keys().cloned().collect());
            memo.retain(|z, _| zones.contains(z));
            for zone in zones {
                let m = memo.entry(zone.clone()).or_default();
                *m = m.standby();
                standby_index(&node, &zone, m);
            }
            continue;
        }
        // A witness never signs: it hands leadership on at once. A leader whose keystore
        // fails its readiness test-sign does the same.
        let keys_lost = {
            let l = node.local();
            l.readiness
                .problems
                .iter()
                .find(|p| p.starts_with("key "))
                .cloned()
        };
        if node.cfg.witness || keys_lost.is_some() {
            let why = keys_lost.unwrap_or_else(|| "witness".into());
            if let Err(e) = hand_over(&node, &why).await {
                tracing::warn!("leader cannot sign ({why}); hand-over: {e}");
            }
            continue;
        }
        let term = {
            use openraft::type_config::async_runtime::WatchReceiver;
            node.raft.metrics().borrow_watched().current_term
        };
        // Self-fencing (see `watch_lease`): without recent quorum acknowledgements, no signing;
        // a leader that lost its quorum in this term resumes only as a follower.
        if node.may_publish().is_err() {
            continue;
        }
        // A leader whose wall clock disagrees with every other voter that answers would
        // sign with wrong inception and expiration times: it hands over instead.
        if let Err(why) = clock_agrees(&node).await {
            if node.local().clock_alarm.as_deref() != Some(why.as_str()) {
                tracing::error!("ALARM: {why}; not signing, handing leadership over");
            }
            node.local().clock_alarm = Some(why.clone());
            if let Err(e) = hand_over(&node, &why).await {
                tracing::warn!("leader with a wrong clock; hand-over: {e}");
            }
            continue;
        }
        if node.local().clock_alarm.take().is_some() {
            tracing::info!("clock agrees with the other voters again");
        }
        // (Also when it won a later election before following anyone: it must rejoin first.)
        if node.local().fenced_term.is_some_and(|t| t <= term) {
            if let Err(e) = hand_over(&node, "lost its quorum in this term").await {
                tracing::warn!("self-fenced leader, quorum back; hand-over: {e}");
            }
            continue;
        }
        // A new term: fence the predecessor when it did not hand over, then start.
        if started != Some(term) {
            let began = Instant::now();
            if let Err(e) = ensure_fenced(&node, term, &mut fence_try).await {
                node.local().fence_block = Some(e);
                continue;
            }
            if propose(
                &node,
                Command::LeaderStart {
                    node: node.id,
                    term,
                },
            )
            .await
            .is_err()
            {
                continue;
            }
            started = Some(term);
            node.local().fence_block = None;
            tracing::info!(
                term,
                ms = began.elapsed().as_millis() as u64,
                "leading: predecessor fenced, LeaderStart committed"
            );
        }
        let zones: Vec<String> = node.sm.with(|st| st.zones.keys().cloned().collect());
        for zone in zones {
            if node.may_publish().is_err() {
                break;
            }
            let m = memo.entry(zone.clone()).or_default();
            if let Err(e) = step(&node, &zone, m).await {
                tracing::warn!(zone, "signing: {e}");
                node.local().last_run.insert(
                    zone.clone(),
                    RunReport {
                        at: node.now(),
                        error: Some(e),
                        ..Default::default()
                    },
                );
            }
        }
    }
}
