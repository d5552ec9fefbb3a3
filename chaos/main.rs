//! `quorumsign-chaos`: a fault-injection run against a real three-node cluster.
//!
//! ```text
//!  start 3 node processes (each in its own network namespace when run as root, else on
//!  loopback) ─► zone added ─► per fault (kind from the seed):
//!     workload: one RRset changed + zone reload (acknowledged → must be in the audit log)
//!     nemesis:  kill      SIGKILL the leader 0–800 ms after the reload (while it signs or
//!                         publishes), restarted 2 s later
//!               pause     SIGSTOP the leader past the election timeout, then SIGCONT
//!               partition the leader isolated, a follower isolated (minority), or the
//!                         leader's packets to the others dropped (one-way), for 4 s
//!               keystore  every key of the leader (or of every node: a shared HSM) returns
//!                         garbage, another key's signatures, device errors, or stalls, 4 s
//!               wipe      a node killed, its data dir removed, restarted empty (it must
//!                         rejoin from the others)
//!               clock     a node's wall clock jumps +1 h, -1 h or +7 d (its fault-control
//!                         file), and the zone changes meanwhile; a leader whose clock
//!                         disagrees with the others' must not sign but hand over
//!               disk      node 3's data dir (a 96 MiB tmpfs) filled up, a zone change
//!                         meanwhile, then freed; a node that stopped on it is restarted
//!               restore   a node stopped, its data dir copied, restarted; later (the next
//!                         restore of it) stopped again, its data dir replaced by that older
//!                         copy and restarted: it must refuse to vote or acknowledge, and the
//!                         harness, as an operator, runs `node rejoin` on it
//!               control   a node's node-to-node control traffic (clock, status, forwarded
//!                         changes) dropped both ways while Raft still flows, a zone change
//!                         meanwhile: a leader that cannot compare its clock with a
//!                         majority must not sign but hand over
//!     every tick (300 ms), every running node, during and after the fault: serial, hash,
//!               DNSKEY RRset, earliest RRSIG expiration of the version it serves, and that
//!               version through the validator ─► checkers V S K F
//!     healed:   the change is published and validated everywhere within the bound ─► L
//!  end: the audit log holds every acknowledged command ─► A
//! ```
//! Prints the counts of faults, checks and violations with the seed, and for each violation
//! the harness's events within 10 s of it (rerun with the same seed to replay); exits 1 on
//! any violation. A listener takes the NOTIFYs and checks that their fencing tokens never go
//! back (P). Workload beside the faults: ZSK rolls on a key clock 100× real time (this
//! harness plays the registrar from the CDS), every DNSKEY RRset and signer set served is
//! recorded and checked at the end against modelled validator caches ─► R.
//! Not wired yet: fsync errors and the deterministic simulation.
//!
//! ```sh
//! cargo build --release && target/release/quorumsign-chaos --seed 7 --faults 10
//! ```

mod primary;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use quorumsign::testkit::lab::{self, LabNode};

use primary::Primary;
use quorumsign::testkit::checkers::{Checkers, Observation};

const ZONE: &str = "chaos.test.";
/// Events printed on either side of a violation.
const HISTORY_AROUND_MS: u64 = 10_000;
/// How long a partition or keystore episode lasts (longer than any election: timeouts 0.5–1 s).
const EPISODE: Duration = Duration::from_secs(4);
/// The key clock of the key-roll workload runs this many times faster than real time.
const KASP_SCALE: u64 = 100;
/// The workload's policy: a ZSK roll every 3600 key-clock seconds (36 s), KSK by hand; the
/// safety margins (3 s real) cover how late the harness may first see a version: it looks
/// every 300 ms, but not while it waits out the moment of a kill or restarts a node.
const POLICY: &str = "dnskey_ttl = 300\nds_ttl = 300\npropagation_delay = 300\n\
    publish_safety = 300\nretire_safety = 300\npurge_after = 3600\nzsk_lifetime = 3600\n\
    ksk_lifetime = 0\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Kind {
    Kill,
    Pause,
    Partition,
    Keystore,
    Wipe,
    Clock,
    Disk,
    Control,
    Restore,
    /// The hidden primary of a second zone trickles its transfers for an episode.
    Trickle,
}

#[derive(Parser)]
struct Opts {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 6)]
    faults: u32,
    /// Base port (Raft base+id, admin base+100+id, DNS base+150+id; NOTIFY listener base+300).
    #[arg(long, default_value_t = 22100)]
    port: u16,
    /// Longest time from a healed fault to the change being served everywhere.
    #[arg(long, default_value_t = 30)]
    bound_s: u64,
    /// Fault kinds to draw from (partition needs network namespaces: root).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Kind::Kill, Kind::Pause, Kind::Partition, Kind::Keystore, Kind::Wipe, Kind::Clock, Kind::Disk, Kind::Control, Kind::Restore, Kind::Trickle])]
    kinds: Vec<Kind>,
    /// Without the key-roll workload (ZSK rolls on a key clock 100× real time, checked by R).
    #[arg(long)]
    no_key_rolls: bool,
    /// Keep the lab directory (configs, node logs, events.log) even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Run every node on loopback, without network namespaces (no partitions).
    #[arg(long)]
    loopback: bool,
    /// Network-namespace lab name (namespaces NAME-1.., bridge NAME-br).
    #[arg(long, default_value = "qschaos")]
    lab: String,
    /// The lab's /24 (three octets); the bridge takes .1, node i .(10+i).
    #[arg(long, default_value = "10.78.0")]
    subnet: String,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A network-namespace lab made by `cluster/netns-lab.sh`.
struct Netns {
    name: String,
    subnet: String,
    script: PathBuf,
}

impl Netns {
    fn run(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", self.script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "netns-lab.sh {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Drops `from`'s packets to `to` (or stops dropping them).
    fn cut(&self, from: u64, to: u64, on: bool) {
        let verb = if on { "cut" } else { "uncut" };
        if let Err(e) = self.run(&[verb, &self.name, &from.to_string(), &to.to_string()]) {
            eprintln!("{e}");
        }
    }
}

struct Lab {
    procs: lab::Procs,
    net: Option<Netns>,
    /// Small filesystems mounted for data dirs (the disk episodes), unmounted at the end.
    mounts: Vec<PathBuf>,
    /// Nodes stopped with SIGSTOP: not asked anything (each question would only time out
    /// and blind the harness to the others meanwhile).
    paused: std::collections::BTreeSet<u64>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The nodes first: their namespaces and filesystems go next.
        self.procs.stop();
        if let Some(n) = &self.net {
            let _ = n.run(&["down", &n.name, &self.procs.nodes.len().to_string()]);
        }
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

impl Lab {
    fn running(&self) -> Vec<&LabNode> {
        self.procs.running()
    }

    fn leader(&self) -> Option<u64> {
        self.running().iter().find_map(|n| lab::leader_of(&n.admin))
    }

    fn admin(&self, id: u64) -> String {
        self.procs.node(id).admin.clone()
    }

    /// Running nodes that are not stopped.
    fn answering(&self) -> Vec<&LabNode> {
        self.running()
            .into_iter()
            .filter(|n| !self.paused.contains(&n.id))
            .collect()
    }

    fn signal(&mut self, id: u64, sig: i32) {
        match sig {
            libc::SIGSTOP => self.paused.insert(id),
            _ => self.paused.remove(&id),
        };
        self.procs.signal(id, sig);
    }

    fn kill(&mut self, id: u64) {
        self.paused.remove(&id);
        self.procs.kill(id);
    }

    /// Starts node `id` again unless it runs (a failed start is retried on the next look).
    fn restart(&mut self, id: u64) {
        if let Err(e) = self.procs.restart(id) {
            eprintln!("restart of node {id}: {e}");
        }
    }

    /// Nodes whose process ended by itself since the last look: (id, how).
    fn exited(&mut self) -> Vec<(u64, String)> {
        self.procs.exited()
    }

    fn others(&self, id: u64) -> Vec<u64> {
        self.procs.ids().into_iter().filter(|x| *x != id).collect()
    }
}

/// The key-roll workload's record: every child version any node served (key clock), the
/// parent's DS sets (this harness is the registrar: it publishes what the CDS asks and
/// tells the cluster `keys ds-seen`), for R at the end.
struct Keys {
    epoch: u64,
    history: quorumsign::kasp::sim::History,
    parent: std::collections::BTreeSet<u16>,
    /// Tags whose DS the cluster has not been told about yet.
    untold: Vec<u16>,
    zsks: std::collections::BTreeSet<u16>,
}

fn key_id(tag: u16) -> quorumsign::keys::KeyId {
    let mut b = [0u8; 32];
    b[..2].copy_from_slice(&tag.to_be_bytes());
    quorumsign::keys::KeyId(b)
}

impl Keys {
    fn now(&self) -> u64 {
        let t = quorumsign::runtime::wall();
        self.epoch + t.saturating_sub(self.epoch) * KASP_SCALE
    }

    /// Records what one node served (observed at key-clock time `at`).
    fn served(
        &mut self,
        at: u64,
        zone: &quorumsign::zone::Zone,
        c: &mut Checkers,
        at_ms: u64,
        node: u64,
    ) -> Option<()> {
        use quorumsign::keys::{RrsigHeader, key_tag_of_rdata};
        use quorumsign::zone::rtype;
        let apex = zone.apex();
        let keys = apex.rrset(rtype::DNSKEY)?;
        let signers = |covered: u16| -> std::collections::BTreeSet<quorumsign::keys::KeyId> {
            apex.sigs
                .iter()
                .filter_map(|(_, d)| RrsigHeader::parse(d).map(|(h, _)| h))
                .filter(|h| h.type_covered == covered)
                .map(|h| key_id(h.key_tag))
                .collect()
        };
        for d in &keys.rdatas {
            if d.len() > 1 && d[1] & 1 == 0 {
                self.zsks.insert(key_tag_of_rdata(d));
            }
        }
        c.key_version(
            at_ms,
            node,
            &mut self.history,
            quorumsign::kasp::sim::ChildVersion {
                at,
                dnskeys: keys
                    .rdatas
                    .iter()
                    .map(|d| key_id(key_tag_of_rdata(d)))
                    .collect(),
                dnskey_signers: signers(rtype::DNSKEY),
                data_signers: signers(rtype::SOA),
                dnskey_ttl: keys.ttl,
                sig_ttl: 300,
            },
        );
        // The registrar: the parent's DS set follows the CDS.
        let cds: std::collections::BTreeSet<u16> = apex
            .rrset(rtype::CDS)
            .map(|r| {
                r.rdatas
                    .iter()
                    .filter(|d| d.len() >= 2)
                    .map(|d| u16::from_be_bytes([d[0], d[1]]))
                    .collect()
            })
            .unwrap_or_default();
        if !cds.is_empty() && cds != self.parent {
            let now = self.now();
            self.history
                .parent
                .push(quorumsign::kasp::sim::ParentVersion {
                    ds: cds.iter().map(|t| key_id(*t)).collect(),
                    earliest: now,
                    latest: now,
                    ttl: 300,
                });
            self.untold = cds.difference(&self.parent).copied().collect();
            self.parent = cds;
        }
        Some(())
    }
}

/// Counts of what the nemesis did.
#[derive(Default)]
struct Tally(std::collections::BTreeMap<String, u32>);

impl Tally {
    fn add(&mut self, what: &str) {
        *self.0.entry(what.to_string()).or_default() += 1;
    }
    fn of(&self, prefix: &str) -> u32 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

fn qs(exe: &Path, args: &[&str]) -> bool {
    Command::new(exe)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What `node` serves: its validated serial and hash, the served text checked, and the
/// served zone.
fn observe_zone(
    n: &LabNode,
    at_ms: u64,
    now: u32,
) -> Option<(Observation, quorumsign::zone::Zone)> {
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
    // Status and text are two requests: a version validated in between makes the text
    // another serial's, whose keys would be taken for this one's. Looked at again later.
    if zone.soa().0 as u64 != serial {
        return None;
    }
    let report = quorumsign::validate::verify_zone(
        &zone,
        &quorumsign::validate::VerifyOptions {
            now,
            trust_anchors: Vec::new(),
            signatures_prechecked: false,
            private_keys: Vec::new(),
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
    Some((
        Observation {
            at_ms,
            node: n.id,
            zone: ZONE.into(),
            serial: serial as u32,
            hash,
            dnskeys,
            min_expiration,
            valid: Some(report.valid),
        },
        zone,
    ))
}

fn main() -> ExitCode {
    let o = Opts::parse();
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("quorumsign");
    let dir = std::env::temp_dir().join(format!("qs-chaos-{}-{}", o.seed, std::process::id()));
    let ids = [1, 2, 3];
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let net = (!o.loopback && root).then(|| Netns {
        name: o.lab.clone(),
        subnet: o.subnet.clone(),
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/netns-lab.sh"),
    });
    // A kind named twice is drawn twice as often.
    let mut kinds = o.kinds.clone();
    if net.is_none() && kinds.contains(&Kind::Partition) {
        println!("partitions need network namespaces (root, not --loopback): left out");
        kinds.retain(|k| *k != Kind::Partition);
    }
    if kinds.is_empty() {
        eprintln!("no fault kinds to draw from");
        return ExitCode::from(2);
    }
    if let Some(n) = &net {
        // Leftovers of an interrupted run would make `up` fail.
        let _ = n.run(&["down", &n.name, "3"]);
        if let Err(e) = n.run(&["up", &n.name, "3", &n.subnet]) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let host = |id: u64| match &net {
        Some(n) => format!("{}.{}", n.subnet, 10 + id),
        None => "127.0.0.1".to_string(),
    };
    let epoch = quorumsign::runtime::wall();
    let extra = if o.no_key_rolls {
        String::new()
    } else {
        format!("[signer]\nkasp_time_scale = {KASP_SCALE}\nkasp_epoch = {epoch}\n")
    };
    let nodes = match lab::write_hosts(&dir, &ids, &ids, o.port, &extra, &host) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    // Each node follows its own fault-control file (the keystore episodes).
    let control = |id: u64| dir.join(format!("fault-{id}.ctl"));
    for n in &nodes {
        let t = std::fs::read_to_string(&n.config).unwrap();
        let t = format!("fault_control = \"fault-{}.ctl\"\n{t}", n.id);
        std::fs::write(&n.config, t).unwrap();
    }
    // The disk episodes fill a small filesystem that holds node 3's data dir (root only).
    let disk_victim = 3u64;
    let small_fs = dir.join(format!("data-{disk_victim}"));
    let mut mounts = Vec::new();
    if kinds.contains(&Kind::Disk) {
        let _ = std::fs::create_dir_all(&small_fs);
        let ok = root
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
                .arg(&small_fs)
                .status()
                .is_ok_and(|s| s.success());
        if ok {
            mounts.push(small_fs.clone());
        } else {
            println!("disk episodes need a small filesystem (root, mount): left out");
            kinds.retain(|k| *k != Kind::Disk);
        }
    }
    let launch: lab::Launcher = match &net {
        None => {
            let exe = exe.clone();
            Box::new(move |n| lab::spawn(&exe, n))
        }
        Some(net) => {
            let (exe, ns) = (exe.clone(), net.name.clone());
            // `ip netns exec` execs the node, so the child is the node itself.
            Box::new(move |n| {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&n.log)
                    .map_err(|e| format!("{}: {e}", n.log.display()))?;
                Command::new("ip")
                    .args(["netns", "exec", &format!("{ns}-{}", n.id)])
                    .arg(&exe)
                    .args(["node", "run", "--config"])
                    .arg(&n.config)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(|e| e.to_string())?)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("ip netns exec: {e}"))
            })
        }
    };
    let mut lab = Lab {
        procs: lab::Procs::new(nodes, launch),
        net,
        mounts,
        paused: Default::default(),
    };
    let start = Instant::now();
    let start_unix_ms = unix_ms();
    let ms = |start: Instant| start.elapsed().as_millis() as u64;
    if let Err(e) = lab.procs.start() {
        eprintln!("lab: {e}");
        return ExitCode::from(2);
    }
    let admin = lab.procs.nodes[0].admin.clone();
    if !qs(&exe, &["cluster", "init", "--admin", &admin]) {
        eprintln!("cluster init failed");
        return ExitCode::from(2);
    }
    let notify_port = o.port + 300;
    let listen_host = match &lab.net {
        Some(n) => format!("{}.1", n.subnet),
        None => "127.0.0.1".to_string(),
    };
    let notifies = notify_listener(&listen_host, notify_port);
    let zone_file = dir.join("chaos.zone");
    let mut text = String::from(
        "$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.53\n",
    );
    std::fs::write(&zone_file, &text).unwrap();
    lab::wait_for(Duration::from_secs(20), || lab.leader());
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut add = vec![
        "zone",
        "add",
        ZONE,
        "--file",
        zone_file.to_str().unwrap(),
        "--admin",
        &admin,
    ];
    let notify = format!("{listen_host}:{notify_port}");
    add.extend(["--notify", &notify]);
    if !o.no_key_rolls {
        add.extend(["--policy", policy.to_str().unwrap()]);
    }
    let mut keys = (!o.no_key_rolls).then(|| Keys {
        epoch,
        history: quorumsign::kasp::sim::History {
            // What the policy promises (POLICY's propagation_delay): no node serves a
            // superseded version longer than that (`Node::stale`).
            propagation: 300,
            negative_ttl: 300,
            parent: vec![quorumsign::kasp::sim::ParentVersion {
                ds: Default::default(),
                earliest: 0,
                latest: 0,
                ttl: 300,
            }],
            ..Default::default()
        },
        parent: Default::default(),
        untold: Vec::new(),
        zsks: Default::default(),
    });
    if !qs(&exe, &add) {
        eprintln!("zone add failed");
        return ExitCode::from(2);
    }
    // A second zone, from a hidden primary that trickles its transfers in `trickle` episodes.
    let primary_port = o.port + 301;
    let primary = Primary::start(&listen_host, primary_port);
    let primary_at = format!("{listen_host}:{primary_port}");
    if !qs(
        &exe,
        &[
            "zone",
            "add",
            primary::ZONE,
            "--primary",
            &primary_at,
            "--admin",
            &admin,
        ],
    ) {
        eprintln!("zone add {} failed", primary::ZONE);
        return ExitCode::from(2);
    }
    let mut rng = Rng(o.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut c = Checkers::default();
    let mut acked: Vec<String> = Vec::new();
    let mut events: Vec<(u64, String)> = Vec::new();
    let mut tally = Tally::default();
    // Observes every running node every 300 ms for `d`.
    let watch = |lab: &Lab, c: &mut Checkers, keys: &mut Option<Keys>, d: Duration| {
        let end = Instant::now() + d;
        loop {
            look(lab, c, keys, ms(start), &exe);
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(300).min(end - Instant::now()));
        }
    };
    for fault in 0..o.faults {
        // Workload: one RRset changed, then a reload asked of any running node.
        let rec = format!("w{fault} TXT \"change {fault}\"");
        if change(&mut text, &zone_file, &rec, &lab, &exe, &mut acked) {
            events.push((
                ms(start),
                format!("fault {fault}: zone changed (w{fault}), reload acknowledged"),
            ));
        }
        let Some(leader) = lab::wait_for(Duration::from_secs(30), || lab.leader()) else {
            c.leader(ms(start), None, 30_000);
            break;
        };
        let mut ev = |what: String| events.push((ms(start), format!("fault {fault}: {what}")));
        match kinds[rng.below(kinds.len() as u64) as usize] {
            Kind::Kill => {
                // Somewhere in the signing or publication of the change.
                std::thread::sleep(Duration::from_millis(rng.below(800)));
                lab.kill(leader);
                ev(format!("SIGKILL leader {leader}"));
                tally.add("kill");
                watch(&lab, &mut c, &mut keys, Duration::from_secs(2));
                lab.restart(leader);
                ev(format!("node {leader} restarted"));
            }
            Kind::Pause => {
                lab.signal(leader, libc::SIGSTOP);
                ev(format!("SIGSTOP leader {leader}"));
                tally.add("pause");
                watch(&lab, &mut c, &mut keys, Duration::from_secs(3));
                lab.signal(leader, libc::SIGCONT);
                ev(format!("SIGCONT node {leader}"));
            }
            Kind::Partition => {
                let others = lab.others(leader);
                let (shape, links): (&str, Vec<(u64, u64)>) = match rng.below(3) {
                    0 => (
                        "leader isolated",
                        others
                            .iter()
                            .flat_map(|o| [(leader, *o), (*o, leader)])
                            .collect(),
                    ),
                    1 => {
                        let f = others[rng.below(others.len() as u64) as usize];
                        (
                            "minority (a follower isolated)",
                            lab.others(f)
                                .iter()
                                .flat_map(|o| [(f, *o), (*o, f)])
                                .collect(),
                        )
                    }
                    _ => (
                        "one-way (the leader's packets to the others dropped)",
                        others.iter().map(|o| (leader, *o)).collect(),
                    ),
                };
                let net = lab.net.as_ref().expect("partitions run in namespaces");
                for (a, b) in &links {
                    net.cut(*a, *b, true);
                }
                ev(format!("partition, {shape}: links {links:?} cut"));
                tally.add(&format!("partition: {shape}"));
                watch(&lab, &mut c, &mut keys, EPISODE);
                for (a, b) in &links {
                    net.cut(*a, *b, false);
                }
                ev("partition healed".into());
            }
            Kind::Keystore => {
                let mode = ["garbage", "wrong-key", "error", "stall"][rng.below(4) as usize];
                let all = rng.below(2) == 0;
                let victims: Vec<u64> = if all { ids.to_vec() } else { vec![leader] };
                for v in &victims {
                    std::fs::write(control(*v), format!("keystore = {mode}\n")).unwrap();
                }
                let scope = if all { "every node" } else { "the leader" };
                ev(format!("keystore of {scope} ({victims:?}): {mode}"));
                tally.add(&format!("keystore: {mode}"));
                watch(&lab, &mut c, &mut keys, EPISODE);
                for v in &victims {
                    std::fs::write(control(*v), "keystore = ok\n").unwrap();
                }
                ev("keystore healed".into());
            }
            Kind::Clock => {
                let jump = [3600i64, -3600, 7 * 86_400][rng.below(3) as usize];
                let victim = lab.procs.nodes[rng.below(3) as usize].id;
                let role = role_of(victim, leader);
                std::fs::write(control(victim), format!("clock = {jump}\n")).unwrap();
                ev(format!("clock of node {victim} ({role}) jumps {jump:+} s"));
                tally.add(&format!("clock: {jump:+} s on a {role}"));
                watch(&lab, &mut c, &mut keys, Duration::from_millis(500));
                // A change to sign while the clock is off.
                let rec = format!("c{fault} TXT \"during the clock jump\"");
                if change(&mut text, &zone_file, &rec, &lab, &exe, &mut acked) {
                    ev(format!(
                        "zone changed (c{fault}) during the clock jump, reload acknowledged"
                    ));
                }
                watch(&lab, &mut c, &mut keys, EPISODE);
                std::fs::write(control(victim), "clock = 0\n").unwrap();
                ev(format!("clock of node {victim} back"));
            }
            Kind::Restore => {
                let victim = lab.procs.nodes[rng.below(3) as usize].id;
                let role = role_of(victim, leader);
                let data = dir.join(format!("data-{victim}"));
                let copy = dir.join(format!("copy-of-{victim}"));
                lab.kill(victim);
                if !copy.exists() {
                    if let Err(e) = lab::copy_dir(&data, &copy) {
                        ev(format!("copy of node {victim}'s data dir: {e}"));
                    }
                    lab.restart(victim);
                    ev(format!(
                        "node {victim} ({role}) stopped, its data dir copied, restarted"
                    ));
                    tally.add("restore copy taken");
                } else {
                    let _ = std::fs::remove_dir_all(&data);
                    if let Err(e) = lab::copy_dir(&copy, &data) {
                        ev(format!("restore of node {victim}'s data dir: {e}"));
                    }
                    let _ = std::fs::remove_dir_all(&copy);
                    lab.restart(victim);
                    ev(format!(
                        "node {victim} ({role}) restored from its older copy"
                    ));
                    tally.add(&format!("restore: a {role}"));
                    watch(&lab, &mut c, &mut keys, EPISODE);
                    // The operator: a node that knows it is an older copy is rejoined.
                    let held = lab::status(&lab.admin(victim)).is_some_and(|s| {
                        s["store_check"]
                            .as_str()
                            .is_some_and(|w| w.contains("restored from an older copy"))
                    });
                    ev(format!("node {victim} held as an older copy: {held}"));
                    if held {
                        // Through any other node, until one takes it (an election may be on).
                        let mut said = String::new();
                        let done = lab::wait_for(Duration::from_secs(30), || {
                            let via = lab.others(victim)[rng.below(2) as usize];
                            let a = quorumsign::admin::client::call(
                                &lab.admin(via),
                                "POST",
                                &format!("/nodes/{victim}/rejoin"),
                                None,
                                Duration::from_secs(30),
                            );
                            said = a.as_ref().map_or_else(
                                |e| e.clone(),
                                |a| format!("{} {}", a.code, a.message()),
                            );
                            a.is_ok_and(|a| a.code == 200).then_some(())
                        });
                        ev(format!("node rejoin {victim}: {said}"));
                        if done.is_none() {
                            tally.add("(restore: rejoin refused)");
                        }
                        // It stops by itself; the exit is seen and it is started again below.
                        lab::wait_for(Duration::from_secs(10), || {
                            lab.procs.node_exited(victim).then_some(())
                        });
                    } else {
                        tally.add("(restore: not recognised)");
                    }
                }
            }
            Kind::Control => {
                let victim = if rng.below(2) == 0 {
                    leader
                } else {
                    let others = lab.others(leader);
                    others[rng.below(others.len() as u64) as usize]
                };
                let role = role_of(victim, leader);
                std::fs::write(control(victim), "control = drop\n").unwrap();
                ev(format!("control traffic of node {victim} ({role}) dropped"));
                tally.add(&format!("control: dropped on a {role}"));
                let rec = format!("n{fault} TXT \"during the control drop\"");
                if change(&mut text, &zone_file, &rec, &lab, &exe, &mut acked) {
                    ev(format!(
                        "zone changed (n{fault}) during the control drop, reload acknowledged"
                    ));
                }
                watch(&lab, &mut c, &mut keys, EPISODE);
                std::fs::write(control(victim), "control = none\n").unwrap();
                ev(format!("control traffic of node {victim} back"));
            }
            Kind::Trickle => {
                // The primary of the second zone trickles every transfer while the episode
                // lasts, and has a new serial: the leader's run of that zone is held in the
                // transfer; the workload's zone must be signed and served as ever.
                primary
                    .trickle
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                let serial = primary
                    .serial
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                let _ = qs(
                    &exe,
                    &[
                        "zone",
                        "reload",
                        primary::ZONE,
                        "--admin",
                        &lab.procs.node(leader).admin.clone(),
                    ],
                );
                ev(format!(
                    "the primary of {} trickles its transfers (serial {serial})",
                    primary::ZONE
                ));
                tally.add("trickle: a primary's transfers");
                let rec = format!("t{fault} TXT \"during the trickle\"");
                if change(&mut text, &zone_file, &rec, &lab, &exe, &mut acked) {
                    ev(format!(
                        "zone changed (t{fault}) during the trickle, reload acknowledged"
                    ));
                }
                watch(&lab, &mut c, &mut keys, EPISODE);
                primary
                    .trickle
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                ev(format!(
                    "the primary of {} sends whole transfers again",
                    primary::ZONE
                ));
            }
            Kind::Disk if rng.below(2) == 0 => {
                // Every flush of one node's Raft log fails as an fsync returning EIO would:
                // the node must stop (nothing unflushed acknowledged) and, restarted by its
                // supervisor once the disk is fixed, catch up.
                let victim = lab.procs.nodes[rng.below(3) as usize].id;
                let role = role_of(victim, leader);
                std::fs::write(control(victim), "disk = fsync-error\n").unwrap();
                ev(format!("fsync errors on node {victim} ({role})"));
                tally.add(&format!("disk: fsync errors on a {role}"));
                let rec = format!("e{fault} TXT \"during the fsync errors\"");
                if change(&mut text, &zone_file, &rec, &lab, &exe, &mut acked) {
                    ev(format!(
                        "zone changed (e{fault}) during the fsync errors, reload acknowledged"
                    ));
                }
                watch(&lab, &mut c, &mut keys, EPISODE);
                std::fs::write(control(victim), "disk = ok\n").unwrap();
                ev(format!("fsync errors on node {victim} end"));
            }
            Kind::Disk => {
                // Fill node 3's filesystem, hold, free it; a node that stopped on the full
                // disk is restarted (as its supervisor would).
                let filler = small_fs.join("filler");
                let mut f = std::fs::File::create(&filler).ok();
                let chunk = vec![0u8; 1 << 20];
                let mut filled = 0u64;
                while let Some(w) = f.as_mut() {
                    use std::io::Write;
                    if w.write_all(&chunk).is_err() || filled > 1 << 30 {
                        break;
                    }
                    filled += chunk.len() as u64;
                }
                drop(f);
                let role = role_of(disk_victim, leader);
                ev(format!(
                    "disk of node {disk_victim} ({role}) full ({} MiB filler)",
                    filled >> 20
                ));
                tally.add(&format!("disk: full on a {role}"));
                // Another change, written while the disk is full.
                let rec = format!("d{fault} TXT \"during the full disk\"");
                if change(&mut text, &zone_file, &rec, &lab, &exe, &mut acked) {
                    ev(format!(
                        "zone changed (d{fault}) on a full disk, reload acknowledged"
                    ));
                }
                watch(&lab, &mut c, &mut keys, EPISODE);
                let _ = std::fs::remove_file(&filler);
                ev(format!("disk of node {disk_victim} freed"));
            }
            Kind::Wipe => {
                let victim = lab.procs.nodes[rng.below(3) as usize].id;
                lab.kill(victim);
                let data = dir.join(format!("data-{victim}"));
                let _ = std::fs::remove_dir_all(&data);
                ev(format!(
                    "node {victim} ({}) killed and its data dir wiped",
                    role_of(victim, leader)
                ));
                tally.add("wipe");
                watch(&lab, &mut c, &mut keys, Duration::from_secs(1));
                lab.restart(victim);
                ev(format!("node {victim} restarted empty"));
            }
        }
        for (id, how) in lab.exited() {
            events.push((
                ms(start),
                format!("fault {fault}: node {id} exited ({how}); restarted"),
            ));
            tally.add("(node exits)");
            lab.restart(id);
        }
        let healed = ms(start);
        // Watch every node until the change is served everywhere (or the bound passes).
        let mut published = None;
        while ms(start) < healed + o.bound_s * 1000 {
            let obs = look(&lab, &mut c, &mut keys, ms(start), &exe);
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
    // The audit log as the leader holds it (a wiped node may still be catching up).
    let audit_from = lab::wait_for(Duration::from_secs(30), || lab.leader())
        .map(|l| lab.admin(l))
        .unwrap_or(admin.clone());
    let log: Vec<String> = quorumsign::admin::client::call(
        &audit_from,
        "GET",
        "/audit",
        None,
        Duration::from_secs(10),
    )
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
    if let Some(k) = &keys {
        c.removals(ms(start), &k.history);
    }
    for (at, token) in notifies.lock().unwrap().iter() {
        // NOTIFY carries no serial: P checks the token order here; S checks serials.
        c.notify(at.saturating_sub(start_unix_ms), ZONE, *token, 0);
    }
    // The zone whose primary trickled catches up once its transfers are whole again.
    let want = primary.serial.load(std::sync::atomic::Ordering::SeqCst) as u64;
    let caught = lab::wait_for(Duration::from_secs(2 * o.bound_s), || {
        let l = lab.leader()?;
        lab::validated_serial(&lab.admin(l), primary::ZONE).filter(|(s, _)| *s >= want)
    });
    let primary_line = format!(
        "  {}: {} the primary's serial {want} ({} transfers whole, {} trickled)",
        primary::ZONE,
        if caught.is_some() {
            "caught up with"
        } else {
            "BEHIND"
        },
        primary.whole.load(std::sync::atomic::Ordering::SeqCst),
        primary.trickled.load(std::sync::atomic::Ordering::SeqCst),
    );
    let total: u32 = tally
        .0
        .iter()
        .filter(|(k, _)| !k.starts_with('('))
        .map(|(_, v)| v)
        .sum();
    println!(
        "seed {} faults {total} (leader kills {}, leader pauses {}, partitions {}, keystore episodes {}, wiped nodes {}, clock jumps {}, disk faults {}, control drops {}, restores {}, trickles {}) in {:.1} s",
        o.seed,
        tally.of("kill"),
        tally.of("pause"),
        tally.of("partition"),
        tally.of("keystore"),
        tally.of("wipe"),
        tally.of("clock"),
        tally.of("disk"),
        tally.of("control"),
        tally.of("restore: a"),
        tally.of("trickle"),
        start.elapsed().as_secs_f64()
    );
    for (what, n) in &tally.0 {
        println!("  {what}: {n}");
    }
    println!("{primary_line}");
    if let Some(k) = &keys {
        println!(
            "  key rolls: {} ZSKs served ({:?}), {} DNSKEY/signer versions recorded, DS at the parent for {:?}",
            k.zsks.len(),
            k.zsks,
            k.history.child.len(),
            k.parent
        );
    }
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
    let all: String = events
        .iter()
        .map(|(at, e)| format!("{at:>8} ms  {e}\n"))
        .collect();
    let _ = std::fs::write(dir.join("events.log"), all);
    if c.violations.is_empty() && !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!(
            "node logs and the whole event history (events.log) kept in {}",
            dir.display()
        );
    }
    // Non-zero on a violation only (--keep keeps the directory, nothing more).
    if c.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// How the event log names node `id`'s part when a fault hit it.
fn role_of(id: u64, leader: u64) -> &'static str {
    if id == leader { "leader" } else { "follower" }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A secondary that only listens: every NOTIFY is answered and its fencing token (EDNS
/// option 65001: term, index) recorded with the time it came.
fn notify_listener(
    host: &str,
    port: u16,
) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, (u64, u64))>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sock = std::net::UdpSocket::bind((host, port)).expect("NOTIFY listener port");
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let m = &buf[..n];
            let opt = quorumsign::dns::TOKEN_OPTION.to_be_bytes();
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

/// The workload's step: `record` added to the zone file, then a reload asked of a running
/// node. An acknowledged reload is remembered: it must be in the audit log at the end (A).
fn change(
    text: &mut String,
    zone_file: &Path,
    record: &str,
    lab: &Lab,
    exe: &Path,
    acked: &mut Vec<String>,
) -> bool {
    text.push_str(record);
    text.push('\n');
    std::fs::write(zone_file, &*text).unwrap();
    let target = lab.running()[0].admin.clone();
    let ok = qs(exe, &["zone", "reload", ZONE, "--admin", &target]);
    if ok {
        acked.push(format!("zone reload {ZONE}"));
    }
    ok
}

/// One look at every running node: the checkers get what each serves, the key-roll record
/// gets its keys, and the cluster is told about DS records the parent now holds.
fn look(
    lab: &Lab,
    c: &mut Checkers,
    keys: &mut Option<Keys>,
    at_ms: u64,
    exe: &Path,
) -> Vec<Observation> {
    let now = quorumsign::runtime::wall() as u32;
    let mut out = Vec::new();
    for n in lab.answering() {
        let at = keys.as_ref().map(|k| k.now());
        if let Some((x, zone)) = observe_zone(n, at_ms, now) {
            c.observe(&x, now, 3600);
            if let (Some(k), Some(at)) = (keys.as_mut(), at) {
                k.served(at, &zone, c, at_ms, n.id);
            }
            out.push(x);
        }
    }
    if let Some(k) = keys.as_mut()
        && !k.untold.is_empty()
        && let Some(l) = lab.leader()
    {
        let admin = lab.admin(l);
        k.untold.retain(|tag| {
            !qs(
                exe,
                &[
                    "keys",
                    "ds-seen",
                    ZONE,
                    &tag.to_string(),
                    "--ttl",
                    "300",
                    "--admin",
                    &admin,
                ],
            )
        });
    }
    out
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
