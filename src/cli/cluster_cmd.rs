//! Cluster commands: `node`, `cluster`, `leader`, `zone`. All but `node run` and
//! `cluster certs` talk to a node's admin API (`--admin`, or QUORUMSIGN_ADMIN): its Unix
//! socket, or `https://HOST:PORT` with an operator certificate (`--admin-cert`,
//! `--admin-key`, `--admin-ca`).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin::api::{self, body};
use crate::admin::client::{Answer, call, call_leader};

pub(super) const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Clone)]
pub struct AdminArgs {
    /// Admin API of any node: its socket path or https://HOST:PORT.
    #[arg(
        long,
        env = "QUORUMSIGN_ADMIN",
        default_value = "/run/quorumsign/admin.sock"
    )]
    pub admin: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Make a lab CA and node certificates (node-<id>.quorumsign), or (`certs operator`)
    /// an operator certificate with a role.
    #[command(args_conflicts_with_subcommands = true)]
    Certs {
        #[command(subcommand)]
        kind: Option<CertsKind>,
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Node ids, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u64>,
        /// A further name of one node's certificate, for its HTTPS admin listener:
        /// `ID=HOST` (a host name or an IP address; repeat for several).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Bootstrap: the node at --admin initialises the cluster with itself and its peers.
    Init {
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Every node's role, term, applied index, lag and readiness; every zone's version.
    Status {
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Try an RPC connection with a given certificate (checks admission; for tests).
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        ca: std::path::PathBuf,
        #[arg(long)]
        cert: std::path::PathBuf,
        #[arg(long)]
        key: std::path::PathBuf,
        /// The node id to claim.
        #[arg(long = "as")]
        as_id: u64,
        /// The node to reach and its Raft address.
        #[arg(long)]
        to: u64,
        #[arg(long)]
        addr: String,
    },
    /// Append to a Raft log store until killed, printing each acknowledged index (crash tests).
    #[cfg(feature = "testkit")]
    #[command(hide = true)]
    StoreTorture {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// The replicated audit log of operator commands.
    Audit {
        #[command(flatten)]
        a: AdminArgs,
    },
}

#[derive(Subcommand)]
pub enum CertsKind {
    /// An operator's client certificate for the HTTPS admin API, issued by the operator CA
    /// (`operator-ca.pem`, made in --dir if missing), naming its role.
    Operator {
        #[arg(long)]
        dir: std::path::PathBuf,
        /// The operator's name (the certificate's common name, as audited).
        #[arg(long)]
        name: String,
        /// monitor, operator or security-officer.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
pub enum LeaderCmd {
    /// Hand leadership to another voter.
    Transfer {
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        a: AdminArgs,
    },
}

pub(crate) fn ok(
    ans: Answer,
    a: &AdminArgs,
    human: impl FnOnce(&Value) -> String,
) -> Result<(), String> {
    let v = ans.json();
    if ans.code != 200 {
        return Err(ans.message());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("{}", human(&v));
    }
    Ok(())
}

pub fn leader(cmd: LeaderCmd) -> Result<(), String> {
    let LeaderCmd::Transfer { to, a } = cmd;
    let ans = call_leader(
        &a.admin,
        "POST",
        "/leader/transfer",
        Some(&body(&api::LeaderTransfer { to })),
        TIMEOUT,
    )?;
    ok(ans, &a, |_| {
        format!("leadership handed to node {to}; `cluster status` shows when it has taken over")
    })
}

pub fn cluster(cmd: ClusterCmd) -> Result<(), String> {
    match cmd {
        ClusterCmd::Certs {
            kind: Some(CertsKind::Operator { dir, name, role }),
            ..
        } => {
            let role = crate::access::Role::parse(&role)?;
            for f in crate::transport::certs::operator(&dir, &name, role)? {
                println!("{f}");
            }
            Ok(())
        }
        ClusterCmd::Certs {
            kind: None,
            dir,
            nodes,
            hosts,
        } => {
            let dir = dir.ok_or("--dir: give the directory of the certificates")?;
            if nodes.is_empty() {
                return Err("--nodes: give at least one node id".into());
            }
            let mut names: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
            for h in &hosts {
                let (id, host) = h
                    .split_once('=')
                    .and_then(|(i, n)| Some((i.parse::<u64>().ok()?, n)))
                    .ok_or_else(|| format!("--host {h:?}: expected ID=HOST"))?;
                names.entry(id).or_default().push(host.to_string());
            }
            let files = crate::transport::certs::make(&dir, &nodes, &|id| {
                names.get(&id).cloned().unwrap_or_default()
            })?;
            for f in files {
                println!("{f}");
            }
            Ok(())
        }
        ClusterCmd::Probe {
            ca,
            cert,
            key,
            as_id,
            to,
            addr,
        } => {
            let tls = crate::transport::Tls::load(&crate::transport::TlsFiles { ca, cert, key })
                .map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(crate::transport::dial(&tls.client, as_id, to, &addr))
                .map(|_| println!("welcomed by node {to} as node {as_id}"))
                .map_err(|e| format!("refused: {e}"))
        }
        #[cfg(feature = "testkit")]
        ClusterCmd::StoreTorture { dir } => store_torture(&dir),
        ClusterCmd::Init { a } => {
            let ans = call(&a.admin, "POST", "/init", None, TIMEOUT)?;
            ok(ans, &a, |v| {
                format!("cluster initialised with nodes {}", v["members"])
            })
        }
        ClusterCmd::Audit { a } => {
            let ans = call(&a.admin, "GET", "/audit", None, TIMEOUT)?;
            ok(ans, &a, |v| {
                let mut s = String::new();
                for r in v.as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "{:>8} term {:<4} {}  {}  {}\n",
                        r["index"],
                        r["term"],
                        r["origin"]["at"],
                        r["origin"]["command"].as_str().unwrap_or(""),
                        r["outcome"].as_str().unwrap_or("")
                    ));
                }
                s.trim_end().to_string()
            })
        }
        ClusterCmd::Status { a } => {
            let v = gather_status(&a.admin)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", format_status(&v));
            }
            Ok(())
        }
    }
}

/// The status of every member, as the node at `admin` gathers it over the node transport.
pub fn gather_status(admin: &str) -> Result<Value, String> {
    let ans = call(admin, "GET", "/cluster", None, Duration::from_secs(15))?;
    if ans.code != 200 {
        return Err(ans.message());
    }
    let v = ans.json();
    let nodes: Vec<Value> = v["members"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(id, s)| {
                    if s.is_null() {
                        json!({ "id": id.parse::<u64>().unwrap_or(0), "unreachable": "no answer over the node transport" })
                    } else {
                        s.clone()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({ "nodes": nodes }))
}

pub(super) fn num(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |x| x.to_string())
}

pub fn format_status(v: &Value) -> String {
    let nodes: Vec<&Value> = v["nodes"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let leader_log = nodes
        .iter()
        .find(|n| n["role"] == "leader")
        .and_then(|n| n["last_log_index"].as_u64());
    let mut s = format!(
        "{:<5} {:<10} {:>5} {:>8} {:>5} {:<6} admin\n",
        "node", "role", "term", "applied", "lag", "ready"
    );
    for n in &nodes {
        if let Some(e) = n["unreachable"].as_str() {
            s.push_str(&format!("{:<5} {:<10} {e}\n", num(&n["id"]), "DOWN"));
            continue;
        }
        let applied = n["last_applied"].as_u64();
        let lag = match (leader_log, applied) {
            (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
            _ => "-".into(),
        };
        let r = &n["readiness"];
        let ready = if r["checked_at"].as_u64().unwrap_or(0) == 0 {
            "?".to_string()
        } else if r["ready"].as_bool().unwrap_or(false) {
            "yes".to_string()
        } else {
            "NO".to_string()
        };
        let admin = n["nodes"][n["id"].to_string()]["admin"]
            .as_str()
            .unwrap_or("")
            .to_string();
        s.push_str(&format!(
            "{:<5} {:<10} {:>5} {:>8} {:>5} {:<6} {}\n",
            num(&n["id"]),
            n["role"].as_str().unwrap_or("?"),
            num(&n["term"]),
            applied.map_or("-".into(), |a| a.to_string()),
            lag,
            ready,
            admin
        ));
        for p in r["problems"].as_array().into_iter().flatten() {
            s.push_str(&format!("      readiness: {}\n", p.as_str().unwrap_or("")));
        }
        if let Some(h) = n["store_check"].as_str() {
            s.push_str(&format!("      HELD: {h}\n"));
        }
    }
    let Some(any) = nodes.iter().find(|n| n["zones"].is_array()) else {
        return s;
    };
    s.push_str(&format!(
        "\n{:<24} {:>12} {:<17} {:>7} {:>7} {:>9} {:>8}  validated on\n",
        "zone", "serial", "hash", "signed", "reused", "re-signed", "rrsets"
    ));
    for z in any["zones"].as_array().into_iter().flatten() {
        let name = z["name"].as_str().unwrap_or("");
        let mut on = Vec::new();
        for n in &nodes {
            for nz in n["zones"].as_array().into_iter().flatten() {
                if nz["name"] == name {
                    let mark = if nz["alarm"].is_string() {
                        "ALARM"
                    } else if nz["stale"].is_string() {
                        "stale"
                    } else if nz["validated_serial"] == z["serial"] && nz["hash"] == z["hash"] {
                        "ok"
                    } else {
                        "pending"
                    };
                    on.push(format!("{}:{mark}", n["id"]));
                }
            }
        }
        s.push_str(&format!(
            "{:<24} {:>12} {:<17} {:>7} {:>7} {:>9} {:>8}  {}\n",
            name,
            z["serial"].as_u64().map_or("-".into(), |x| x.to_string()),
            z["hash"].as_str().map_or("-", |h| &h[..16]),
            num(&z["signed"]),
            num(&z["reused"]),
            num(&z["resigned_unchanged"]),
            num(&z["rrsets"]),
            on.join(" ")
        ));
        for note in z["key_notes"].as_array().into_iter().flatten() {
            s.push_str(&format!("  keys: {}\n", note.as_str().unwrap_or("")));
        }
        for n in &nodes {
            for nz in n["zones"].as_array().into_iter().flatten() {
                if nz["name"] == name
                    && let Some(a) = nz["alarm"].as_str()
                {
                    s.push_str(&format!("  node {} ALARM: {a}\n", n["id"]));
                }
                if nz["name"] == name
                    && let Some(a) = nz["stale"].as_str()
                {
                    s.push_str(&format!("  node {} not answering: {a}\n", n["id"]));
                }
            }
        }
    }
    s
}

/// Appends batches of entries and prints `acked N` once each batch is reported durable.
#[cfg(feature = "testkit")]
pub(super) fn store_torture(dir: &std::path::Path) -> Result<(), String> {
    use crate::replica::{Command, Origin, TypeConfig};
    use openraft::alias::{EntryOf, LogIdOf, VoteOf};
    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut log = crate::store::LogStore::open(dir).map_err(|e| e.to_string())?;
        let mut next = log
            .get_log_state()
            .await
            .map_err(|e| e.to_string())?
            .last_log_id
            .map_or(1, |l| l.index() + 1);
        let mut term = 1;
        loop {
            term += 1;
            log.save_vote(&VoteOf::<TypeConfig>::new(term, 1))
                .await
                .map_err(|e| e.to_string())?;
            println!("vote {term}");
            for _ in 0..50 {
                let batch: Vec<EntryOf<TypeConfig>> = (next..next + 20)
                    .map(|i| {
                        let lid = LogIdOf::<TypeConfig>::new(
                            openraft::impls::leader_id_adv::LeaderId {
                                term: 1,
                                node_id: 1,
                            },
                            i,
                        );
                        // Every seventh entry is large enough to live in a file of
                        // its own (`store::SPILL_BYTES`).
                        let len = if i % 7 == 0 { 96 << 10 } else { 512 };
                        let cmd = Command::Audit {
                            origin: Origin {
                                at: i,
                                by: "torture".into(),
                                command: "x".repeat(len),
                            },
                        };
                        EntryOf::<TypeConfig>::new_normal(lid, cmd)
                    })
                    .collect();
                let (tx, rx) = TypeConfig::oneshot();
                log.append(batch, IOFlushed::signal(tx))
                    .await
                    .map_err(|e| e.to_string())?;
                rx.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                next += 20;
                println!("acked {}", next - 1);
                std::io::stdout().flush().ok();
            }
        }
    })
}
