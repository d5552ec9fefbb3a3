//! `quorumsign demo`: a local 3-node cluster on loopback with the embedded keystore and the
//! example zone. With `--failover` it also kills the leader, changes the zone and shows the
//! new leader publishing the next serial with the same keys and without re-signing what is
//! not due; then it stops (the README's main job runs it that way).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::testkit::lab::{self, LabNode};

const EXAMPLE_ZONE: &str = include_str!("../../examples/example.zone");
const ZONE: &str = "example.";

#[derive(Args)]
pub struct DemoArgs {
    /// Where to put configs, certificates, data and logs (default: a new directory in /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// First port: node N uses PORT+N (Raft), PORT+100+N (HTTPS admin) and PORT+150+N (DNS);
    /// its admin socket is DIR/admin-N.sock.
    #[arg(long, default_value_t = 7100)]
    port: u16,
    /// Run the failover drill, print the results and stop instead of waiting for Ctrl-C.
    #[arg(long)]
    failover: bool,
}

/// The demo's node processes, stopped with SIGTERM (up to 10 s) when the demo ends.
struct Nodes(lab::Procs);

impl Drop for Nodes {
    fn drop(&mut self) {
        self.0.shut_down(Duration::from_secs(10));
    }
}

fn step(t0: Instant, msg: &str) {
    println!("[{:>6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

pub fn run(a: DemoArgs) -> Result<(), String> {
    let t0 = Instant::now();
    let dir = a.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("quorumsign-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let lab = lab::write(&dir, &[1, 2, 3], &[1, 2, 3], a.port, "")?;
    let zone_file = dir.join("example.zone");
    std::fs::write(&zone_file, EXAMPLE_ZONE).map_err(|e| e.to_string())?;
    let mut nodes = Nodes(lab::Procs::local(lab.clone(), &exe));
    for n in &lab {
        nodes.0.restart(n.id)?;
    }
    step(
        t0,
        &format!("started 3 nodes in {} (logs: node-N.log)", dir.display()),
    );
    for n in &lab {
        lab::wait_for(Duration::from_secs(20), || lab::status(&n.admin))
            .ok_or_else(|| format!("node {} did not start; see {}", n.id, n.log.display()))?;
    }
    let admin1 = lab[0].admin.clone();
    let init = crate::admin::client::call(&admin1, "POST", "/init", None, Duration::from_secs(30))?;
    if init.code != 200 && !init.message().contains("initialize") {
        return Err(format!("cluster init: {}", init.message()));
    }
    let leader = lab::wait_for(Duration::from_secs(20), || lab::leader_of(&admin1))
        .ok_or("no leader was elected in 20 s")?;
    step(t0, &format!("cluster initialised; node {leader} leads"));
    let body = crate::admin::api::body(&crate::admin::api::ZoneAdd {
        name: ZONE.into(),
        file: Some(zone_file.display().to_string()),
        denial: Some("nsec3".into()),
        ..Default::default()
    });
    let ans = crate::admin::client::call_leader(
        &admin1,
        "POST",
        "/zones",
        Some(&body),
        Duration::from_secs(30),
    )?;
    if ans.code != 200 {
        return Err(format!("zone add: {}", ans.message()));
    }
    let mut serial = 0;
    for n in &lab {
        let (s, _) = lab::wait_for(Duration::from_secs(60), || {
            lab::validated_serial(&n.admin, ZONE)
        })
        .ok_or_else(|| format!("node {} did not validate a version of {ZONE} in 60 s", n.id))?;
        serial = s;
    }
    step(
        t0,
        &format!("{ZONE} signed, replicated and validated on all 3 nodes: serial {serial}"),
    );
    let served = dns_serials(&lab.iter().collect::<Vec<_>>())?;
    step(t0, &format!("served over DNS (SOA over TCP): {served}"));
    let status = crate::cli::cluster_cmd::gather_status(&admin1)?;
    print!("{}", crate::cli::cluster_cmd::format_status(&status));
    if !a.failover {
        let q = exe.display();
        println!(
            "\nTry:\n  {q} cluster status --admin {admin1}\n  {q} zone show {ZONE} --admin {}\n  \
             {q} leader transfer --to 2 --admin {admin1}\n  dig @127.0.0.1 -p {} +dnssec www.{ZONE} A\n  \
             {q} cluster status --admin {} --admin-cert {c}/operator-lab-monitor.pem \\\n      \
             --admin-key {c}/operator-lab-monitor.key --admin-ca {c}/ca.pem   # HTTPS, as a monitor\n  \
             kill -9 <pid of the leader>, then cluster status again\n\
             Press Ctrl-C to stop the cluster.",
            lab[1].admin,
            lab[0].dns.rsplit(':').next().unwrap_or(""),
            lab[0].https,
            c = dir.join("certs").display()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // Ctrl-C or SIGTERM: stop the nodes (dropping `nodes` kills them) and leave.
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        })
        .map_err(|e| e.to_string())?;
        println!("stopping");
        return Ok(());
    }
    failover(t0, &mut nodes, &zone_file, serial)
}

fn dnskeys(admin: &str) -> Result<Vec<String>, String> {
    let a = crate::admin::client::call(
        admin,
        "GET",
        &format!("/zones/{ZONE}/signed"),
        None,
        Duration::from_secs(10),
    )?;
    if a.code != 200 {
        return Err(a.message());
    }
    Ok(lab::dnskey_lines(&String::from_utf8_lossy(&a.body)))
}

/// Each node's SOA serial for the zone, asked over DNS (TCP).
fn dns_serials(nodes: &[&LabNode]) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let origin = crate::zone::Name::parse(ZONE.as_bytes(), None).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for n in nodes {
        let remote = crate::dns::Remote::parse(&n.dns)?;
        let s = rt.block_on(crate::dns::client::serial(&remote, None, &origin))?;
        out.push(format!("node {} ({}) serial {s}", n.id, n.dns));
    }
    Ok(out.join(", "))
}

fn failover(
    t0: Instant,
    nodes: &mut Nodes,
    zone_file: &std::path::Path,
    serial: u64,
) -> Result<(), String> {
    let lab = nodes.0.nodes.clone();
    let leader = lab::leader_of(&lab[0].admin).ok_or("no leader")?;
    let before = dnskeys(&lab[0].admin)?;
    if !nodes.0.running().iter().any(|n| n.id == leader) {
        return Err(format!("the leader, node {leader}, is not running"));
    }
    nodes.0.kill(leader);
    step(t0, &format!("SIGKILLed the leader, node {leader}"));
    let mut text = std::fs::read_to_string(zone_file).map_err(|e| e.to_string())?;
    text.push_str("added   IN A   192.0.2.77   ; one new RRset\n");
    std::fs::write(zone_file, text).map_err(|e| e.to_string())?;
    step(t0, "added one RRset to the zone file");
    let survivors: Vec<&LabNode> = lab.iter().filter(|n| n.id != leader).collect();
    let new_leader = lab::wait_for(Duration::from_secs(20), || {
        survivors
            .iter()
            .find_map(|n| lab::leader_of(&n.admin).filter(|l| *l != leader))
    })
    .ok_or("no new leader in 20 s")?;
    step(t0, &format!("node {new_leader} leads"));
    let mut next = 0;
    for n in &survivors {
        let (s, _) = lab::wait_for(Duration::from_secs(30), || {
            lab::validated_serial(&n.admin, ZONE).filter(|(s, _)| *s > serial)
        })
        .ok_or_else(|| {
            format!(
                "node {} did not validate a serial after {serial} in 30 s",
                n.id
            )
        })?;
        next = s;
    }
    let st = lab::status(&survivors[0].admin).ok_or("status")?;
    let z = lab::zone_of(&st, ZONE).ok_or("zone")?.clone();
    step(
        t0,
        &format!(
            "node {new_leader} published serial {next}: {} RRsets signed, {} signatures reused, {} unchanged RRsets re-signed",
            z["signed"], z["reused"], z["resigned_unchanged"]
        ),
    );
    let served = dns_serials(&survivors)?;
    step(t0, &format!("served over DNS (SOA over TCP): {served}"));
    let after = dnskeys(&survivors[0].admin)?;
    let same = before == after;
    step(
        t0,
        &format!(
            "DNSKEY RRset {}",
            if same {
                "identical before and after"
            } else {
                "CHANGED"
            }
        ),
    );
    if !same || z["resigned_unchanged"].as_u64() != Some(0) {
        return Err("failover drill failed".into());
    }
    println!("failover drill passed; stopping the cluster");
    Ok(())
}
