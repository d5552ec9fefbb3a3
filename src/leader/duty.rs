//! What a leader owes the cluster before it signs: a clock the other voters agree with,
//! its predecessor fenced, and leadership handed over when it must not sign.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::propose::propose;
use crate::node::Node;
use crate::replica::{Command, NodeId};

/// A leader that must not sign (a witness, or one whose keystore is lost) gives leadership
/// to the most caught-up ready signer (readiness from each member's status), keeping a
/// clean handover that was meant for it.
/// How long a clock comparison is reused: the signing loop compares once per tick, and
/// nothing is signed or committed on an older comparison.
pub(super) const CLOCK_FRESH: Duration = Duration::from_millis(250);

/// Whether this node's wall clock agrees, within `max_clock_skew_s`, with a majority of the
/// voters (see [`compare_clocks`]); a comparison younger than [`CLOCK_FRESH`] is reused.
pub(super) async fn clock_agrees(node: &Arc<Node>) -> Result<(), String> {
    let last = node.local().clock_checked.clone();
    if let Some((at, _, r)) = last
        && at.elapsed() < CLOCK_FRESH
        && clock_steady(node).is_ok()
    {
        return r;
    }
    let r = compare_clocks(node).await;
    node.local().clock_checked = Some((Instant::now(), node.now(), r.clone()));
    r
}

/// Whether the wall clock moved with the monotonic one since the last comparison with the
/// voters (within 2 s): a jump in between (even within `CLOCK_FRESH`) means what was
/// signed since may carry wrong inception and expiration times.
pub(super) fn clock_steady(node: &Node) -> Result<(), String> {
    let Some((at, wall, _)) = node.local().clock_checked else {
        return Err("the clock was never compared with the other voters'".into());
    };
    let expect = wall + at.elapsed().as_secs();
    let t = node.now();
    if t.abs_diff(expect) > 2 {
        return Err(format!(
            "the wall clock jumped {:+} s since it was compared with the other voters'",
            t as i64 - expect as i64
        ));
    }
    Ok(())
}

/// Compares this leader's wall clock with the other voters' over the node transport. Fails
/// closed: it passes only when a majority of the voters (this one included) answered and
/// agree with this clock within `max_clock_skew_s`.
pub(super) async fn compare_clocks(node: &Arc<Node>) -> Result<(), String> {
    let voters = node.voters();
    let skew = node.cfg.signer.max_clock_skew_s;
    let others: Vec<NodeId> = voters.iter().copied().filter(|v| *v != node.id).collect();
    let answers = node
        .ask_each(
            &others,
            crate::transport::Control::Time,
            Duration::from_secs(1),
        )
        .await;
    let mine = node.now();
    let need = voters.len() / 2 + 1;
    let (mut agree, mut off, mut silent) = (1, Vec::new(), Vec::new());
    for (v, r) in answers {
        match r {
            Ok(crate::transport::ControlReply::Time(t)) if t.abs_diff(mine) <= skew => agree += 1,
            Ok(crate::transport::ControlReply::Time(t)) => {
                off.push(format!("node {v} {:+} s", mine as i64 - t as i64))
            }
            Ok(r) => silent.push(format!("node {v}: {r:?}")),
            Err(e) => silent.push(e.to_string()),
        }
    }
    if agree >= need {
        return Ok(());
    }
    Err(format!(
        "clock check failed: {agree} of {} voters (this one included) agree within \
         max_clock_skew_s = {skew}, a majority needs {need}; differing: [{}]; no answer: [{}]",
        voters.len(),
        off.join(", "),
        silent.join("; ")
    ))
}

pub(super) async fn hand_over(node: &Arc<Node>, why: &str) -> Result<(), String> {
    let handover = node.sm.with(|st| st.handover);
    let voters = node.voters();
    let others: Vec<u64> = voters.iter().copied().filter(|v| *v != node.id).collect();
    let answers = node
        .ask_each(
            &others,
            crate::transport::Control::Status,
            Duration::from_secs(2),
        )
        .await;
    let mut silent = 0;
    let candidates = answers
        .into_iter()
        .filter_map(|(id, r)| {
            let Ok(crate::transport::ControlReply::Status(b)) = r else {
                silent += 1;
                return None;
            };
            let s: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            (s["readiness"]["ready"] == true && s["witness"] != true && s["store_check"].is_null())
                .then(|| (id, s["last_applied"].as_u64().unwrap_or(0)))
        })
        .max_by_key(|(_, applied)| *applied);
    // No member answered: the voter Raft knows to be most caught up, rather than a
    // leader that keeps leading without signing.
    let fallback = || {
        use openraft::type_config::async_runtime::WatchReceiver;
        let m = node.raft.metrics().borrow_watched().clone();
        m.replication.as_ref().and_then(|r| {
            others
                .iter()
                .filter_map(|v| r.get(v).map(|l| (*v, l.as_ref().map(|l| l.index()))))
                .max_by_key(|(_, i)| *i)
                .map(|(v, _)| (v, 0))
        })
    };
    let candidates = match candidates {
        None if silent > 0 && silent == others.len() => fallback(),
        c => c,
    };
    let Some((to, _)) = candidates else {
        return Err("no ready signer to hand over to; waiting".into());
    };
    let from = match handover {
        Some((f, t)) if t == node.id => f,
        _ => node.id,
    };
    propose(node, Command::Handover { from, to }).await?;
    node.raft
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(to, "handed leadership to node {to} ({why})");
    if node.cfg.witness {
        tracing::info!(to, "witness handed leadership to node {to}");
    }
    Ok(())
}

/// How long a leader blocked by a failed fence waits before running the hook again.
pub(super) const FENCE_RETRY: Duration = Duration::from_secs(10);

/// Fences the last leader when it is another node that neither handed over to this one nor
/// has been fenced since its term began. `Err` while signing must wait.
pub(super) async fn ensure_fenced(
    node: &Arc<Node>,
    term: u64,
    last_try: &mut Option<(Instant, String)>,
) -> Result<(), String> {
    let (last, handover, fenced, addr) = node.sm.with(|st| {
        let addr = st.last_leader.and_then(|(n, _)| {
            st.membership
                .membership()
                .nodes()
                .find(|(id, _)| **id == n)
                .map(|(_, a)| a.raft.clone())
        });
        (st.last_leader, st.handover, st.fenced.clone(), addr)
    });
    let Some((prev, prev_term)) = last else {
        return Ok(());
    };
    if prev == node.id
        || handover == Some((prev, node.id))
        || fenced.get(&prev).is_some_and(|t| *t >= prev_term)
    {
        return Ok(());
    }
    let Some(cfg) = node.cfg.fence.clone() else {
        tracing::warn!(
            prev,
            "no fence hook configured: node {prev} (leader in term {prev_term}) is not fenced"
        );
        return Ok(());
    };
    if let Some((at, why)) = last_try
        && at.elapsed() < FENCE_RETRY
    {
        return Err(why.clone());
    }
    let reason = format!(
        "node {} leads term {term}; node {prev} led term {prev_term} and did not hand over",
        node.id
    );
    let address = addr.unwrap_or_default();
    tracing::warn!(
        prev,
        term,
        "fencing node {prev} ({address}) before signing: {reason}"
    );
    let (c, me, a, r) = (cfg.clone(), node.id, address.clone(), reason.clone());
    let outcome =
        crate::runtime::spawn_blocking(move || crate::fence::run_hook(&c, me, prev, &a, term, &r))
            .await
            .map_err(|e| e.to_string())?;
    let cmd = Command::Fenced {
        target: prev,
        ok: outcome.ok,
        outcome: outcome.summary.clone(),
        origin: crate::replica::Origin {
            at: node.now(),
            by: format!("node {}", node.id),
            command: format!("fence node {prev} ({address}) in term {term}"),
        },
    };
    propose(node, cmd).await?;
    if outcome.ok {
        tracing::info!(prev, "node {prev} fenced: {}", outcome.summary);
        *last_try = None;
        return Ok(());
    }
    let why = format!("fence of node {prev} failed: {}", outcome.summary);
    if cfg.on_failure == crate::config::OnFailure::Sign {
        tracing::error!(prev, "{why}; signing anyway (fence.on_failure = \"sign\")");
        return Ok(());
    }
    tracing::error!(
        prev,
        "{why}; not signing until a fence succeeds (retry in {FENCE_RETRY:?}) or an operator \
         confirms it: quorumsign node fence {prev} --manual"
    );
    *last_try = Some((Instant::now(), why.clone()));
    Err(why)
}
