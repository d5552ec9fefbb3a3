//! The admin API: JSON over HTTP/1.1 on the node's Unix socket and, when configured, over
//! HTTPS with client certificates (`server`). Every path starts with `/v1`; every caller is
//! authenticated and has a role (`access`), and each endpoint needs one:
//!
//! | method | path (below /v1)          | role     | what                                  |
//! |--------|---------------------------|----------|---------------------------------------|
//! | GET    | /status                   | monitor  | this node: role, term, indexes, readiness, zones |
//! | GET    | /cluster                  | monitor  | every member's status (over the node transport) |
//! | POST   | /init                     | operator | bootstrap the cluster with this node and its peers |
//! | GET    | /zones                    | monitor  | zones and their current versions      |
//! | POST   | /zones                    | operator | add a zone `{name, file, denial?, algorithm?, csk?}`; with a `policy`: security-officer |
//! | PATCH  | /zones/NAME               | operator | change a zone; with a `policy`: security-officer |
//! | DELETE | /zones/NAME               | operator | remove a zone `{confirm: NAME}`; its keys are kept retired |
//! | POST   | /zones/NAME/reload        | operator | re-read a zone's input now            |
//! | GET    | /zones/NAME/signed        | operator | the signed zone as this node validated it |
//! | POST   | /nodes                    | operator | add a node `{id, raft, admin?}`: learner, caught up, then voter |
//! | DELETE | /nodes/ID                 | operator | remove a node                         |
//! | POST   | /nodes/ID/fence, /unfence | operator | fence (or confirm `{manual: true}`), unfence |
//! | POST   | /nodes/ID/rejoin          | operator | a node restored from an old copy wipes its store and re-learns `{force?}` |
//! | POST   | /leader/transfer          | operator | `{to}`                                |
//! | GET    | /audit                    | monitor  | the replicated audit log              |
//! | POST   | /audit                    | operator | an operator note `{command}` (bounded, rate-limited) |
//! | POST   | /keystore                 | security-officer | `{available}`: this node's keystore on or off (drills) |
//! | POST   | /nodes/ID/keystore        | security-officer | the same for node ID (sent to it over the node transport) |
//! | GET    | /zones/NAME/keys          | monitor  | key states, goals, parent, engine notes |
//! | POST   | /zones/NAME/keys          | security-officer | rollover, ds-seen, ds-gone, clock-ok, backup-commit |
//! | DELETE | /zones/NAME/keys          | security-officer | destroy a removed zone's retired keys `{confirm: NAME}` |
//! | GET    | /zones/NAME/backup        | monitor  | keys not yet backed up                |
//! | GET    | /zones/NAME/policy-check  | monitor  | timing audit against the zone and parent |
//!
//! A change sent to a node that does not lead is carried to the leader over the node
//! transport, on behalf of the same caller. A request outside the caller's role gets 403
//! naming the role it needs. Every change is audited with the caller's identity and role,
//! in the replicated audit log and as one `audit` log line.

pub mod api;
pub mod client;
mod keys;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::{Caller, Role};
use crate::node::Node;
use crate::replica::state::hex;
use crate::replica::{Command, NodeAddr, NodeId, Origin, Outcome, ZoneConfig};
use crate::transport::{Control, ControlReply};
use api::{Confirm, Fence, Keystore, LeaderTransfer, NodeAdd, Note, ZoneAdd, ZoneSet};

pub struct Reply {
    pub code: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

fn json_reply(code: u16, v: Value) -> Reply {
    Reply {
        code,
        body: serde_json::to_vec_pretty(&v).unwrap_or_default(),
        content_type: "application/json",
    }
}

fn error(code: u16, msg: impl Into<String>) -> Reply {
    json_reply(code, json!({ "error": msg.into() }))
}

fn not_leader(node: &Node) -> Reply {
    let m = node.raft.metrics().borrow_watched().clone();
    let leader = m.current_leader;
    let admin = leader.and_then(|l| {
        m.membership_config
            .membership()
            .nodes()
            .find(|(id, _)| **id == l)
            .map(|(_, n)| n.admin.clone())
    });
    json_reply(
        421,
        json!({ "error": "this node is not the leader", "leader": leader, "leader_admin": admin }),
    )
}

/// An audit origin: the command, who asked for it and with which role. Also written as one
/// `audit` log line, so that syslog keeps the trail beyond the replicated window.
fn origin(node: &Node, caller: &Caller, command: String) -> Origin {
    audit_line(caller, &command);
    Origin {
        at: node.now(),
        by: caller.label(),
        command,
    }
}

/// The `audit` log line alone: for a step whose replicated record comes later (or never,
/// when it fails).
fn audit_line(caller: &Caller, command: &str) {
    tracing::info!(target: "audit", who = %caller.name, role = %caller.role, via = caller.via, %command, "audit");
}

async fn propose(node: &Node, cmd: Command) -> Reply {
    match node.raft.client_write(cmd).await {
        Ok(r) => match r.data {
            Outcome::Refused(m) => error(409, m),
            Outcome::Published { serial, token } => {
                json_reply(200, json!({ "ok": true, "serial": serial, "token": token }))
            }
            Outcome::Done => json_reply(200, json!({ "ok": true, "index": r.log_id.index() })),
        },
        Err(e) => match e.forward_to_leader() {
            Some(f) => json_reply(
                421,
                json!({ "error": "this node is no longer the leader",
                        "leader": f.leader_id, "leader_admin": f.leader_node.as_ref().map(|n| n.admin.clone()) }),
            ),
            None => error(503, e.to_string()),
        },
    }
}

/// Input and publication options of a zone (`zone add`, `zone set`).
struct ZoneOpts {
    file: Option<String>,
    primary: Option<String>,
    serial: Option<String>,
    output: Option<Option<String>>,
    notify: Option<Vec<String>>,
    transfer: Option<Vec<String>>,
    max_records: Option<u64>,
}

/// Checks `o` and applies it to `cfg`. With `need_input`, one of file and primary is required.
fn apply_opts(
    node: &Node,
    cfg: &mut ZoneConfig,
    o: ZoneOpts,
    need_input: bool,
) -> Result<(), String> {
    match (&o.file, &o.primary) {
        (Some(file), None) => {
            let path = std::path::Path::new(file);
            if !path.is_absolute() || !path.is_file() {
                return Err(format!(
                    "zone file {file:?} must be an absolute path to a file every node can read"
                ));
            }
            cfg.input = format!("file:{file}");
        }
        (None, Some(p)) => {
            let remote = crate::dns::Remote::parse(p).map_err(|e| format!("primary {e}"))?;
            remote
                .tsig(&node.tsig)
                .map_err(|e| format!("primary {p}: {e}"))?;
            cfg.input = format!("primary:{p}");
        }
        (None, None) if !need_input => {}
        _ => return Err("give exactly one of file and primary".into()),
    }
    if let Some(p) = o.serial {
        crate::zone::serial::next(&p, None, 1, 0)?;
        cfg.serial = p;
    }
    if let Some(out) = o.output {
        if let Some(path) = &out
            && !std::path::Path::new(path).is_absolute()
        {
            return Err(format!("output {path:?} must be an absolute path"));
        }
        cfg.output = out;
    }
    if let Some(notify) = o.notify {
        for n in &notify {
            let r = crate::dns::Remote::parse(n).map_err(|e| format!("notify {e}"))?;
            r.tsig(&node.tsig).map_err(|e| format!("notify {n}: {e}"))?;
        }
        cfg.notify = notify;
    }
    if let Some(transfer) = o.transfer {
        for t in &transfer {
            crate::serve::check_acl(t)?;
        }
        cfg.transfer = transfer;
    }
    if let Some(m) = o.max_records {
        cfg.max_records = m;
    }
    Ok(())
}

/// Sends a change to the leader over the node transport, on behalf of `caller`; while
/// there is no leader (an election) it tries again for up to 15 s.
async fn forward(
    node: &Arc<Node>,
    caller: &Caller,
    method: &str,
    path: &str,
    body: &[u8],
) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut last = "no leader (election in progress or no quorum)".to_string();
    let mut known = false;
    while tokio::time::Instant::now() < deadline {
        let leader = node.raft.metrics().borrow_watched().current_leader;
        known |= leader.is_some();
        match leader {
            Some(l) if l == node.id => {
                if node.is_leader() {
                    return Box::pin(handle(node, caller, method, path, body, true)).await;
                }
            }
            Some(l) => {
                let req = Control::Admin {
                    caller: caller.clone(),
                    method: method.to_string(),
                    path: path.to_string(),
                    body: body.to_vec(),
                };
                // As long as the leader carries out a request (a node add waits for the
                // learner to catch up).
                let ttl = Duration::from_secs(node.cfg.admin.request_timeout_s);
                match node.ask(l, req, ttl).await {
                    Ok(ControlReply::Admin { code: 421, .. }) => {}
                    Ok(ControlReply::Admin { code, body }) => {
                        return Reply {
                            code,
                            body,
                            content_type: "application/json",
                        };
                    }
                    Ok(r) => last = format!("leader {l}: unexpected answer {r:?}"),
                    Err(e @ crate::transport::ControlError::NotSent { .. }) => {
                        last = format!("leader {l}: {e}")
                    }
                    // Sent, and no answer: it may have been carried out; never twice.
                    Err(e) => {
                        return error(
                            504,
                            format!(
                                "leader {l} did not answer ({e}); the change may or may not have been \
                                 made: look at cluster status and the audit log before trying again"
                            ),
                        );
                    }
                }
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json_reply(
        503,
        json!({ "error": format!("cannot reach the leader: {last}"), "no_leader": !known }),
    )
}

/// Answers a control request of node `from` (authenticated by its certificate).
pub async fn answer_control(node: &Arc<Node>, from: NodeId, req: Control) -> ControlReply {
    match req {
        Control::Time => ControlReply::Time(node.now()),
        Control::Status => {
            let n = node.clone();
            match crate::runtime::spawn_blocking(move || status(&n)).await {
                Ok(v) => ControlReply::Status(serde_json::to_vec(&v).unwrap_or_default()),
                Err(e) => ControlReply::Failed(e),
            }
        }
        Control::Identity => ControlReply::Identity {
            store: node.identity.store.clone(),
            incarnation: node.identity.incarnation,
        },
        Control::StoreRecord { of } => {
            let (record, as_of) = crate::node::restore::record_of(node, of).await;
            ControlReply::StoreRecord {
                record,
                announced: crate::node::restore::announced(node, of),
                as_of,
            }
        }
        Control::Announce { store, incarnation } => {
            crate::node::restore::remember(node, from, store, incarnation)
        }
        Control::Rejoin { force } => crate::node::restore::rejoin(node, force),
        Control::Init => {
            let r = init_here(node).await;
            if r.code == 200 {
                ControlReply::Done
            } else {
                ControlReply::Failed(String::from_utf8_lossy(&r.body).into_owned())
            }
        }
        Control::Admin {
            caller,
            method,
            path,
            body,
        } => {
            if caller.via != from {
                return ControlReply::Failed(format!(
                    "node {from} forwarded a caller authenticated by node {}",
                    caller.via
                ));
            }
            let r = handle(node, &caller, &method, &path, &body, true).await;
            ControlReply::Admin {
                code: r.code,
                body: r.body,
            }
        }
    }
}

/// The status of every member, asked over the node transport (`null` for one that does
/// not answer).
async fn cluster_status(node: &Arc<Node>) -> Value {
    let n = node.clone();
    let mine = crate::runtime::spawn_blocking(move || status(&n))
        .await
        .unwrap_or(Value::Null);
    let ids: Vec<NodeId> = mine["nodes"]
        .as_object()
        .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    let has_me = ids.contains(&node.id);
    let others: Vec<NodeId> = ids.into_iter().filter(|id| *id != node.id).collect();
    let mut out: BTreeMap<String, Value> = node
        .ask_each(&others, Control::Status, Duration::from_secs(3))
        .await
        .into_iter()
        .map(|(id, r)| {
            let v = match r {
                Ok(ControlReply::Status(b)) => serde_json::from_slice(&b).unwrap_or(Value::Null),
                _ => Value::Null,
            };
            (id.to_string(), v)
        })
        .collect();
    if has_me {
        out.insert(node.id.to_string(), mine);
    }
    json!({ "from": node.id, "members": out })
}

/// Initializes this node's Raft with the members of its config.
async fn init_here(node: &Arc<Node>) -> Reply {
    let members: BTreeMap<NodeId, NodeAddr> = node.cfg.members();
    match node.raft.initialize(members.clone()).await {
        Ok(()) => json_reply(
            200,
            json!({ "ok": true, "members": members.keys().collect::<Vec<_>>() }),
        ),
        Err(e) => error(409, format!("cannot initialize: {e}")),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(400, format!("request body: {e}")))
}

/// The role an endpoint needs. Reading is for monitors, except the whole signed zone
/// (NSEC3 and all, past the transfer ACL); keys, the keystore and policies are for the
/// security officer; every other change is for operators.
pub fn needed_role(method: &str, parts: &[&str], body: &[u8]) -> Role {
    let has_policy = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .is_some_and(|v| !v["policy"].is_null())
    };
    match (method, parts) {
        ("GET", ["zones", _, "signed"]) => Role::Operator,
        ("GET", _) => Role::Monitor,
        (_, ["zones", _, "keys"]) | (_, ["keystore"]) | (_, ["nodes", _, "keystore"]) => {
            Role::SecurityOfficer
        }
        ("POST", ["zones"]) | ("PATCH", ["zones", _]) if has_policy() => Role::SecurityOfficer,
        _ => Role::Operator,
    }
}

/// Answers one admin request of `caller`. `forwarded`: sent on by another node, which
/// authenticated the caller; such a request is never sent on again.
pub async fn handle(
    node: &Arc<Node>,
    caller: &Caller,
    method: &str,
    path: &str,
    body: &[u8],
    forwarded: bool,
) -> Reply {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Every body is one JSON object: the role an endpoint needs may depend on its fields,
    // and a struct read from an array would escape that look.
    if !body.is_empty() && !serde_json::from_slice::<Value>(body).is_ok_and(|v| v.is_object()) {
        return error(400, "the request body must be one JSON object");
    }
    let needed = needed_role(method, &parts, body);
    if !caller.role.covers(needed) {
        tracing::warn!(target: "audit", who = %caller.name, role = %caller.role, %method, %path,
            needed = %needed, "refused: outside the caller's role");
        return error(
            403,
            format!(
                "{method} /v1{path} needs the role {needed}; {} has the role {}",
                caller.name, caller.role
            ),
        );
    }
    let writes = method != "GET";
    let local = matches!(
        parts.as_slice(),
        ["init"] | ["keystore"] | ["nodes", _, "keystore"]
    );
    if writes && !local && !node.is_leader() {
        if forwarded {
            return not_leader(node);
        }
        return forward(node, caller, method, path, body).await;
    }
    match (method, parts.as_slice()) {
        ("GET", ["status"]) => json_reply(200, crate::runtime::blocking(|| status(node))),
        ("GET", ["cluster"]) => json_reply(200, cluster_status(node).await),
        ("POST", ["init"]) => {
            // Every reachable member gets the first entry too, so that none starts with an
            // empty store (an empty store grants no vote: `transport::Blank`).
            for p in &node.cfg.peers {
                match node.ask(p.id, Control::Init, Duration::from_secs(5)).await {
                    Ok(ControlReply::Done) => {}
                    Ok(r) => tracing::info!(peer = p.id, "peer not initialized here: {r:?}"),
                    Err(e) => tracing::info!(peer = p.id, "peer not initialized here: {e}"),
                }
            }
            audit_line(caller, "cluster init");
            init_here(node).await
        }
        ("GET", ["zones"]) => json_reply(
            200,
            crate::runtime::blocking(|| status(node))["zones"].clone(),
        ),
        ("POST", ["zones"]) => {
            let req: ZoneAdd = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let mut cfg = ZoneConfig::new(&req.name, "");
            if crate::zone::Name::parse(cfg.name.as_bytes(), None).is_err() {
                return error(400, format!("bad zone name {:?}", req.name));
            }
            if let Some(text) = &req.policy {
                match crate::kasp::Policy::from_toml(text, "policy") {
                    Ok(p) => cfg.set_policy(p),
                    Err(e) => return error(400, e),
                }
            }
            if let Some(d) = req.denial {
                cfg.denial = d;
            }
            if let Some(a) = req.algorithm {
                if crate::keys::Algorithm::from_number(a).is_err() {
                    return error(
                        400,
                        format!("algorithm {a} is not supported (8, 13, 14, 15)"),
                    );
                }
                cfg.algorithm = a;
            }
            if let Some(c) = req.csk {
                cfg.csk = c;
            }
            if let Err(e) = crate::signer::Denial::parse(&cfg.denial) {
                return error(400, e);
            }
            let opts = ZoneOpts {
                file: req.file,
                primary: req.primary,
                serial: req.serial,
                output: req.output.map(Some),
                notify: Some(req.notify),
                transfer: Some(req.transfer),
                max_records: req.max_records,
            };
            if let Err(e) = apply_opts(node, &mut cfg, opts, true) {
                return error(400, e);
            }
            let o = origin(node, caller, format!("zone add {} {}", cfg.name, cfg.input));
            propose(
                node,
                Command::AddZone {
                    zone: cfg,
                    origin: o,
                },
            )
            .await
        }
        ("PATCH", ["zones", name]) => {
            let name = absolute(name);
            let req: ZoneSet = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let Some(mut cfg) = node
                .sm
                .with(|st| st.zones.get(&name).and_then(|z| z.config.clone()))
            else {
                return error(404, format!("no zone {name}"));
            };
            if let Some(text) = &req.policy {
                match crate::kasp::Policy::from_toml(text, "policy") {
                    Ok(p) => cfg.set_policy(p),
                    Err(e) => return error(400, e),
                }
            }
            let opts = ZoneOpts {
                file: req.file,
                primary: req.primary,
                serial: req.serial,
                output: if req.no_output {
                    Some(None)
                } else {
                    req.output.map(Some)
                },
                notify: req.notify,
                transfer: req.transfer,
                max_records: req.max_records,
            };
            if let Err(e) = apply_opts(node, &mut cfg, opts, false) {
                return error(400, e);
            }
            let o = origin(node, caller, format!("zone set {name}"));
            propose(
                node,
                Command::SetZone {
                    zone: cfg,
                    origin: o,
                },
            )
            .await
        }
        ("DELETE", ["zones", name, "keys"]) => {
            let name = absolute(name);
            if let Err(r) = confirmed(body, &name, "destroying the keys of", "keys purge") {
                return r;
            }
            propose(
                node,
                Command::PurgeKeys {
                    zone: name.clone(),
                    origin: origin(node, caller, format!("keys purge {name}")),
                },
            )
            .await
        }
        ("DELETE", ["zones", name]) => {
            let name = absolute(name);
            if let Err(r) = confirmed(body, &name, "removing zone", "zone remove") {
                return r;
            }
            propose(
                node,
                Command::RemoveZone {
                    name: name.clone(),
                    origin: origin(node, caller, format!("zone remove {name}")),
                },
            )
            .await
        }
        ("POST", ["zones", name, "reload"]) => {
            let name = absolute(name);
            propose(
                node,
                Command::Reload {
                    name: name.clone(),
                    origin: origin(node, caller, format!("zone reload {name}")),
                },
            )
            .await
        }
        ("GET", ["zones", name, "signed"]) => {
            let name = absolute(name);
            let good = node.local().last_good.get(&name).cloned();
            node.sm.with(|st| {
                let Some(z) = st.zones.get(&name) else {
                    return error(404, format!("no zone {name}"));
                };
                if let Some(why) = node.stale(&mut node.local(), &name, z) {
                    return error(503, format!("not answering for {name}: {why}"));
                }
                match (&z.current, good) {
                    (Some(cur), Some(g)) if cur.token == g.token => Reply {
                        code: 200,
                        body: z.to_text().into_bytes(),
                        content_type: "text/dns",
                    },
                    (Some(cur), _) => error(
                        503,
                        format!("serial {} is not validated on this node yet", cur.serial),
                    ),
                    (None, _) => error(503, format!("zone {name} has no signed version yet")),
                }
            })
        }
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
                let o = tokio::task::spawn_blocking(move || {
                    crate::fence::run_hook(&cfg, me, id, &addr, term, "fenced by the operator")
                })
                .await
                .unwrap_or_else(|e| crate::fence::FenceOutcome {
                    ok: false,
                    summary: e.to_string(),
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
                return Box::pin(handle(node, caller, method, "/keystore", body, forwarded)).await;
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
                tokio::task::spawn_blocking(move || crate::follower::check_readiness(&n)).await
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
        ("POST", ["audit"]) => {
            let command = match parse::<Note>(body) {
                Ok(n) => n.command,
                Err(r) => return r,
            };
            let a = &node.cfg.admin;
            if command.len() > a.note_max_bytes {
                return error(
                    413,
                    format!(
                        "operator note of {} bytes is over admin.note_max_bytes = {}",
                        command.len(),
                        a.note_max_bytes
                    ),
                );
            }
            if !note_allowed(a.notes_per_minute) {
                return error(
                    429,
                    format!(
                        "more than admin.notes_per_minute = {} operator notes in the last minute",
                        a.notes_per_minute
                    ),
                );
            }
            propose(
                node,
                Command::Audit {
                    origin: origin(node, caller, command),
                },
            )
            .await
        }
        ("GET", ["audit"]) => json_reply(200, node.sm.with(|st| json!(st.audit))),
        (m, ["zones", name, what @ ("keys" | "backup" | "policy-check")]) => {
            keys::handle(node, caller, m, name, what, body).await
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

/// Whether `body` confirms a destructive step on zone `name` (`{"confirm": NAME}`).
fn confirmed(body: &[u8], name: &str, what: &str, command: &str) -> Result<(), Reply> {
    let confirm = serde_json::from_slice::<Confirm>(body)
        .ok()
        .map(|c| absolute(&c.confirm));
    if confirm.as_deref() == Some(name) {
        return Ok(());
    }
    Err(error(
        400,
        format!(
            "{what} {name} needs {{\"confirm\": \"{name}\"}} ({command} {name} --confirm {name})"
        ),
    ))
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

/// Records `what` in the replicated audit log through the leader (this node may be a
/// follower); a failure is logged, the `audit` log line is written anyway.
async fn audit_note(node: &Arc<Node>, caller: &Caller, what: String) {
    if node.is_leader() {
        let _ = node
            .raft
            .client_write(Command::Audit {
                origin: origin(node, caller, what),
            })
            .await;
        return;
    }
    let body = serde_json::to_vec(&Note { command: what }).unwrap_or_default();
    let r = forward(node, caller, "POST", "/audit", &body).await;
    if r.code != 200 {
        tracing::warn!(
            "not recorded in the audit log: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// Whether one more operator note fits in the last minute's allowance (this node's).
fn note_allowed(per_minute: u32) -> bool {
    static NOTES: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let mut notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    while notes
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        notes.pop_front();
    }
    if notes.len() >= per_minute as usize {
        return false;
    }
    notes.push_back(now);
    true
}

fn absolute(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

#[derive(Serialize)]
struct ZoneStatus {
    name: String,
    input: String,
    denial: String,
    serial: Option<u32>,
    hash: Option<String>,
    token: Option<(u64, u64)>,
    rrsets: u64,
    signed: u64,
    reused: u64,
    resigned_unchanged: u64,
    published_at: u64,
    published_by: u64,
    validated_serial: Option<u32>,
    alarm: Option<String>,
    /// Why this node does not answer for the zone now (not known to be current within
    /// the zone's propagation delay).
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<String>,
    /// The leader's last signing run on this zone failed (input unreadable, transfer
    /// refused, …): why. The last good version stays published.
    last_error: Option<String>,
    keys: Vec<Value>,
    /// What the key-lifecycle engine waits for, warns of or alarms on.
    key_notes: Vec<String>,
}

pub fn status(node: &Node) -> Value {
    let m = node.raft.metrics().borrow_watched().clone();
    let local = node.local().clone();
    let st = node.sm.read();
    let st_fenced = st.fenced.clone();
    // Readiness also needs every zone's newest committed version validated here (now).
    let mut readiness = local.readiness.clone();
    for (name, z) in &st.zones {
        if let Some(cur) = &z.current
            && local
                .last_good
                .get(name)
                .is_none_or(|g| g.token != cur.token)
        {
            readiness.problems.push(format!(
                "zone {name}: serial {} not validated here yet",
                cur.serial
            ));
            readiness.ready = false;
        }
    }
    let zones: Vec<ZoneStatus> = st
        .zones
        .iter()
        .map(|(name, z)| {
            let cfg = z
                .config
                .clone()
                .unwrap_or_else(|| ZoneConfig::new(name, ""));
            let v = z.current.clone().unwrap_or_default();
            ZoneStatus {
                name: name.clone(),
                input: cfg.input,
                denial: cfg.denial,
                serial: z.current.as_ref().map(|v| v.serial),
                hash: z.current.as_ref().map(|v| hex(&v.hash)),
                token: z.current.as_ref().map(|v| v.token.into()),
                rrsets: v.rrsets,
                signed: v.signed,
                reused: v.reused,
                resigned_unchanged: v.resigned_unchanged,
                published_at: v.published_at,
                published_by: v.leader,
                validated_serial: local.last_good.get(name).map(|g| g.serial),
                alarm: local.alarms.get(name).cloned(),
                stale: local.stale.get(name).cloned(),
                last_error: local.last_run.get(name).and_then(|r| r.error.clone()),
                keys: st
                    .zone_keys(name)
                    .map(|k| {
                        let life = z.keyset.keys.get(&k.id);
                        let state = life.map_or("unknown".to_string(), |l| {
                            let u = l.usage();
                            format!(
                                "{:?}{}{}{}",
                                l.goal,
                                if u.publish { " published" } else { "" },
                                if u.sign_dnskey { " signs-dnskey" } else { "" },
                                if u.sign_data { " signs-data" } else { "" }
                            )
                            .to_lowercase()
                        });
                        json!({ "tag": k.tag, "role": k.role, "algorithm": k.algorithm,
                                "state": state, "id": k.id.to_string(), "handle": k.handle })
                    })
                    .collect(),
                key_notes: z.keyset.notes.clone(),
            }
        })
        .collect();
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let learners: Vec<NodeId> = membership.learner_ids().collect();
    let nodes: BTreeMap<String, NodeAddr> = membership
        .nodes()
        .map(|(id, n)| (id.to_string(), n.clone()))
        .collect();
    let replication: Option<BTreeMap<String, Option<u64>>> = m.replication.as_ref().map(|r| {
        r.iter()
            .map(|(id, l)| (id.to_string(), l.as_ref().map(|l| l.index())))
            .collect()
    });
    json!({
        "id": node.id,
        "role": match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        },
        "term": m.current_term,
        "leader": m.current_leader,
        "last_log_index": m.last_log_index,
        "last_applied": m.last_applied.as_ref().map(|l| l.index()),
        "committed": m.local_committed.as_ref().map(|l| l.index()),
        "snapshot": m.snapshot.as_ref().map(|l| l.index()),
        "purged": m.purged.as_ref().map(|l| l.index()),
        "replication": replication,
        "voters": voters,
        "learners": learners,
        "nodes": nodes,
        "keystore": node.keys.describe(),
        "dns": node.cfg.dns.as_ref().map(|d| d.listen.clone()),
        "witness": node.cfg.witness,
        "readiness": readiness,
        "self_fenced": local.self_fenced,
        "fence_block": local.fence_block,
        "now": node.now(),
        "clock_alarm": local.clock_alarm,
        "store": { "id": node.identity.store, "incarnation": format!("{:x}", node.identity.incarnation) },
        "store_check": node.hold.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|h| h.to_string()),
        "stores": st.stores,
        "fenced": st_fenced,
        "zones": zones,
        "last_run": local.last_run,
    })
}
