//! Cluster benchmark: a 3-node loopback cluster against the single-node sign + verify.
//!
//! ```text
//! qs-bench-cluster [--count 1000000] [--changes 11] [--work DIR]
//! ```
//! Prints: initial sign + replicate + validate on all nodes (ratio to `sign` then `verify`),
//! the median time from a one-RRset change (a DS record's key tag, the file replaced
//! atomically) to the new serial validated on all three nodes,
//! the time from SIGKILL of the leader to the next serial published by the new leader and
//! validated, the unchanged RRsets it re-signed, and peak RSS per node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Parser;
use quorumsign::node::lab;

const ZONE: &str = "tld.";

#[derive(Parser)]
struct Opts {
    #[arg(long, default_value_t = 1_000_000)]
    count: usize,
    /// One-RRset changes to time (the median is reported).
    #[arg(long, default_value_t = 11)]
    changes: usize,
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long, default_value_t = 18100)]
    port: u16,
    /// Raft election timeout minimum for the nodes (max = 2×, heartbeat = 1/5); the nodes'
    /// defaults when not given.
    #[arg(long)]
    election_min_ms: Option<u64>,
}

fn qs_bin() -> PathBuf {
    let me = std::env::current_exe().expect("exe");
    me.with_file_name("quorumsign")
}

fn run(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn hwm_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn all_validated(nodes: &[&lab::LabNode], above: u64, timeout: Duration) -> Option<(u64, Instant)> {
    lab::wait_for(timeout, || {
        let v: Vec<u64> = nodes
            .iter()
            .map(|n| lab::validated_serial(&n.admin, ZONE).map(|x| x.0))
            .collect::<Option<_>>()?;
        (v[0] > above && v.iter().all(|s| *s == v[0])).then(|| (v[0], Instant::now()))
    })
}

/// Changes the key tag of the first DS record (one signed RRset changes content), writing
/// the file atomically.
fn change_ds(zone: &Path, tag: u32) {
    let text = std::fs::read_to_string(zone).unwrap();
    let at = text.find(" IN DS ").expect("a DS record") + " IN DS ".len();
    let end = at + text[at..].find(' ').unwrap();
    let new = format!("{}{}{}", &text[..at], tag, &text[end..]);
    let tmp = zone.with_extension("tmp");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, zone).unwrap();
}

fn main() {
    let o = Opts::parse();
    let work = o
        .work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("qs-bench-cluster"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let work = std::fs::canonicalize(&work).unwrap();
    let qs = qs_bin();
    let zone = work.join("tld.zone");
    let out = Command::new(&qs)
        .args([
            "generate-zone",
            "--zone",
            ZONE,
            "--count",
            &o.count.to_string(),
        ])
        .output()
        .unwrap();
    std::fs::write(&zone, out.stdout).unwrap();
    println!(
        "zone: {} delegations, {} MiB",
        o.count,
        std::fs::metadata(&zone).unwrap().len() >> 20
    );

    // Single node: keys, sign, verify.
    let keys = work.join("keys");
    for role in ["ksk", "zsk"] {
        run(Command::new(&qs)
            .args([
                "keys",
                "generate",
                "--zone",
                ZONE,
                "--role",
                role,
                "--algorithm",
                "13",
                "--keystore",
            ])
            .arg(format!("dir:{}", keys.display())));
    }
    let signed = work.join("tld.signed");
    let t_sign = run(Command::new(&qs)
        .args(["sign", "--zone", ZONE, "--input"])
        .arg(&zone)
        .arg("--output")
        .arg(&signed)
        .arg("--keystore")
        .arg(format!("dir:{}", keys.display())));
    let t_verify = run(Command::new(&qs)
        .args(["verify", "--zone", ZONE])
        .arg(&signed));
    let single = t_sign + t_verify;
    println!(
        "single node: sign {:.1} s + verify {:.1} s = {:.1} s",
        t_sign.as_secs_f64(),
        t_verify.as_secs_f64(),
        single.as_secs_f64()
    );

    // Cluster.
    let dir = work.join("cluster");
    let mut extra = "[signer]\ntick_ms = 20\n".to_string();
    if let Some(e) = o.election_min_ms {
        extra.push_str(&format!(
            "[raft]\nheartbeat_ms = {}\nelection_min_ms = {e}\nelection_max_ms = {}\n",
            e / 5,
            e * 2
        ));
    }
    let nodes = lab::write(&dir, &[1, 2, 3], &[1, 2, 3], o.port, &extra).unwrap();
    let mut children: Vec<Option<Child>> = nodes
        .iter()
        .map(|n| Some(lab::spawn(&qs, n).unwrap()))
        .collect();
    for n in &nodes {
        lab::wait_for(Duration::from_secs(30), || lab::status(&n.admin)).expect("node up");
    }
    let a1 = nodes[0].admin.clone();
    quorumsign::admin::client::call(&a1, "POST", "/init", None, Duration::from_secs(30)).unwrap();
    lab::wait_for(Duration::from_secs(30), || lab::leader_of(&a1)).expect("leader");
    let t0 = Instant::now();
    let body =
        serde_json::json!({ "name": ZONE, "file": zone.display().to_string(), "denial": "nsec3" });
    let ans = quorumsign::admin::client::call_leader(
        &a1,
        "POST",
        "/zones",
        Some(&body),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(ans.code, 200, "{}", ans.message());
    let all: Vec<&lab::LabNode> = nodes.iter().collect();
    let (mut serial, done) =
        all_validated(&all, 0, Duration::from_secs(3600)).expect("initial version on all nodes");
    let t_initial = done - t0;
    println!(
        "cluster initial sign + replicate + validate on 3 nodes: {:.1} s  ratio {:.2} (target <= 1.5)",
        t_initial.as_secs_f64(),
        t_initial.as_secs_f64() / single.as_secs_f64()
    );

    // One-RRset changes.
    let mut times = Vec::new();
    for i in 0..o.changes {
        change_ds(&zone, 1000 + i as u32);
        let t = Instant::now();
        let (s, done) =
            all_validated(&all, serial, Duration::from_secs(600)).expect("change applied");
        serial = s;
        times.push((done - t).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "one RRset changed -> new serial validated on all 3 nodes: median {median:.0} ms (min {:.0}, max {:.0}; target <= 50 ms)",
        times[0],
        times[times.len() - 1]
    );

    // Failover.
    let leader = lab::leader_of(&a1).expect("leader");
    let li = nodes.iter().position(|n| n.id == leader).unwrap();
    let rss: Vec<(u64, f64)> = nodes
        .iter()
        .zip(&children)
        .map(|(n, c)| (n.id, c.as_ref().map_or(0.0, |c| hwm_mib(c.id()))))
        .collect();
    let t = Instant::now();
    let mut c = children[li].take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    change_ds(&zone, 999);
    let survivors: Vec<&lab::LabNode> = nodes.iter().filter(|n| n.id != leader).collect();
    let (_, done) =
        all_validated(&survivors, serial, Duration::from_secs(600)).expect("new leader publishes");
    let t_fail = done - t;
    let st = lab::status(&survivors[0].admin).unwrap();
    let z = lab::zone_of(&st, ZONE).unwrap();
    println!(
        "SIGKILL leader -> next serial published by node {} and validated: {:.2} s (target <= 3 s); unchanged RRsets re-signed: {} (target 0); signed {}, reused {}",
        z["published_by"],
        t_fail.as_secs_f64(),
        z["resigned_unchanged"],
        z["signed"],
        z["reused"]
    );
    for (id, mib) in rss {
        println!("peak RSS node {id}: {mib:.0} MiB (target <= 1536)");
    }
    for c in children.iter_mut().flatten() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
