//! The node process: starts the parts of a node (store, state machine, Raft, transport,
//! admin API, DNS server, the leader's and the follower's loops) and wires them together,
//! then runs until SIGINT or SIGTERM. Nothing else starts them; nothing below imports this.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;

use crate::config::NodeConfig;
use crate::node::*;
use crate::replica::Raft;
use crate::replica::machine::StateMachine;
use crate::store::LogStore;
use crate::transport::{self, Network, Tls};

/// Starts a node and runs until SIGINT or SIGTERM.
pub async fn run(cfg: NodeConfig) -> Result<(), String> {
    // Everything the node creates (store, snapshots, spill files) is its own alone; the
    // few public files (a signed zone's output) set their mode themselves.
    // SAFETY: umask only changes the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    if !cfg.data_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.data_dir)
            .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    }
    for w in cfg.exposed_secrets() {
        tracing::warn!("{w}");
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg.data_dir)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data_dir {} is open to group or others (mode {mode:o}); chmod 700 it",
                cfg.data_dir.display()
            );
        }
    }
    let _lock = lock_data_dir(&cfg.data_dir)?;
    restore::wipe_if_marked(&cfg.data_dir)?;
    let tls = Tls::load(&cfg.tls_files()).map_err(|e| e.to_string())?;
    let log = LogStore::open(&cfg.data_dir.join("raft")).map_err(|e| format!("raft log: {e}"))?;
    let log_store = log.clone();
    let sm = StateMachine::open(&cfg.data_dir.join("state")).map_err(|e| format!("state: {e}"))?;
    let clock = crate::runtime::Clock::wall();
    let keys = KeyResolver::new(&cfg, &clock)?;
    let mut config = raft_config(&cfg)?;
    // Held (see `restore`) until the store check passes: no election either.
    config.enable_elect = false;
    let network = Network {
        me: cfg.id,
        tls: tls.client.clone(),
    };
    let raft = Raft::new(cfg.id, Arc::new(config), network, log, sm.clone())
        .await
        .map_err(|e| format!("raft: {e}"))?;
    let raft_listener = tokio::net::TcpListener::bind(&cfg.raft_listen)
        .await
        .map_err(|e| format!("raft_listen {}: {e}", cfg.raft_listen))?;
    let admin_listeners = crate::admin::server::bind(&cfg).await?;
    // Drawn once nothing else can stop the start (a restart loop would use up the
    // incarnations a store remembers).
    let identity = log_store
        .begin_incarnation()
        .map_err(|e| format!("raft log: {e}"))?;
    let node = Arc::new(Node {
        id: cfg.id,
        clock,
        cfg: cfg.clone(),
        raft: raft.clone(),
        sm,
        keys,
        local: Mutex::new(Local {
            served: kept::load(&cfg.data_dir.join("served")),
            ..Default::default()
        }),
        tsig: cfg.tsig_keys()?,
        contact: Default::default(),
        peers: Arc::new(TlsPeers {
            me: cfg.id,
            tls: tls.client.clone(),
        }),
        adopted: std::sync::atomic::AtomicBool::new(identity.adopted),
        identity,
        log_store: Some(log_store),
        hold: Arc::new(Mutex::new(Some(transport::Held::Checking))),
    });
    let admit_node = node.clone();
    let admit: transport::Admit = Arc::new(move |id| admit_node.admits(id));
    let blank: transport::Blank = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let m = raft.metrics().borrow_watched().clone();
        if m.last_log_index.is_none() && m.vote.leader_id().term == 0 {
            tracing::info!(
                "empty store: no vote is granted until a leader has given this node a log \
                 (`cluster init` gives every reachable member its first entry)"
            );
            blank.store(true, std::sync::atomic::Ordering::SeqCst);
            let (blank, raft) = (blank.clone(), raft.clone());
            tokio::spawn(async move {
                while raft.metrics().borrow_watched().last_log_index.is_none() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                blank.store(false, std::sync::atomic::Ordering::SeqCst);
                tracing::info!("store has a log: votes are granted again");
            });
        }
    }
    let answer_node = Arc::downgrade(&node);
    let control: transport::ControlHandler = Arc::new(move |from, req| {
        let node = answer_node.upgrade();
        Box::pin(async move {
            match node {
                Some(node) => crate::admin::answer_control(&node, from, req).await,
                None => transport::ControlReply::Failed("node shutting down".into()),
            }
        })
    });
    tokio::spawn(transport::serve(
        raft_listener,
        tls,
        raft.clone(),
        admit,
        transport::Guards {
            blank,
            hold: node.hold.clone(),
        },
        node.contact.clone(),
        control,
    ));
    tokio::spawn(restore::check(node.clone()));
    tokio::spawn(restore::record(node.clone()));
    tokio::spawn(crate::admin::server::serve(admin_listeners, node.clone()));
    tokio::spawn(crate::leader::run(node.clone()));
    tokio::spawn(crate::follower::run(node.clone()));
    tokio::spawn(watch_lease(node.clone()));
    if let Some(dns) = &cfg.dns {
        crate::serve::start(node.clone(), &dns.listen).await?;
    }
    tracing::info!(
        id = cfg.id,
        raft = %cfg.raft_listen,
        admin_socket = %cfg.admin.socket.display(),
        admin_https = cfg.admin_listen.as_deref().unwrap_or("-"),
        keystore = %node.keys.describe(),
        "node started"
    );
    // A Raft that stopped on a storage error (a full or failing disk) cannot be trusted to
    // resume by itself: the process ends with the reason, for the supervisor to restart it
    // once the disk is fixed (nothing acknowledged is lost: appends are durable first).
    let fatal = {
        let raft = raft.clone();
        async move {
            loop {
                let r = raft.metrics().borrow_watched().running_state.clone();
                if let Err(e) = r {
                    return e.to_string();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        e = fatal => {
            tracing::error!("raft stopped: {e}; exiting");
            return Err(format!("raft stopped: {e}"));
        }
    }
    tracing::info!("shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(5), raft.shutdown()).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// One process per data directory: a second `node run` on it is refused.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "{} is in use by another quorumsign node",
            dir.display()
        ));
    }
    Ok(f)
}
