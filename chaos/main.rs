//! `quorumsign-chaos`: a fault-injection run against a real three-node cluster on loopback.
//!
//! ```text
//!  start 3 node processes ─► zone added ─► per fault (kind from the seed):
//!     workload: one RRset changed + zone reload (acknowledged → must be in the audit log)
//!     nemesis:  SIGKILL the leader (restarted 2 s later) | SIGSTOP it past the election
//!               timeout, then SIGCONT
//!     every tick, every running node: serial, hash, DNSKEY RRset, earliest RRSIG
//!               expiration of the version it serves, and that version through the validator
//!               ─► checkers V S K F
//!     healed:   the change is published and validated everywhere within the bound ─► L
//!  end: the audit log holds every acknowledged command ─► A
//! ```
//! Prints the counts of faults, checks and violations with the seed, and for each violation
//! the harness's events within 10 s of it (rerun with the same seed to replay); exits 1 on
//! any violation. A listener takes the NOTIFYs and checks that their fencing tokens never go
//! back (P). This is the first part of the harness: partitions, keystore faults, disk
//! faults, clock jumps, key rolls (R, whose checker exists and is unit-tested) and the
//! deterministic simulation are not wired yet.
//!
//! ```sh
//! cargo build --release && target/release/quorumsign-chaos --seed 7 --faults 6
//! ```

mod checkers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use quorumsign::node::lab::{self, LabNode};

use checkers::{Checkers, Observation};

const ZONE: &str = "chaos.test.";
/// Events printed on either side of a violation.
const HISTORY_AROUND_MS: u64 = 10_000;

#[derive(Parser)]
struct Opts {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 6)]
    faults: u32,
    /// Base port (Raft base+id, admin base+100+id, DNS base+150+id).
    #[arg(long, default_value_t = 22100)]
    port: u16,
    /// Longest time from a healed fault to the change being served everywhere.
    #[arg(long, default_value_t = 30)]
    bound_s: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Lab {
    nodes: Vec<LabNode>,
    children: Vec<Option<Child>>,
    exe: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Lab {
    fn running(&self) -> Vec<&LabNode> {
        self.nodes
            .iter()
            .zip(&self.children)
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| n)
            .collect()
    }

    fn leader(&self) -> Option<u64> {
        self.running().iter().find_map(|n| lab::leader_of(&n.admin))
    }

    fn index(&self, id: u64) -> usize {
        self.nodes.iter().position(|n| n.id == id).expect("node")
    }

    fn signal(&self, id: u64, sig: i32) {
        if let Some(c) = &self.children[self.index(id)] {
            // SAFETY: signalling a child process this harness started.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    fn kill(&mut self, id: u64) {
        let i = self.index(id);
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, id: u64) {
        let i = self.index(id);
        if self.children[i].is_none() {
            self.children[i] = lab::spawn(&self.exe, &self.nodes[i]).ok();
        }
    }
}

fn qs(exe: &Path, args: &[&str]) -> bool {
    Command::new(exe)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What `node` serves: its validated serial and hash, and the served text checked.
fn observe(n: &LabNode, at_ms: u64, now: u32) -> Option<Observation> {
    let (serial, hash) = lab::validated_serial(&n.admin, ZONE)?;
    let ans = quorumsign::admin::client::call(
        &n.admin,
        "GET",
        &format!("/zones/{ZONE}/signed"),
        None,
        Duration::from_secs(10),
    )
    .ok()
    .filter(|a| a.code == 200)?;
    let origin = quorumsign::zone::Name::parse(ZONE.as_bytes(), None).ok()?;
    let popts = quorumsign::zone::ParseOptions {
        origin: origin.clone(),
        limits: quorumsign::zone::Limits::default(),
        keep_dnssec: true,
    };
    let (zone, _) =
        quorumsign::zone::Zone::load_bytes(&ans.body, Path::new("served"), &popts).ok()?;
    let report = quorumsign::validate::verify_zone(
        &zone,
        &quorumsign::validate::VerifyOptions {
            now,
            trust_anchors: Vec::new(),
            signatures_prechecked: false,
        },
    );
    let mut dnskeys: Vec<Vec<u8>> = zone
        .apex()
        .rrset(quorumsign::zone::rtype::DNSKEY)
        .map(|r| r.rdatas.iter().map(|d| d.to_vec()).collect())
        .unwrap_or_default();
    dnskeys.sort();
    let min_expiration = zone
        .nodes
        .iter()
        .flat_map(|n| &n.sigs)
        .filter_map(|(_, d)| quorumsign::keys::RrsigHeader::parse(d).map(|(h, _)| h.expiration))
        .min()
        .unwrap_or(0);
    Some(Observation {
        at_ms,
        node: n.id,
        zone: ZONE.into(),
        serial: serial as u32,
        hash,
        dnskeys,
        min_expiration,
        valid: Some(report.valid),
    })
}

fn main() -> ExitCode {
    let o = Opts::parse();
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("quorumsign");
    let dir = std::env::temp_dir().join(format!("qs-chaos-{}-{}", o.seed, std::process::id()));
    let ids = [1, 2, 3];
    let nodes = match lab::write(&dir, &ids, &ids, o.port, "") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    let mut lab = Lab {
        children: nodes.iter().map(|n| lab::spawn(&exe, n).ok()).collect(),
        nodes,
        exe: exe.clone(),
    };
    let start = Instant::now();
    let start_unix_ms = unix_ms();
    let ms = |start: Instant| start.elapsed().as_millis() as u64;
    for n in &lab.nodes {
        lab::wait_for(Duration::from_secs(20), || lab::status(&n.admin));
    }
    let admin = lab.nodes[0].admin.clone();
    if !qs(&exe, &["cluster", "init", "--admin", &admin]) {
        eprintln!("cluster init failed");
        return ExitCode::from(2);
    }
    let notify_port = o.port + 300;
    let notifies = notify_listener(notify_port);
    let zone_file = dir.join("chaos.zone");
    let mut text = String::from(
        "$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.53\n",
    );
    std::fs::write(&zone_file, &text).unwrap();
    lab::wait_for(Duration::from_secs(20), || lab.leader());
    if !qs(
        &exe,
        &[
            "zone",
            "add",
            ZONE,
            "--file",
            zone_file.to_str().unwrap(),
            "--notify",
            &format!("127.0.0.1:{notify_port}"),
            "--admin",
            &admin,
        ],
    ) {
        eprintln!("zone add failed");
        return ExitCode::from(2);
    }
    let mut rng = Rng(o.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut c = Checkers::default();
    let mut acked: Vec<String> = Vec::new();
    let mut events: Vec<(u64, String)> = Vec::new();
    let (mut kills, mut pauses) = (0u32, 0u32);
    for fault in 0..o.faults {
        // Workload: one RRset changed, then a reload asked of any running node.
        text.push_str(&format!("w{fault} TXT \"change {fault}\"\n"));
        std::fs::write(&zone_file, &text).unwrap();
        let target = lab.running()[0].admin.clone();
        if qs(&exe, &["zone", "reload", ZONE, "--admin", &target]) {
            acked.push(format!("zone reload {ZONE}"));
            events.push((
                ms(start),
                format!("fault {fault}: zone changed (w{fault}), reload acknowledged"),
            ));
        }
        let Some(leader) = lab::wait_for(Duration::from_secs(30), || lab.leader()) else {
            c.leader(ms(start), None, 30_000);
            break;
        };
        if rng.next() % 2 == 0 {
            lab.kill(leader);
            events.push((ms(start), format!("fault {fault}: SIGKILL leader {leader}")));
            kills += 1;
            std::thread::sleep(Duration::from_secs(2));
            lab.restart(leader);
            events.push((ms(start), format!("fault {fault}: node {leader} restarted")));
        } else {
            lab.signal(leader, libc::SIGSTOP);
            events.push((ms(start), format!("fault {fault}: SIGSTOP leader {leader}")));
            pauses += 1;
            std::thread::sleep(Duration::from_secs(3));
            lab.signal(leader, libc::SIGCONT);
            events.push((ms(start), format!("fault {fault}: SIGCONT node {leader}")));
        }
        let healed = ms(start);
        // Watch every node until the change is served everywhere (or the bound passes).
        let mut published = None;
        while ms(start) < healed + o.bound_s * 1000 {
            let now = quorumsign::node::now() as u32;
            let obs: Vec<Observation> = lab
                .running()
                .iter()
                .filter_map(|n| observe(n, ms(start), now))
                .collect();
            for x in &obs {
                c.observe(x, now, 3600);
            }
            let has_change = |x: &Observation| x.valid == Some(true);
            if obs.len() == lab.running().len()
                && obs.iter().all(has_change)
                && served_change(&lab, fault)
            {
                published = Some(ms(start));
                events.push((
                    ms(start),
                    format!("fault {fault}: change served by every node"),
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        c.leader(healed, published, o.bound_s * 1000);
    }
    let log: Vec<String> =
        quorumsign::admin::client::call(&admin, "GET", "/audit", None, Duration::from_secs(10))
            .map(|a| {
                a.json()
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r.to_string())
                    .collect()
            })
            .unwrap_or_default();
    c.audit(ms(start), &acked, &log);
    for (at, token) in notifies.lock().unwrap().iter() {
        // NOTIFY carries no serial: P checks the token order here; S checks serials.
        c.notify(at.saturating_sub(start_unix_ms), ZONE, *token, 0);
    }
    println!(
        "seed {} faults {} (leader kills {kills}, leader pauses {pauses}) in {:.1} s",
        o.seed,
        kills + pauses,
        start.elapsed().as_secs_f64()
    );
    for (inv, n) in &c.checks {
        println!("  {inv}: {n} checks, {} violations", c.of(*inv).len());
    }
    for v in &c.violations {
        println!("VIOLATION {} at {} ms: {}", v.invariant, v.at_ms, v.what);
        // The history around it, to replay with the same seed.
        for (at, e) in events
            .iter()
            .filter(|(at, _)| at.abs_diff(v.at_ms) <= HISTORY_AROUND_MS)
        {
            println!("    {at:>8} ms  {e}");
        }
    }
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    if c.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A secondary that only listens: every NOTIFY is answered and its fencing token (EDNS
/// option 65001: term, index) recorded with the time it came.
fn notify_listener(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, (u64, u64))>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sock = std::net::UdpSocket::bind(("127.0.0.1", port)).expect("NOTIFY listener port");
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let m = &buf[..n];
            let opt = quorumsign::serve::notify::TOKEN_OPTION.to_be_bytes();
            let token = m
                .windows(4)
                .position(|w| w[..2] == opt && w[2..] == [0, 16])
                .filter(|p| p + 20 <= n)
                .map(|p| {
                    let b = &m[p + 4..p + 20];
                    (
                        u64::from_be_bytes(b[..8].try_into().unwrap()),
                        u64::from_be_bytes(b[8..].try_into().unwrap()),
                    )
                });
            if let Some(t) = token {
                out.lock().unwrap().push((unix_ms(), t));
            }
            // Answer: header with QR set and the question only.
            let mut q = 12;
            while q < n && m[q] != 0 {
                q += 1 + m[q] as usize;
            }
            let end = (q + 5).min(n);
            let mut r = m[..end].to_vec();
            if r.len() >= 12 {
                r[2] |= 0x80;
                r[6..12].copy_from_slice(&[0; 6]);
                let _ = sock.send_to(&r, from);
            }
        }
    });
    seen
}

/// Every running node serves the record the workload added for `fault`.
fn served_change(lab: &Lab, fault: u32) -> bool {
    let want = format!("w{fault}.{ZONE}");
    lab.running().iter().all(|n| {
        quorumsign::admin::client::call(
            &n.admin,
            "GET",
            &format!("/zones/{ZONE}/signed"),
            None,
            Duration::from_secs(10),
        )
        .is_ok_and(|a| String::from_utf8_lossy(&a.body).contains(&want))
    })
}
