//! Cluster commands: `node`, `cluster`, `leader`, `zone`. All but `node run` and
//! `cluster certs` talk to a node's admin API (`--admin`, or QUORUMSIGN_ADMIN): its Unix
//! socket, or `https://HOST:PORT` with an operator certificate (`--admin-cert`,
//! `--admin-key`, `--admin-ca`).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin::api::{self, body};
use crate::admin::client::{Answer, call, call_leader};
use crate::config::NodeConfig;

const TIMEOUT: Duration = Duration::from_secs(60);

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
pub enum NodeCmd {
    /// Run a signer node (until SIGINT/SIGTERM).
    Run {
        #[arg(long)]
        config: std::path::PathBuf,
        /// Only check the configuration and explain what is wrong with it.
        #[arg(long)]
        check: bool,
    },
    /// Add a node: learner until it has caught up, then voter.
    Add {
        #[arg(long)]
        id: u64,
        /// Its Raft address.
        #[arg(long)]
        raft: String,
        /// Its HTTPS admin address (https://HOST:PORT), shown to operators.
        #[arg(long = "node-admin")]
        node_admin: Option<String>,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Remove a node from the cluster (also undoes an add that did not finish).
    Remove {
        id: u64,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Fence a node: the leader runs the fence hook against it and records the outcome.
    Fence {
        id: u64,
        /// Record that you fenced it yourself (no hook is run): lets a leader blocked by a
        /// failed fence sign again.
        #[arg(long)]
        manual: bool,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// A node whose store was restored from an older copy (`cluster status` says so): it
    /// wipes its store (kept aside under DATA/restored-TIME/) and stops; started again by
    /// its supervisor, it re-learns everything from the leader. Waits until it serves
    /// every zone's current version.
    Rejoin {
        id: u64,
        /// Wipe it even when its store is not known to be an older copy.
        #[arg(long)]
        force: bool,
        /// How long to wait for it to serve again, seconds.
        #[arg(long, default_value_t = 600)]
        wait_s: u64,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Let a fenced node back (after you have undone the fence).
    Unfence {
        id: u64,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Replace a failed node: fence it, bring in NEW (catches up from a snapshot), wait until
    /// NEW serves every zone's current version, then remove the old one.
    Replace {
        id: u64,
        /// The new node's id.
        #[arg(long = "with")]
        with: u64,
        /// The new node's Raft address.
        #[arg(long)]
        raft: String,
        /// The new node's HTTPS admin address (https://HOST:PORT), shown to operators.
        #[arg(long = "node-admin")]
        node_admin: Option<String>,
        /// The old node was fenced by hand (no hook is run).
        #[arg(long)]
        manual: bool,
        #[command(flatten)]
        a: AdminArgs,
    },
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

#[derive(Subcommand)]
pub enum ZoneCmd {
    /// Add a zone; the leader makes its keys and signs it.
    Add {
        name: String,
        /// Unsigned zone file (readable by every node at the same path).
        #[arg(long, conflicts_with = "primary", required_unless_present = "primary")]
        file: Option<std::path::PathBuf>,
        /// Or a hidden primary to transfer the unsigned zone from: `ADDR:PORT [key NAME]`.
        #[arg(long)]
        primary: Option<String>,
        /// SOA serial policy: keep, increment, unixtime or datecounter.
        #[arg(long, default_value = "increment")]
        serial: String,
        /// Signed zone file the leader writes after each version (absolute path).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// Secondary to NOTIFY: `ADDR:PORT [key NAME]` (repeat for several).
        #[arg(long)]
        notify: Vec<String>,
        /// Who may transfer the signed zone: `PREFIX key NAME` (repeat for several).
        #[arg(long)]
        transfer: Vec<String>,
        /// Largest input accepted, in records.
        #[arg(long)]
        max_records: Option<u64>,
        /// nsec, nsec3 or nsec3-optout (default: the policy's, nsec3).
        #[arg(long)]
        denial: Option<String>,
        /// Algorithm (default: the policy's, 13).
        #[arg(long)]
        algorithm: Option<u8>,
        /// One combined signing key instead of KSK + ZSK.
        #[arg(long)]
        csk: bool,
        /// Key and signing policy file (TOML; `quorumsign policy default` prints one).
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Change a zone's input or publication options; lists given replace the zone's lists.
    Set {
        name: String,
        #[arg(long, conflicts_with = "primary")]
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        primary: Option<String>,
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, conflicts_with = "no_output")]
        output: Option<std::path::PathBuf>,
        /// Stop writing the file output.
        #[arg(long)]
        no_output: bool,
        #[arg(long, conflicts_with = "no_notify")]
        notify: Vec<String>,
        /// Notify nobody.
        #[arg(long)]
        no_notify: bool,
        #[arg(long, conflicts_with = "no_transfer")]
        transfer: Vec<String>,
        /// Allow no transfers.
        #[arg(long)]
        no_transfer: bool,
        #[arg(long)]
        max_records: Option<u64>,
        /// A new key and signing policy file: a changed algorithm or key roles starts
        /// the rolls that get there.
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Remove a zone: it is no longer signed or served. Its keys are kept, retired, until
    /// a security officer runs `keys purge`.
    Remove {
        name: String,
        /// The zone's name again.
        #[arg(long)]
        confirm: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    List {
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Re-read the zone's input now.
    Reload {
        name: String,
        #[command(flatten)]
        a: AdminArgs,
    },
    /// Print the signed zone as the node at --admin validated it.
    Show {
        name: String,
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

pub fn node(cmd: NodeCmd) -> Result<(), String> {
    match cmd {
        NodeCmd::Run { config, check } => {
            let cfg = NodeConfig::load(&config)?;
            if check {
                println!(
                    "{}: ok (node {}, raft {}, admin socket {}, admin https {}, {} peers, keystore {})",
                    config.display(),
                    cfg.id,
                    cfg.raft_listen,
                    cfg.admin.socket.display(),
                    cfg.admin_listen.as_deref().unwrap_or("-"),
                    cfg.peers.len(),
                    cfg.keystore
                );
                return Ok(());
            }
            super::init_tracing(&cfg.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(crate::daemon::run(cfg))
        }
        NodeCmd::Add {
            id,
            raft,
            node_admin,
            a,
        } => {
            let req = api::NodeAdd {
                id,
                raft,
                admin: node_admin,
            };
            let ans = call_leader(
                &a.admin,
                "POST",
                "/nodes",
                Some(&body(&req)),
                Duration::from_secs(600),
            )?;
            ok(ans, &a, |_| {
                format!("node {id} added (caught up as learner, now a voter)")
            })
        }
        NodeCmd::Remove { id, a } => {
            let ans = call_leader(&a.admin, "DELETE", &format!("/nodes/{id}"), None, TIMEOUT)?;
            ok(ans, &a, |_| format!("node {id} removed"))
        }
        NodeCmd::Fence { id, manual, a } => {
            let ans = call_leader(
                &a.admin,
                "POST",
                &format!("/nodes/{id}/fence"),
                Some(&body(&api::Fence { manual })),
                std::time::Duration::from_secs(300),
            )?;
            ok(ans, &a, |_| {
                if manual {
                    format!("node {id} recorded as fenced by the operator")
                } else {
                    format!("node {id} fenced")
                }
            })
        }
        NodeCmd::Replace {
            id,
            with,
            raft,
            node_admin,
            manual,
            a,
        } => replace(id, with, &raft, node_admin.as_deref(), manual, &a),
        NodeCmd::Rejoin {
            id,
            force,
            wait_s,
            a,
        } => {
            let ans = call_leader(
                &a.admin,
                "POST",
                &format!("/nodes/{id}/rejoin"),
                Some(&body(&api::Rejoin { force })),
                TIMEOUT,
            )?;
            if ans.code != 200 {
                return Err(ans.message());
            }
            println!("node {id} wipes its store and stops; its supervisor starts it again");
            let st = call(&a.admin, "GET", "/status", None, TIMEOUT)?.json();
            wait_serving(&a, id, &zone_serials(&st), Duration::from_secs(wait_s))?;
            println!("node {id} re-learned the cluster's state and serves every zone");
            Ok(())
        }
        NodeCmd::Unfence { id, a } => {
            let ans = call_leader(
                &a.admin,
                "POST",
                &format!("/nodes/{id}/unfence"),
                None,
                TIMEOUT,
            )?;
            ok(ans, &a, |_| format!("node {id} unfenced"))
        }
    }
}

fn replace(
    id: u64,
    with: u64,
    raft: &str,
    node_admin: Option<&str>,
    manual: bool,
    a: &AdminArgs,
) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let step = |msg: String| println!("[{:>7.3}s] {msg}", t0.elapsed().as_secs_f64());
    if id == with {
        return Err("the new node needs its own id".into());
    }
    let st = call(&a.admin, "GET", "/status", None, TIMEOUT)?.json();
    if st["nodes"][with.to_string()].is_object() {
        return Err(format!("node {with} is already a member"));
    }
    if !st["nodes"][id.to_string()].is_object() {
        return Err(format!("node {id} is not a member"));
    }
    // 1. Fence the old node (unless it already is).
    let fenced = st["fenced"][id.to_string()].is_u64();
    if fenced && !manual {
        step(format!("node {id} is already fenced"));
    } else {
        let ans = call_leader(
            &a.admin,
            "POST",
            &format!("/nodes/{id}/fence"),
            Some(&body(&api::Fence { manual })),
            Duration::from_secs(300),
        )?;
        if ans.code != 200 {
            return Err(format!(
                "fence node {id}: {}; nothing else changed",
                ans.message()
            ));
        }
        step(format!(
            "node {id} fenced{}",
            if manual { " (by hand)" } else { "" }
        ));
    }
    // 2. The new node joins: learner until caught up (snapshot), then voter.
    let ans = call_leader(
        &a.admin,
        "POST",
        "/nodes",
        Some(&body(&api::NodeAdd {
            id: with,
            raft: raft.to_string(),
            admin: node_admin.map(str::to_string),
        })),
        Duration::from_secs(600),
    )?;
    if ans.code != 200 {
        return Err(format!("add node {with}: {}", ans.message()));
    }
    step(format!("node {with} joined as a voter"));
    // 3. It serves what the leader has.
    let leader_zones = zone_serials(&call(&a.admin, "GET", "/status", None, TIMEOUT)?.json());
    wait_serving(a, with, &leader_zones, Duration::from_secs(600))
        .map_err(|e| format!("{e}; node {id} stays a member"))?;
    step(format!(
        "node {with} validated every zone ({})",
        leader_zones.len()
    ));
    // 4. The old node leaves.
    let ans = call_leader(&a.admin, "DELETE", &format!("/nodes/{id}"), None, TIMEOUT)?;
    if ans.code != 200 {
        return Err(format!("remove node {id}: {}", ans.message()));
    }
    step(format!("node {id} removed; node {with} replaces it"));
    Ok(())
}

/// Waits until node `id` (asked through the node at `a.admin`) has validated at least
/// `zones`' serials.
fn wait_serving(
    a: &AdminArgs,
    id: u64,
    zones: &[(String, u64)],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let ok = call(&a.admin, "GET", "/cluster", None, TIMEOUT)
            .ok()
            .map(|ans| ans.json()["members"][id.to_string()].clone())
            .is_some_and(|s| {
                s["store_check"].is_null()
                    && zones.iter().all(|(z, serial)| {
                        s["zones"].as_array().is_some_and(|zs| {
                            zs.iter().any(|x| {
                                x["name"] == z.as_str()
                                    && x["validated_serial"].as_u64().is_some_and(|v| v >= *serial)
                            })
                        })
                    })
            });
        if ok {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "node {id} did not validate every zone in {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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

pub fn zone(cmd: ZoneCmd) -> Result<(), String> {
    match cmd {
        ZoneCmd::Add {
            name,
            file,
            primary,
            serial,
            output,
            notify,
            transfer,
            max_records,
            denial,
            algorithm,
            csk,
            policy,
            a,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let csk = csk.then_some(true);
            let file = file
                .map(|f| std::fs::canonicalize(&f).map_err(|e| format!("{}: {e}", f.display())))
                .transpose()?
                .map(|f| f.display().to_string());
            let output = output.map(|o| {
                if o.is_absolute() {
                    o
                } else {
                    std::env::current_dir().unwrap_or_default().join(o)
                }
            });
            let req = api::ZoneAdd {
                name: name.clone(),
                file,
                primary,
                denial,
                algorithm,
                csk,
                serial: Some(serial),
                output: output.map(|o| o.display().to_string()),
                notify,
                transfer,
                max_records,
                policy,
            };
            let body = body(&req);
            let ans = call_leader(&a.admin, "POST", "/zones", Some(&body), TIMEOUT)?;
            ok(ans, &a, |_| {
                format!("zone {name} added; the leader signs it now")
            })
        }
        ZoneCmd::Set {
            name,
            file,
            primary,
            serial,
            output,
            no_output,
            notify,
            no_notify,
            transfer,
            no_transfer,
            max_records,
            policy,
            a,
        } => {
            let policy = read_policy(policy.as_deref())?;
            let file = file
                .map(|f| std::fs::canonicalize(&f).map_err(|e| format!("{}: {e}", f.display())))
                .transpose()?
                .map(|f| f.display().to_string());
            let abs = |o: std::path::PathBuf| {
                if o.is_absolute() {
                    o
                } else {
                    std::env::current_dir().unwrap_or_default().join(o)
                }
            };
            let list = |v: Vec<String>, none: bool| {
                if none {
                    Some(Vec::new())
                } else if v.is_empty() {
                    None
                } else {
                    Some(v)
                }
            };
            let req = api::ZoneSet {
                file,
                primary,
                serial,
                output: output.map(|o| abs(o).display().to_string()),
                no_output,
                notify: list(notify, no_notify),
                transfer: list(transfer, no_transfer),
                max_records,
                policy,
            };
            let body = body(&req);
            let ans = call_leader(
                &a.admin,
                "PATCH",
                &format!("/zones/{name}"),
                Some(&body),
                TIMEOUT,
            )?;
            ok(ans, &a, |_| format!("zone {name} changed"))
        }
        ZoneCmd::Remove { name, confirm, a } => {
            let ans = call_leader(
                &a.admin,
                "DELETE",
                &format!("/zones/{name}"),
                Some(&body(&api::Confirm { confirm })),
                TIMEOUT,
            )?;
            ok(ans, &a, |_| {
                format!("zone {name} removed; its keys are kept retired (keys purge removes them)")
            })
        }
        ZoneCmd::Reload { name, a } => {
            let ans = call_leader(
                &a.admin,
                "POST",
                &format!("/zones/{name}/reload"),
                None,
                TIMEOUT,
            )?;
            ok(ans, &a, |_| format!("zone {name}: reload requested"))
        }
        ZoneCmd::List { a } => {
            let ans = call(&a.admin, "GET", "/zones", None, TIMEOUT)?;
            ok(ans, &a, |v| {
                let mut s = format!(
                    "{:<28} {:>12} {:<18} {:<12} input\n",
                    "zone", "serial", "hash", "denial"
                );
                for z in v.as_array().into_iter().flatten() {
                    s.push_str(&format!(
                        "{:<28} {:>12} {:<18} {:<12} {}\n",
                        z["name"].as_str().unwrap_or(""),
                        z["serial"].as_u64().map_or("-".into(), |x| x.to_string()),
                        z["hash"].as_str().map_or("-", |h| &h[..16]),
                        z["denial"].as_str().unwrap_or(""),
                        z["input"].as_str().unwrap_or("")
                    ));
                }
                s.trim_end().to_string()
            })
        }
        ZoneCmd::Show { name, a } => {
            let ans = call(
                &a.admin,
                "GET",
                &format!("/zones/{name}/signed"),
                None,
                TIMEOUT,
            )?;
            if ans.code != 200 {
                return Err(ans.message());
            }
            use std::io::Write;
            std::io::stdout()
                .write_all(&ans.body)
                .map_err(|e| e.to_string())
        }
    }
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

/// (zone, current serial) of every zone in one node's status.
pub fn zone_serials(status: &Value) -> Vec<(String, u64)> {
    status["zones"]
        .as_array()
        .map(|zs| {
            zs.iter()
                .filter_map(|z| Some((z["name"].as_str()?.to_string(), z["serial"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
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

fn num(v: &Value) -> String {
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
fn store_torture(dir: &std::path::Path) -> Result<(), String> {
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

/// A policy file's text, checked here so that a bad file is explained with its path.
pub(crate) fn read_policy(path: Option<&std::path::Path>) -> Result<Option<String>, String> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::kasp::Policy::from_toml(&text, &path.display().to_string())?;
    Ok(Some(text))
}
