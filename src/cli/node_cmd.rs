//! `quorumsign node …`: running a node, and membership changes, fencing and rejoin through
//! the admin API.

use std::time::Duration;

use clap::Subcommand;

use super::cluster_cmd::*;
use super::zone_cmd::zone_serials;
use crate::admin::api::{self, body};
use crate::admin::client::{call, call_leader};
use crate::config::NodeConfig;

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

pub(super) fn replace(
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
pub(super) fn wait_serving(
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
