//! Serving benchmark: one quorumsign node against knotd serving the same signed zone.
//!
//! ```text
//! qs-bench-serve [--count 1000000] [--seconds 10] [--work DIR]
//! ```
//! Prints: AXFR of the signed delegation zone with a real client (kdig, TSIG), from the
//! node and from knotd loaded with the node's own file output, and their ratio; IXFR of a
//! one-RRset change from the node; UDP query throughput (dnsperf, DO bit, referrals and
//! NXDOMAINs) against the node and against knotd, and their ratio. Needs kdig, knotd and
//! dnsperf (Debian packages knot-dnsutils, knot, dnsperf).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use quorumsign::testkit::lab;

#[path = "common.rs"]
mod common;
use common::{fresh_work, generate_zone, qs_bin};

const ZONE: &str = "tld.";

#[derive(Parser)]
struct Opts {
    #[arg(long, default_value_t = 1_000_000)]
    count: usize,
    /// Length of each query-throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long, default_value_t = 18150)]
    port: u16,
    #[arg(long, default_value_t = 18290)]
    knot_port: u16,
}

/// Runs kdig with `args`, output to `out`; returns (seconds, answer lines).
fn kdig(port: u16, args: &[&str], out: &Path) -> (f64, usize) {
    let f = std::fs::File::create(out).unwrap();
    let t = Instant::now();
    let st = Command::new("kdig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+noall", "+answer"])
        .args(args)
        .stdout(f)
        .status()
        .expect("kdig (apt-get install knot-dnsutils)");
    let secs = t.elapsed().as_secs_f64();
    assert!(st.success(), "kdig {args:?} failed");
    let lines = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .count();
    (secs, lines)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// dnsperf for `seconds` against `port`; queries per second.
fn dnsperf(port: u16, queries: &Path, seconds: u32) -> f64 {
    let out = Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-D",
            "-c",
            "8",
            "-T",
            "1",
        ])
        .args(["-l", &seconds.to_string(), "-d"])
        .arg(queries)
        .output()
        .expect("dnsperf (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout);
    let lost = text
        .lines()
        .find(|l| l.contains("Queries lost:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let qps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("dnsperf printed no rate:\n{text}"));
    println!("    dnsperf port {port}: {qps:.0} q/s ({lost})");
    qps
}

fn change_ds(zone: &Path, tag: u32) {
    let text = std::fs::read_to_string(zone).unwrap();
    let at = text.find(" IN DS ").expect("a DS record") + " IN DS ".len();
    let end = at + text[at..].find(' ').unwrap();
    let new = format!("{}{}{}", &text[..at], tag, &text[end..]);
    let tmp = zone.with_extension("tmp");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, zone).unwrap();
}

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    let o = Opts::parse();
    let work = fresh_work(o.work.clone(), "qs-bench-serve");
    let qs = qs_bin();
    let zone = work.join("tld.zone");
    let unsigned = generate_zone(&qs, ZONE, o.count, &zone);
    println!(
        "zone: {} delegations, {} MiB unsigned",
        o.count,
        unsigned.len() >> 20
    );

    // Queries: existing delegations (referrals with DS or NSEC3 proofs) and NXDOMAINs.
    let text = String::from_utf8_lossy(&unsigned);
    let mut q = String::new();
    for (i, l) in text
        .lines()
        .filter(|l| l.contains(" IN NS ") && !l.starts_with('@'))
        .step_by(7)
        .take(50_000)
        .enumerate()
    {
        let label = l.split_whitespace().next().unwrap();
        q.push_str(&format!("www.{label}.{ZONE} A\n"));
        if i % 4 == 0 {
            q.push_str(&format!("nx{i}.{ZONE} A\n"));
        }
    }
    let queries = work.join("queries.txt");
    std::fs::write(&queries, q).unwrap();

    // One node, serving DNS.
    let dir = work.join("cluster");
    let nodes = lab::write(&dir, &[1], &[1], o.port, "[signer]\ntick_ms = 20\n").unwrap();
    let n = &nodes[0];
    let _node = Kill(vec![lab::spawn(&qs, n).unwrap()]);
    lab::wait_for(Duration::from_secs(30), || lab::status(&n.admin)).expect("node up");
    quorumsign::admin::client::call(&n.admin, "POST", "/init", None, Duration::from_secs(30))
        .unwrap();
    lab::wait_for(Duration::from_secs(30), || lab::leader_of(&n.admin)).expect("leader");
    let signed_file = work.join("tld.signed");
    let body = serde_json::json!({ "name": ZONE, "file": zone.display().to_string(),
        "denial": "nsec3", "transfer": ["127.0.0.0/8 key xfr-key"],
        "output": signed_file.display().to_string() });
    let ans = quorumsign::admin::client::call(
        &n.admin,
        "POST",
        "/zones",
        Some(&body),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(ans.code, 200, "{}", ans.message());
    let t = Instant::now();
    let (serial, _) = lab::wait_for(Duration::from_secs(3600), || {
        lab::validated_serial(&n.admin, ZONE)
    })
    .expect("first version");
    println!(
        "first version signed and validated: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    lab::wait_for(Duration::from_secs(600), || {
        let head = std::fs::read_to_string(&signed_file).ok()?;
        head.starts_with("; quorumsign").then_some(()).filter(|_| {
            head.lines()
                .next()
                .unwrap_or("")
                .contains(&format!("serial={serial} "))
        })
    })
    .expect("file output");
    let secret = lab::lab_tsig_secret(&dir).unwrap();
    let key = format!("hmac-sha256:xfr-key:{secret}");
    let dns_port: u16 = n.dns.rsplit(':').next().unwrap().parse().unwrap();

    // knotd with the same signed zone (its own file output), as a plain primary.
    let kd = work.join("knot");
    std::fs::create_dir_all(&kd).unwrap();
    std::fs::copy(&signed_file, kd.join("tld.zone")).unwrap();
    let kconf = kd.join("knot.conf");
    std::fs::write(
        &kconf,
        format!(
            "server:\n    rundir: \"{k}\"\n    listen: 127.0.0.1@{}\n    background-workers: 1\n\
             database:\n    storage: \"{k}\"\n\
             key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    key: xfr-key\n    action: transfer\n\
             zone:\n  - domain: {ZONE}\n    storage: \"{k}\"\n    file: tld.zone\n\
             \x20   acl: xfr\n    semantic-checks: off\n    journal-content: none\n",
            o.knot_port,
            k = kd.display()
        ),
    )
    .unwrap();
    let knot_log = std::fs::File::create(kd.join("knot.log")).unwrap();
    let _knot = Kill(vec![
        Command::new("knotd")
            .args(["-c"])
            .arg(&kconf)
            .stdout(Stdio::null())
            .stderr(knot_log)
            .spawn()
            .expect("knotd (apt-get install knot)"),
    ]);
    lab::wait_for(Duration::from_secs(600), || {
        let o = Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &o.knot_port.to_string(),
                "+short",
                ZONE,
                "SOA",
            ])
            .output()
            .ok()?;
        (!o.stdout.is_empty()).then_some(())
    })
    .expect("knotd loads the zone");

    // AXFR, three times each, median.
    let axfr_out = work.join("axfr.txt");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut records = (0, 0);
    for _ in 0..3 {
        let (s, r) = kdig(dns_port, &["-y", &key, ZONE, "AXFR"], &axfr_out);
        ours.push(s);
        records.0 = r;
        let (s, r) = kdig(o.knot_port, &["-y", &key, ZONE, "AXFR"], &axfr_out);
        theirs.push(s);
        records.1 = r;
    }
    let (a, b) = (median(ours), median(theirs));
    println!(
        "AXFR (kdig, TSIG): quorumsign {a:.2} s ({} records), knotd {b:.2} s ({} records); ratio {:.2}",
        records.0,
        records.1,
        a / b
    );

    // IXFR of a one-RRset change.
    change_ds(&zone, 4242);
    let (serial2, _) = lab::wait_for(Duration::from_secs(600), || {
        lab::validated_serial(&n.admin, ZONE).filter(|(s, _)| *s > serial)
    })
    .expect("the change is published");
    let ixfr = format!("IXFR={serial}");
    let mut times = Vec::new();
    let mut rr = 0;
    for _ in 0..5 {
        let (s, r) = kdig(dns_port, &["-y", &key, ZONE, &ixfr], &axfr_out);
        times.push(s * 1000.0);
        rr = r;
    }
    println!(
        "IXFR {serial} -> {serial2} (one DS changed): {:.1} ms, {rr} records",
        median(times)
    );

    // Query throughput.
    println!("UDP queries with DO ({} s each, dnsperf -c 8):", o.seconds);
    let ours = dnsperf(dns_port, &queries, o.seconds);
    let theirs = dnsperf(o.knot_port, &queries, o.seconds);
    println!(
        "query throughput: quorumsign {ours:.0} q/s, knotd {theirs:.0} q/s; ratio {:.2}",
        ours / theirs
    );
}
