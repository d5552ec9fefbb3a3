//! `/nodes`, `/keystore`, `/leader`: membership changes, fencing, rejoin, the keystore
//! switch, leadership transfer; and the checks that keep a majority through them.

use super::*;

/// A request under `/nodes`, `/keystore` or `/leader` (the caller's role already checked).
pub(super) async fn handle(
    node: &Arc<Node>,
    caller: &Caller,
    method: &str,
    parts: &[&str],
    path: &str,
    body: &[u8],
    forwarded: bool,
) -> Reply {
    match (method, parts) {
        ("POST", ["nodes"]) => {
            let req: NodeAdd = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let Ok(_one_change) = MEMBERSHIP.try_lock() else {
                return error(
                    409,
                    "another membership change is in progress; try again when it ends",
                );
            };
            let addr = match check_new_node(node, &req).await {
                Ok(a) => a,
                Err(e) => return error(409, format!("node add {}: {e}", req.id)),
            };
            audit_line(
                caller,
                &format!("node add {} {} (started)", req.id, req.raft),
            );
            if let Err(e) = node.raft.add_learner(req.id, addr, false).await {
                return error(503, format!("add node {} as learner: {e}", req.id));
            }
            let wait =
                Duration::from_secs(node.cfg.admin.request_timeout_s.saturating_sub(15).max(5));
            if let Err(e) = caught_up(node, req.id, wait).await {
                let ids: std::collections::BTreeSet<NodeId> = [req.id].into();
                let undone = node
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
                    .await;
                return error(
                    503,
                    format!(
                        "node add {}: {e}; {}",
                        req.id,
                        match undone {
                            Ok(_) => "it was taken out again".to_string(),
                            Err(u) => format!(
                                "taking it out again failed ({u}): run node remove {}",
                                req.id
                            ),
                        }
                    ),
                );
            }
            let (voters, healthy) = healthy_voters(node);
            let after = voters.len() + 1;
            let need = after / 2 + 1;
            if healthy.len() + 1 < need {
                return error(
                    409,
                    format!(
                        "node add {}: with {} voters a majority needs {need} healthy, and only {} would be (healthy now: {healthy:?}); it stays a learner (node remove {} undoes it)",
                        req.id,
                        voters.len() + 1,
                        healthy.len() + 1,
                        req.id
                    ),
                );
            }
            let voters: std::collections::BTreeSet<NodeId> = [req.id].into();
            if let Err(e) = node
                .raft
                .change_membership(openraft::ChangeMembers::AddVoterIds(voters), false)
                .await
            {
                return error(503, format!("promote node {} to voter: {e}", req.id));
            }
            let _ = node
                .raft
                .client_write(Command::Audit {
                    origin: origin(node, caller, format!("node add {} {}", req.id, req.raft)),
                })
                .await;
            json_reply(200, json!({ "ok": true, "added": req.id }))
        }
        ("DELETE", ["nodes", id]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            let Ok(_one_change) = MEMBERSHIP.try_lock() else {
                return error(
                    409,
                    "another membership change is in progress; try again when it ends",
                );
            };
            if let Err(e) = check_majority_without(node, id, "remove") {
                return error(409, e);
            }
            let ids: std::collections::BTreeSet<NodeId> = [id].into();
            let (voters, _) = healthy_voters(node);
            if voters.contains(&id)
                && let Err(e) = node
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveVoters(ids.clone()), false)
                    .await
            {
                return error(503, format!("remove node {id}: {e}"));
            }
            let _ = node
                .raft
                .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
                .await;
            let _ = node
                .raft
                .client_write(Command::Audit {
                    origin: origin(node, caller, format!("node remove {id}")),
                })
                .await;
            json_reply(200, json!({ "ok": true, "removed": id }))
        }
        ("POST", ["leader", "transfer"]) => {
            let req: LeaderTransfer = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let _ = node
                .raft
                .client_write(Command::Audit {
                    origin: origin(node, caller, format!("leader transfer --to {}", req.to)),
                })
                .await;
            // A clean handover: the next leader does not fence this one.
            let _ = node
                .raft
                .client_write(Command::Handover {
                    from: node.id,
                    to: req.to,
                })
                .await;
            match node.raft.trigger().transfer_leader(req.to).await {
                Ok(()) => json_reply(200, json!({ "ok": true, "to": req.to })),
                Err(e) => error(503, e.to_string()),
            }
        }
        ("POST", ["nodes", id, "fence"]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            let manual = match parse::<Fence>(body) {
                Ok(f) => f.manual,
                Err(r) => return r,
            };
            if let Err(e) = check_majority_without(node, id, "fence") {
                return error(409, e);
            }
            let (ok, outcome) = if manual {
                (true, "confirmed fenced by the operator".to_string())
            } else {
                let Some(cfg) = node.cfg.fence.clone() else {
                    return error(
                        409,
                        "no fence hook configured on the leader; use --manual after fencing by hand",
                    );
                };
                let addr = {
                    let m = node.raft.metrics().borrow_watched().clone();
                    m.membership_config
                        .membership()
                        .nodes()
                        .find(|(n, _)| **n == id)
                        .map(|(_, a)| a.raft.clone())
                        .unwrap_or_default()
                };
                let term = node.raft.metrics().borrow_watched().current_term;
                let me = node.id;
                let o = crate::runtime::spawn_blocking(move || {
                    crate::fence::run_hook(&cfg, me, id, &addr, term, "fenced by the operator")
                })
                .await
                .unwrap_or_else(|e| crate::fence::FenceOutcome {
                    ok: false,
                    summary: e,
                });
                (o.ok, o.summary)
            };
            let r = propose(
                node,
                Command::Fenced {
                    target: id,
                    ok,
                    outcome: outcome.clone(),
                    origin: origin(
                        node,
                        caller,
                        format!("node fence {id}{}", if manual { " --manual" } else { "" }),
                    ),
                },
            )
            .await;
            if ok {
                r
            } else {
                error(502, format!("fence of node {id} failed: {outcome}"))
            }
        }
        ("POST", ["nodes", id, "rejoin"]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            let force = match parse::<api::Rejoin>(body) {
                Ok(r) => r.force,
                Err(r) => return r,
            };
            // A node held as an older copy already counts for nothing; wiping one that is
            // not (--force) must leave a healthy majority.
            if force && let Err(e) = check_majority_without(node, id, "rejoin") {
                return error(409, e);
            }
            audit_line(
                caller,
                &format!("node rejoin {id}{}", if force { " --force" } else { "" }),
            );
            match node
                .ask(id, Control::Rejoin { force }, Duration::from_secs(10))
                .await
            {
                Ok(ControlReply::Done) => {}
                Ok(ControlReply::Failed(e)) => return error(409, format!("node rejoin {id}: {e}")),
                Ok(r) => return error(502, format!("node {id}: unexpected answer {r:?}")),
                Err(e) => return error(502, format!("node rejoin {id}: {e}")),
            }
            propose(
                node,
                Command::Audit {
                    origin: origin(
                        node,
                        caller,
                        format!("node rejoin {id}: its store is wiped; started again it re-learns everything"),
                    ),
                },
            )
            .await
        }
        ("POST", ["nodes", id, "unfence"]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            // Letting a node back that still acts as leader would make two active signers.
            let claims = id != node.id
                && match node.ask(id, Control::Status, Duration::from_secs(2)).await {
                    Ok(ControlReply::Status(b)) => {
                        serde_json::from_slice::<Value>(&b).is_ok_and(|s| s["role"] == "leader")
                    }
                    _ => false,
                };
            if claims {
                return error(
                    409,
                    format!(
                        "unfence node {id}: it still acts as leader; that would make two active signers"
                    ),
                );
            }
            propose(
                node,
                Command::Unfence {
                    target: id,
                    origin: origin(node, caller, format!("node unfence {id}")),
                },
            )
            .await
        }
        ("POST", ["nodes", id, "keystore"]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            if id == node.id {
                return Box::pin(super::handle(
                    node,
                    caller,
                    method,
                    "/keystore",
                    body,
                    forwarded,
                ))
                .await;
            }
            if forwarded {
                return error(
                    409,
                    format!("node {id}: a forwarded request is not sent on again"),
                );
            }
            let available = match parse::<Keystore>(body) {
                Ok(k) => k.available,
                Err(r) => return r,
            };
            let req = Control::Admin {
                caller: caller.clone(),
                method: method.to_string(),
                path: "/keystore".into(),
                body: body.to_vec(),
            };
            match node.ask(id, req, crate::transport::CONTROL_TIMEOUT).await {
                Ok(ControlReply::Admin { code, body }) => {
                    if code == 200 {
                        let what = format!("keystore of node {id} available={available}");
                        audit_note(node, caller, what).await;
                    }
                    Reply {
                        code,
                        body,
                        content_type: "application/json",
                    }
                }
                Ok(r) => error(502, format!("node {id}: unexpected answer {r:?}")),
                Err(e) => error(502, format!("node {id}: {e}")),
            }
        }
        ("POST", ["keystore"]) => {
            // Drills: take this node's keystore away (or give it back), then re-test at once.
            let available = match parse::<Keystore>(body) {
                Ok(k) => k.available,
                Err(r) => return r,
            };
            node.keys
                .available
                .store(available, std::sync::atomic::Ordering::SeqCst);
            let n = node.clone();
            if let Ok(r) =
                crate::runtime::spawn_blocking(move || crate::follower::check_readiness(&n)).await
            {
                node.local().readiness = r;
            }
            // Sent here by another node: that node records it (a forwarded request is never
            // sent on again).
            if !forwarded {
                let what = format!("keystore of node {} available={available}", node.id);
                audit_note(node, caller, what).await;
            }
            json_reply(200, json!({ "ok": true, "available": available }))
        }
        _ => error(404, format!("no such endpoint: {method} {path}")),
    }
}

/// Voters, and those that acknowledged the leader within the election timeout (the leader
/// itself included): what a membership step or a fence may not take below a majority.
fn healthy_voters(node: &Node) -> (Vec<NodeId>, Vec<NodeId>) {
    use openraft::Instant as _;
    let m = node.raft.metrics().borrow_watched().clone();
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    let fresh = std::time::Duration::from_millis(node.cfg.raft.election_min_ms);
    let healthy = voters
        .iter()
        .copied()
        .filter(|id| {
            *id == node.id
                || m.heartbeat
                    .as_ref()
                    .and_then(|h| h.get(id).cloned().flatten())
                    .is_some_and(|at| at.elapsed() < fresh)
        })
        .collect();
    (voters, healthy)
}

/// Refuses taking `id` out of the working set when that would leave fewer than a majority
/// of the voters healthy, or when `id` is this leader.
fn check_majority_without(node: &Node, id: NodeId, what: &str) -> Result<(), String> {
    if id == node.id {
        return Err(format!(
            "{what} node {id}: it is the leader; hand over first (leader transfer or drill failover)"
        ));
    }
    let (voters, healthy) = healthy_voters(node);
    let left: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
    let left_healthy = healthy.iter().filter(|v| **v != id).count();
    let need = if what == "remove" {
        left.len() / 2 + 1
    } else {
        voters.len() / 2 + 1
    };
    if left_healthy < need {
        return Err(format!(
            "{what} node {id}: would leave {left_healthy} healthy voter(s) of {} (healthy now: {healthy:?}); a majority needs {need}",
            if what == "remove" {
                left.len()
            } else {
                voters.len()
            }
        ));
    }
    Ok(())
}

/// One membership change at a time (node add and remove, on the leader).
static MEMBERSHIP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Pre-flight of `node add`: a new id, addresses that parse and resolve, and the node
/// answering over the transport with a certificate for its id.
async fn check_new_node(node: &Arc<Node>, req: &NodeAdd) -> Result<NodeAddr, String> {
    if req.id == 0 {
        return Err("node ids start at 1".into());
    }
    let m = node.raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Err(
            "the cluster is undergoing a configuration change; try again when it ends".into(),
        );
    }
    if membership.voter_ids().any(|v| v == req.id) {
        return Err("it is already a voter".into());
    }
    if membership.learner_ids().any(|v| v == req.id) {
        return Err(format!(
            "it is already a learner (an add that did not finish): node remove {} first",
            req.id
        ));
    }
    let (host, port) = req
        .raft
        .rsplit_once(':')
        .ok_or_else(|| format!("raft address {:?}: expected HOST:PORT", req.raft))?;
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("raft address {:?}: expected HOST:PORT", req.raft));
    }
    let resolved = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host(&req.raft))
        .await
        .map_err(|_| format!("raft address {:?}: name lookup timed out", req.raft))?
        .map_err(|e| format!("raft address {:?}: {e}", req.raft))?
        .count();
    if resolved == 0 {
        return Err(format!("raft address {:?} resolves to nothing", req.raft));
    }
    if let Some(a) = &req.admin {
        match client::Target::parse(a) {
            Ok(client::Target::Https { .. }) => {}
            _ => return Err(format!("admin address {a:?}: expected https://HOST:PORT")),
        }
    }
    let addr = NodeAddr {
        raft: req.raft.clone(),
        admin: req.admin.clone().unwrap_or_default(),
    };
    match node
        .peers
        .ask(req.id, &addr, Control::Time, Duration::from_secs(5))
        .await
    {
        Ok(ControlReply::Time(_)) => Ok(addr),
        Ok(r) => Err(format!("it answered {r:?} to a clock request")),
        Err(e) => Err(format!(
            "it does not answer over the node transport with a certificate for its id: {e}"
        )),
    }
}

/// Waits until learner `id` has the leader's log up to where it was when the wait began.
async fn caught_up(node: &Arc<Node>, id: NodeId, wait: Duration) -> Result<(), String> {
    let target = node
        .raft
        .metrics()
        .borrow_watched()
        .last_log_index
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let m = node.raft.metrics().borrow_watched().clone();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index());
        if matched.is_some_and(|i| i >= target) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "it did not catch up within {} s (has {matched:?} of {target})",
                wait.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
