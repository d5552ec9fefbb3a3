//! The admin API: HTTP/1.1 with JSON bodies, one request per connection.
//!
//! | method | path                      | what                                        |
//! |--------|---------------------------|---------------------------------------------|
//! | GET    | /status                   | this node: role, term, indexes, readiness, zones |
//! | POST   | /init                     | bootstrap the cluster with this node and its peers |
//! | GET    | /zones                    | zones and their current versions            |
//! | POST   | /zones                    | add a zone `{name, file, denial?, algorithm?, csk?}` |
//! | DELETE | /zones/NAME               | remove a zone                               |
//! | POST   | /zones/NAME/reload        | re-read a zone's input now                  |
//! | GET    | /zones/NAME/signed        | the signed zone as this node validated it   |
//! | POST   | /nodes                    | add a node `{id, raft, admin}`: learner, then voter |
//! | DELETE | /nodes/ID                 | remove a node                               |
//! | POST   | /leader/transfer          | `{to}`                                      |
//! | GET    | /audit                    | the replicated audit log                    |
//! | GET    | /zones/NAME/keys          | key states, goals, parent, engine notes     |
//! | POST   | /zones/NAME/keys          | rollover, ds-seen, ds-gone, clock-ok, backup-commit |
//! | GET    | /zones/NAME/backup        | keys not yet backed up                      |
//! | GET    | /zones/NAME/policy-check  | timing audit against the zone and parent   |
//!
//! Commands that change the cluster go to the leader; another node answers 421 with the
//! leader's id and admin address (the CLI follows it). Bind the admin API to loopback or a
//! management network: it has no authentication of its own.

pub mod client;
mod keys;

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::node::{Node, now};
use crate::replica::state::hex;
use crate::replica::{Command, NodeAddr, NodeId, Origin, Outcome, ZoneConfig};

const HEAD_MAX: usize = 64 << 10;
const BODY_MAX: usize = 1 << 20;

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

pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(sock, node).await {
                tracing::debug!("admin connection: {e}");
            }
        });
    }
}

async fn connection(mut sock: TcpStream, node: Arc<Node>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > HEAD_MAX {
            return respond(&mut sock, error(431, "request head too large")).await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, path) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if len > BODY_MAX {
        return respond(&mut sock, error(413, "request body too large")).await;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let reply = handle(&node, &method, &path, &body).await;
    respond(&mut sock, reply).await
}

async fn respond(sock: &mut TcpStream, r: Reply) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.code,
        match r.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            409 => "Conflict",
            421 => "Misdirected Request",
            503 => "Service Unavailable",
            _ => "Error",
        },
        r.content_type,
        r.body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&r.body).await?;
    sock.shutdown().await
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

fn origin(command: String) -> Origin {
    Origin {
        at: now(),
        by: "admin-api".into(),
        command,
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneAdd {
    name: String,
    /// An absolute zone file path …
    file: Option<String>,
    /// … or a hidden primary: `ADDR:PORT [key NAME]`.
    primary: Option<String>,
    denial: Option<String>,
    algorithm: Option<u8>,
    csk: Option<bool>,
    serial: Option<String>,
    output: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    transfer: Vec<String>,
    max_records: Option<u64>,
    /// A key and signing policy (TOML text).
    policy: Option<String>,
}

/// `PATCH /zones/NAME`: what to change; lists replace the zone's lists.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneSet {
    file: Option<String>,
    primary: Option<String>,
    serial: Option<String>,
    output: Option<String>,
    #[serde(default)]
    no_output: bool,
    notify: Option<Vec<String>>,
    transfer: Option<Vec<String>>,
    max_records: Option<u64>,
    /// A new key and signing policy (TOML text): a changed algorithm or key roles starts
    /// the rolls that get there.
    policy: Option<String>,
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
            let remote =
                crate::serve::notify::Remote::parse(p).map_err(|e| format!("primary {e}"))?;
            remote
                .tsig(&node.tsig)
                .map_err(|e| format!("primary {p}: {e}"))?;
            cfg.input = format!("primary:{p}");
        }
        (None, None) if !need_input => {}
        _ => return Err("give exactly one of file and primary".into()),
    }
    if let Some(p) = o.serial {
        crate::node::leader::next_serial(&p, None, 1, 0)?;
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
            let r = crate::serve::notify::Remote::parse(n).map_err(|e| format!("notify {e}"))?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeAdd {
    id: NodeId,
    raft: String,
    admin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    to: NodeId,
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

async fn handle(node: &Arc<Node>, method: &str, path: &str, body: &[u8]) -> Reply {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let writes = method != "GET";
    if writes
        && !matches!(
            parts.as_slice(),
            ["init"] | ["init", "local"] | ["keystore"]
        )
        && !node.is_leader()
    {
        return not_leader(node);
    }
    match (method, parts.as_slice()) {
        ("GET", ["time"]) => json_reply(200, json!({ "now": now() })),
        ("GET", ["status"]) => json_reply(200, crate::blocking(|| status(node))),
        ("POST", ["init"]) => {
            // Every reachable member gets the first entry too, so that none starts with an
            // empty store (an empty store grants no vote: `transport::Blank`).
            let peers: Vec<String> = node.cfg.peers.iter().map(|p| p.admin.clone()).collect();
            crate::blocking(|| {
                for admin in &peers {
                    match client::call(
                        admin,
                        "POST",
                        "/init/local",
                        Some(&json!({})),
                        std::time::Duration::from_secs(5),
                    ) {
                        Ok(a) if a.code == 200 => {}
                        Ok(a) => tracing::info!(%admin, code = a.code, "peer not initialized here"),
                        Err(e) => tracing::info!(%admin, "peer not initialized here: {e}"),
                    }
                }
            });
            init_here(node).await
        }
        ("POST", ["init", "local"]) => init_here(node).await,
        ("GET", ["zones"]) => json_reply(200, crate::blocking(|| status(node))["zones"].clone()),
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
            if let Err(e) = crate::node::leader::denial_of(&cfg) {
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
            let o = origin(format!("zone add {} {}", cfg.name, cfg.input));
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
            let o = origin(format!("zone set {name}"));
            propose(
                node,
                Command::SetZone {
                    zone: cfg,
                    origin: o,
                },
            )
            .await
        }
        ("DELETE", ["zones", name]) => {
            let name = absolute(name);
            propose(
                node,
                Command::RemoveZone {
                    name: name.clone(),
                    origin: origin(format!("zone remove {name}")),
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
                    origin: origin(format!("zone reload {name}")),
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
            let addr = NodeAddr {
                raft: req.raft.clone(),
                admin: req.admin.clone(),
            };
            if let Err(e) = node.raft.add_learner(req.id, addr, true).await {
                return error(503, format!("add node {} as learner: {e}", req.id));
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
                    origin: origin(format!("node add {} {}", req.id, req.raft)),
                })
                .await;
            json_reply(200, json!({ "ok": true, "added": req.id }))
        }
        ("DELETE", ["nodes", id]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            if let Err(e) = check_majority_without(node, id, "remove") {
                return error(409, e);
            }
            let ids: std::collections::BTreeSet<NodeId> = [id].into();
            if let Err(e) = node
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
                    origin: origin(format!("node remove {id}")),
                })
                .await;
            json_reply(200, json!({ "ok": true, "removed": id }))
        }
        ("POST", ["leader", "transfer"]) => {
            let req: Transfer = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let _ = node
                .raft
                .client_write(Command::Audit {
                    origin: origin(format!("leader transfer --to {}", req.to)),
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
            let manual = serde_json::from_slice::<Value>(body)
                .ok()
                .is_some_and(|v| v["manual"] == true);
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
                    origin: origin(format!(
                        "node fence {id}{}",
                        if manual { " --manual" } else { "" }
                    )),
                },
            )
            .await;
            if ok {
                r
            } else {
                error(502, format!("fence of node {id} failed: {outcome}"))
            }
        }
        ("POST", ["nodes", id, "unfence"]) => {
            let Ok(id) = id.parse::<NodeId>() else {
                return error(400, format!("bad node id {id:?}"));
            };
            // Letting a node back that still acts as leader would make two active signers.
            let admin = {
                let m = node.raft.metrics().borrow_watched().clone();
                m.membership_config
                    .membership()
                    .nodes()
                    .find(|(n, _)| **n == id)
                    .map(|(_, a)| a.admin.clone())
            };
            if let Some(admin) = admin {
                let claims = tokio::task::spawn_blocking(move || {
                    crate::admin::client::call(
                        &admin,
                        "GET",
                        "/status",
                        None,
                        std::time::Duration::from_secs(2),
                    )
                    .ok()
                    .map(|a| a.json())
                    .is_some_and(|s| s["role"] == "leader")
                })
                .await
                .unwrap_or(false);
                if claims && id != node.id {
                    return error(
                        409,
                        format!(
                            "unfence node {id}: it still acts as leader; that would make two active signers"
                        ),
                    );
                }
            }
            propose(
                node,
                Command::Unfence {
                    target: id,
                    origin: origin(format!("node unfence {id}")),
                },
            )
            .await
        }
        ("POST", ["keystore"]) => {
            // Drills: take this node's keystore away (or give it back), then re-test at once.
            let available = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["available"].as_bool());
            let Some(available) = available else {
                return error(400, "request body: {\"available\": true|false}");
            };
            node.keys
                .available
                .store(available, std::sync::atomic::Ordering::SeqCst);
            let n = node.clone();
            if let Ok(r) =
                tokio::task::spawn_blocking(move || crate::node::check::check_readiness(&n)).await
            {
                node.local().readiness = r;
            }
            // Recorded through the leader (this node may be a follower).
            let what = format!("keystore of node {} available={available}", node.id);
            if node.is_leader() {
                let _ = node
                    .raft
                    .client_write(Command::Audit {
                        origin: origin(what),
                    })
                    .await;
            } else {
                let admin = own_admin(node);
                let body = json!({ "command": what });
                let _ = tokio::task::spawn_blocking(move || {
                    crate::admin::client::call_leader(
                        &admin,
                        "POST",
                        "/audit",
                        Some(&body),
                        std::time::Duration::from_secs(10),
                    )
                })
                .await;
            }
            json_reply(200, json!({ "ok": true, "available": available }))
        }
        ("POST", ["audit"]) => {
            let Some(command) = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["command"].as_str().map(str::to_string))
            else {
                return error(400, "request body: {\"command\": \"…\"}");
            };
            propose(
                node,
                Command::Audit {
                    origin: origin(command),
                },
            )
            .await
        }
        ("GET", ["audit"]) => json_reply(200, node.sm.with(|st| json!(st.audit))),
        (m, ["zones", name, what @ ("keys" | "backup" | "policy-check")]) => {
            keys::handle(node, m, name, what, body).await
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

/// This node's own admin address (for requests it sends on to the leader).
fn own_admin(node: &Node) -> String {
    node.cfg.admin_listen.clone()
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
                token: z.current.as_ref().map(|v| v.token),
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
        "now": now(),
        "clock_alarm": local.clock_alarm,
        "fenced": st_fenced,
        "zones": zones,
        "last_run": local.last_run,
    })
}
