//! A real network partition: three nodes, each in its own network namespace made by
//! `cluster/netns-lab.sh` (the test creates and removes them). The leader is cut off; the
//! majority elects a new leader that publishes; the isolated one self-fences and publishes
//! nothing; after healing, every node holds the same version and there was exactly one
//! publisher per version.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::qs;
use quorumsign::testkit::lab::{self, LabNode};

const ZONE: &str = "example.";
const LAB: &str = "qspart";
const SUBNET: &str = "10.77.0";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/netns-lab.sh")
}

/// The script runs as root (network namespaces need CAP_NET_ADMIN): directly when the tests
/// run as root, through `sudo -n` otherwise.
fn sh() -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Command::new("bash")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "bash"]);
        c
    }
}

fn netns(args: &[&str]) {
    let out = sh()
        .arg(script())
        .args(args)
        .output()
        .expect("run netns-lab.sh");
    assert!(
        out.status.success(),
        "netns-lab.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    dir: tempfile::TempDir,
    nodes: Vec<LabNode>,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Through sudo the killed child is sudo, not the node: stop the nodes by their configs.
        let mut k = if unsafe { libc::geteuid() } == 0 {
            Command::new("pkill")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "pkill"]);
            c
        };
        let _ = k
            .arg("-f")
            .arg(self.dir.path().display().to_string())
            .output();
        let _ = sh().arg(script()).args(["down", LAB, "3"]).output();
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("--- node {} log (newest first):\n{}", n.id, tail.join("\n"));
            }
        }
    }
}

fn log_of(n: &LabNode) -> String {
    std::fs::read_to_string(&n.log).unwrap_or_default()
}

#[test]
fn an_isolated_leader_self_fences_and_the_majority_publishes_alone() {
    // Leftovers of an interrupted run would make `up` fail.
    let _ = sh().arg(script()).args(["down", LAB, "3"]).output();
    netns(&["up", LAB, "3", SUBNET]);
    let dir = tempfile::tempdir().unwrap();
    let host = |id: u64| format!("{SUBNET}.{}", 10 + id);
    let nodes = lab::write_hosts(dir.path(), &[1, 2, 3], &[1, 2, 3], 7100, "", &host).unwrap();
    let mut l = Lab {
        dir,
        nodes,
        children: Vec::new(),
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_quorumsign"));
    for n in &l.nodes {
        let log = std::fs::File::create(&n.log).unwrap();
        let child = sh()
            .arg(script())
            .args(["exec", LAB, &n.id.to_string()])
            .arg(&exe)
            .args(["node", "run", "--config"])
            .arg(&n.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        l.children.push(child);
    }
    for n in &l.nodes {
        lab::wait_for(Duration::from_secs(20), || lab::status(&n.admin)).expect("node answers");
    }
    let (code, out, err) = qs(&["cluster", "init", "--admin", &l.nodes[0].admin]);
    assert_eq!(code, 0, "{out}{err}");
    let leader = lab::wait_for(Duration::from_secs(20), || {
        lab::leader_of(&l.nodes[0].admin)
    })
    .expect("a leader");
    let zone = l.dir.path().join("example.zone");
    std::fs::copy(common::example_zone(), &zone).unwrap();
    let (code, out, err) = qs(&[
        "zone",
        "add",
        ZONE,
        "--file",
        zone.to_str().unwrap(),
        "--admin",
        &l.nodes[0].admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let converged = |ids: &[u64], above: u64| {
        lab::wait_for(Duration::from_secs(60), || {
            let v: Vec<(u64, String)> = ids
                .iter()
                .map(|i| lab::validated_serial(&l.nodes[*i as usize - 1].admin, ZONE))
                .collect::<Option<_>>()?;
            (v[0].0 > above && v.iter().all(|x| *x == v[0])).then(|| v[0].clone())
        })
        .unwrap_or_else(|| panic!("nodes {ids:?} did not converge above {above}"))
    };
    let (serial, _) = converged(&[1, 2, 3], 0);

    // Cut the leader off.
    netns(&["isolate", LAB, &leader.to_string()]);
    let cut_at = Instant::now();
    let others: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let mut t = std::fs::read_to_string(&zone).unwrap();
    t.push_str("partitioned IN TXT \"written while the leader was cut off\"\n");
    std::fs::write(&zone, t).unwrap();
    let new_leader = lab::wait_for(Duration::from_secs(30), || {
        lab::leader_of(&l.nodes[others[0] as usize - 1].admin).filter(|x| *x != leader)
    })
    .expect("the majority elects a new leader");
    let (during, _) = converged(&others, serial);
    let old = &l.nodes[leader as usize - 1];
    lab::wait_for(Duration::from_secs(15), || {
        log_of(old)
            .contains("self-fenced: no quorum acknowledgement")
            .then_some(())
    })
    .expect("the isolated leader self-fences");
    std::thread::sleep(Duration::from_secs(2));
    let isolated_for = cut_at.elapsed();

    // Heal: one version everywhere, published by the new leader only.
    netns(&["heal", LAB, &leader.to_string()]);
    let (after, hash) = converged(&[1, 2, 3], serial);
    assert!(after >= during);
    let st = lab::status(&old.admin).unwrap();
    assert_eq!(st["role"], "follower", "{st}");
    let z = lab::zone_of(&st, ZONE).unwrap();
    assert_eq!(z["hash"].as_str(), Some(hash.as_str()));
    assert_eq!(z["published_by"].as_u64(), Some(new_leader));
    // The old leader published nothing after it was cut off: its log has no "published"
    // line with a serial above the one before the partition.
    let published_late: Vec<String> = log_of(old)
        .lines()
        .filter(|l| l.contains(" published "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("serial="))
                .and_then(|s| s.parse::<u64>().ok())
        })
        .filter(|s| *s > serial)
        .map(|s| s.to_string())
        .collect();
    assert!(
        published_late.is_empty(),
        "the isolated leader published {published_late:?} during {isolated_for:?}"
    );
    let newlog = log_of(&l.nodes[new_leader as usize - 1]);
    assert!(
        newlog.contains(&format!("serial={during}")),
        "the new leader published {during}"
    );
}
