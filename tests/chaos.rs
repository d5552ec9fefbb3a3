//! The chaos harness's smoke run: a real three-node cluster (each node in its own network
//! namespace when the tests run as root), a zone change before each fault, faults of every
//! kind from a seed (leader kills, pauses, partitions, keystore episodes, wiped nodes, clock
//! jumps, a full disk, node-to-node control traffic dropped, a node restored from an older copy
//! of its data dir and rejoined, a second zone's primary trickling its transfers), and
//! the key-roll workload (ZSK rolls on a key clock 100× real time), and the invariant
//! checkers (V S K F L P A R) over what every node serves; the run must end with every kind
//! applied, checks made and no violation.

use std::process::Command;

#[test]
fn smoke_run_of_every_fault_kind_finds_no_violation() {
    let out = Command::new(env!("CARGO_BIN_EXE_quorumsign-chaos"))
        .args([
            "--seed", "11", "--faults", "50", "--port", "22700", "--lab", "qssmoke", "--subnet",
            "10.81.0",
        ])
        .output()
        .expect("quorumsign-chaos runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chaos run failed:\n{text}\n{err}");
    assert!(text.contains("faults 50 "), "{text}");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut kinds = vec![
        "leader kills",
        "leader pauses",
        "keystore episodes",
        "wiped nodes",
        "control drops",
    ];
    if root {
        kinds.push("partitions");
    }
    for k in kinds {
        let n: u32 = text
            .split(&format!("{k} "))
            .nth(1)
            .and_then(|r| r.split([',', ')']).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count of {k}:\n{text}"));
        assert!(n >= 2, "only {n} {k}:\n{text}");
    }
    let restores: u32 = text
        .split("restores ")
        .nth(1)
        .and_then(|r| r.split([',', ')']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of restores:\n{text}"));
    assert!(restores >= 1, "no restore:\n{text}");
    let trickles: u32 = text
        .split("trickles ")
        .nth(1)
        .and_then(|r| r.split([',', ')']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of trickles:\n{text}"));
    assert!(trickles >= 1, "no trickling primary:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("slow.: caught up with the primary's serial")),
        "the zone whose primary trickled caught up:\n{text}"
    );
    assert!(!text.contains("(restore: not recognised)"), "{text}");
    assert!(!text.contains("(restore: rejoin refused)"), "{text}");
    for inv in ['V', 'S', 'K', 'F', 'L', 'A', 'R'] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{inv}:")))
            .unwrap_or_else(|| panic!("no {inv} line:\n{text}"));
        assert!(
            !line.contains(" 0 checks") && line.ends_with(" 0 violations"),
            "{line}"
        );
    }
}
