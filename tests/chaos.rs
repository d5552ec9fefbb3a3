//! The chaos harness's smoke run: a real three-node cluster, leader kills and pauses from a
//! seed, a zone change before each, and the invariant checkers (V S K F L P A) over what
//! every node serves; the run must end with checks made and no violation.

use std::process::Command;

#[test]
fn smoke_run_of_leader_kills_and_pauses_finds_no_violation() {
    let out = Command::new(env!("CARGO_BIN_EXE_quorumsign-chaos"))
        .args(["--seed", "11", "--faults", "10", "--port", "22700"])
        .output()
        .expect("quorumsign-chaos runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chaos run failed:\n{text}\n{err}");
    assert!(text.contains("faults 10"), "{text}");
    for inv in ['V', 'S', 'K', 'F', 'L', 'A'] {
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
