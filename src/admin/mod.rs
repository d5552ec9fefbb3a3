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
mod nodes;
pub mod server;
mod zones;

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
    match parts.first().copied() {
        Some("zones") => zones::handle(node, caller, method, &parts, path, body).await,
        Some("nodes" | "keystore" | "leader") => {
            nodes::handle(node, caller, method, &parts, path, body, forwarded).await
        }
        _ => match (method, parts.as_slice()) {
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
            _ => error(404, format!("no such endpoint: {method} {path}")),
        },
    }
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
