//! Leadership with real node processes on 127.0.0.1: a leader cut off from the majority
//! fences itself; a new leader fences its predecessor (and a failing fence blocks signing);
//! the failover and HSM-loss drills; a witness that votes and never signs; node replace.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::example::Cluster;
use common::qs;
use quorumsign::testkit::lab;
use serde_json::Value;

const ZONE: &str = "example.";

#[test]
fn leader_cut_off_from_the_majority_self_fences_until_it_hears_from_it_again() {
    let mut c = Cluster::start_with(3, 19300, "", |n| {
        let t = std::fs::read_to_string(&n.config).unwrap();
        let t = t.replace("[dns]\n", "[dns]\nstop_transfers_when_fenced = true\n");
        std::fs::write(&n.config, t).unwrap();
    });
    let (serial, _) = c.converged(0);
    let leader = c.leader();
    let (code, out, err) = qs(&[
        "zone",
        "set",
        ZONE,
        "--transfer",
        "127.0.0.0/8 key xfr-key",
        "--admin",
        &c.node(leader).admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let key = format!(
        "hmac-sha256:xfr-key:{}",
        lab::lab_tsig_secret(c.dir.path()).unwrap()
    );
    let port = c.node(leader).dns.rsplit(':').next().unwrap().to_string();
    let axfr = || {
        common::tool(
            "dig",
            &[
                "@127.0.0.1",
                "-p",
                &port,
                "+time=2",
                "+tries=1",
                "-y",
                &key,
                ZONE,
                "AXFR",
            ],
        )
        .1
    };
    assert!(
        axfr().contains("XFR size"),
        "transfers served before the cut"
    );
    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    // Both followers frozen: the leader still runs but no quorum answers it.
    for f in &followers {
        c.kill(*f, libc::SIGSTOP);
    }
    c.append_record("cutoff IN TXT \"changed while the leader had no quorum\"");
    let log = &c.node(leader).log;
    lab::wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(log)
            .ok()?
            .contains("self-fenced: no quorum acknowledgement")
            .then_some(())
    })
    .expect("the isolated leader logs that it self-fenced");
    // Past the longest election timeout: it has lost its quorum, not just been slow.
    std::thread::sleep(Duration::from_secs(3));
    let st = lab::status(&c.node(leader).admin).unwrap();
    assert!(
        st["self_fenced"]
            .as_str()
            .is_some_and(|w| w.contains("no quorum")),
        "status shows the self-fence: {st}"
    );
    let z = lab::zone_of(&st, ZONE).unwrap();
    assert_eq!(
        z["serial"].as_u64(),
        Some(serial),
        "no version while cut off: {z}"
    );
    let out = axfr();
    assert!(
        !out.contains("XFR size"),
        "a self-fenced leader refuses transfers (stop_transfers_when_fenced):\n{out}"
    );
    // The followers come back: the fenced leader resumes only as a follower (it hands
    // leadership on), the new leader publishes the change, and every node agrees.
    for f in &followers {
        c.kill(*f, libc::SIGCONT);
    }
    let (next, _) = c.converged(serial);
    assert!(next > serial);
    let now = lab::wait_for(Duration::from_secs(20), || {
        Some(c.leader()).filter(|l| *l != leader)
    })
    .expect("the self-fenced leader hands leadership on and stays a follower");
    c.append_record("after IN TXT \"published by the next leader\"");
    let (last, _) = c.converged(next);
    assert!(last > next);
    assert_eq!(c.zone_status(now)["published_by"].as_u64(), Some(now));
    let st = lab::status(&c.node(leader).admin).unwrap();
    assert_eq!(st["role"], "follower", "{st}");
}

/// The lab fence (`fencing/fence-file.sh`) recording into a fresh directory: the directory's
/// guard, the directory, and a `[fence]` section (no retries) to extend.
fn lab_fence() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let fence_dir = dir.path().join("fence");
    std::fs::create_dir_all(&fence_dir).unwrap();
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("fencing/fence-file.sh");
    let section = format!(
        "[fence]\ncommand = [\"{}\", \"{}\"]\nretries = 0\n",
        hook.display(),
        fence_dir.display()
    );
    (dir, fence_dir, section)
}

#[test]
fn new_leader_fences_its_predecessor_and_a_failing_fence_blocks_signing() {
    let (_dir, fence_dir, fence) = lab_fence();
    let extra = format!("{fence}timeout_s = 10\n");
    let mut c = Cluster::start(3, 19500, &extra);
    let (serial, _) = c.converged(0);
    // Every node's readiness shows the hook as executable.
    let st = lab::status(&c.node(1).admin).unwrap();
    assert!(
        st["readiness"]["fence"]
            .as_str()
            .unwrap()
            .contains("(executable)"),
        "{}",
        st["readiness"]
    );

    // The leader dies: the next one fences it before it signs.
    let first = c.leader();
    c.kill(first, libc::SIGKILL);
    c.append_record("f1 IN TXT \"after the first failover\"");
    let (serial2, _) = c.converged(serial);
    let record = std::fs::read_to_string(fence_dir.join(format!("fenced-node-{first}")))
        .expect("the new leader ran the fence hook against the old one");
    assert!(record.contains("did not hand over"), "{record}");
    let second = c.leader();
    let audit = qs(&["cluster", "audit", "--admin", &c.node(second).admin]).1;
    assert!(
        audit.contains(&format!("fence node {first}")) && audit.contains("fenced (lab file)"),
        "the fence is in the audit log:\n{audit}"
    );

    // A clean handover does not fence.
    c.restart(first);
    let (serial3, _) = c.converged(serial2 - 1);
    let fenced_before = std::fs::read_dir(&fence_dir).unwrap().count();
    let (code, out, err) = qs(&[
        "leader",
        "transfer",
        "--to",
        &first.to_string(),
        "--admin",
        &c.node(second).admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    lab::wait_for(Duration::from_secs(20), || {
        (lab::leader_of(&c.node(first).admin) == Some(first)).then_some(())
    })
    .expect("leadership moved");
    c.append_record("f2 IN TXT \"after the handover\"");
    let (serial4, _) = c.converged(serial3);
    assert_eq!(
        std::fs::read_dir(&fence_dir).unwrap().count(),
        fenced_before,
        "no fence after a clean handover"
    );
    assert!(
        !std::fs::read_to_string(fence_dir.join(format!("fenced-node-{second}")))
            .unwrap_or_default()
            .contains(&format!("node={second}")),
        "node {second} handed over and was not fenced"
    );

    // The fence fails: the next leader does not sign until an operator confirms a fence.
    std::fs::write(fence_dir.join("fail"), "the PDU does not answer").unwrap();
    let leader = c.leader();
    c.kill(leader, libc::SIGKILL);
    c.append_record("f3 IN TXT \"while the fence fails\"");
    let next = c.leader();
    let blocked = lab::wait_for(Duration::from_secs(30), || {
        let s = lab::status(&c.node(next).admin)?;
        s["fence_block"].as_str().map(str::to_string)
    })
    .expect("the new leader is blocked by the failed fence");
    assert!(blocked.contains("the PDU does not answer"), "{blocked}");
    std::thread::sleep(Duration::from_secs(2));
    let z = c.zone_status(next);
    assert_eq!(
        z["serial"].as_u64(),
        Some(serial4),
        "nothing signed while blocked"
    );
    let audit = qs(&["cluster", "audit", "--admin", &c.node(next).admin]).1;
    assert!(
        audit.contains("refused: fence of node"),
        "failed fence in the audit:\n{audit}"
    );
    let (code, out, err) = qs(&[
        "node",
        "fence",
        &leader.to_string(),
        "--manual",
        "--admin",
        &c.node(next).admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (serial5, _) = c.converged(serial4);
    assert!(serial5 > serial4);
    let z = c.zone_status(next);
    assert_eq!(z["published_by"].as_u64(), Some(next));
}

#[test]
fn drill_failover_checks_first_then_hands_over_with_the_same_keys() {
    let mut c = Cluster::start(3, 19700, "");
    let (serial, _) = c.converged(0);
    let leader = c.leader();
    let admin = c.node(leader).admin.clone();
    // Dry run: checks pass, nothing changes.
    let (code, out, err) = qs(&[
        "drill",
        "failover",
        "--dry-run",
        "--json",
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(out.contains("would hand over"), "{out}");
    assert_eq!(c.leader(), leader, "a dry run changes nothing");
    // Refused: the target is the leader itself; a frozen target does not answer.
    let (code, out, _) = qs(&[
        "drill",
        "failover",
        "--to",
        &leader.to_string(),
        "--admin",
        &admin,
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("FAIL target") && out.contains("nothing changed"),
        "{out}"
    );
    let other = (1..=3).find(|i| *i != leader).unwrap();
    c.kill(other, libc::SIGSTOP);
    let (code, out, _) = qs(&[
        "drill",
        "failover",
        "--to",
        &other.to_string(),
        "--admin",
        &admin,
    ]);
    c.kill(other, libc::SIGCONT);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAIL target answers"), "{out}");
    // (A node back from a freeze may call an election: let the cluster settle.)
    std::thread::sleep(Duration::from_secs(3));
    let leader = c.leader();
    let admin = c.node(leader).admin.clone();
    let other = (1..=3).find(|i| *i != leader).unwrap();
    // The real drill.
    let (code, out, err) = qs(&[
        "drill",
        "failover",
        "--to",
        &other.to_string(),
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for step in [
        "ok   new leader: node",
        "ok   published by the new leader",
        "ok   nothing re-signed that was not due",
        "ok   DNSKEY RRset identical",
        "drill failover passed",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
    assert_eq!(c.leader(), other);
    let (next, _) = c.converged(serial);
    assert!(next > serial);
}

#[test]
fn a_witness_votes_but_never_signs_and_hands_leadership_on() {
    let mut c = Cluster::start_with(3, 19900, "", |n| {
        if n.id == 3 {
            let t = std::fs::read_to_string(&n.config).unwrap();
            std::fs::write(&n.config, format!("witness = true\n{t}")).unwrap();
        }
    });
    let (serial, _) = c.converged(0);
    let st = lab::status(&c.node(3).admin).unwrap();
    assert_eq!(st["witness"], true);
    assert_eq!(
        st["readiness"]["ready"], false,
        "a witness is never a ready signer"
    );
    assert_ne!(c.zone_status(1)["published_by"].as_u64(), Some(3));
    // Leadership handed to the witness comes straight back to a signer.
    let leader = c.leader();
    let (code, out, err) = qs(&[
        "leader",
        "transfer",
        "--to",
        "3",
        "--admin",
        &c.node(leader).admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    lab::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&c.node(3).log)
            .ok()?
            .contains("witness handed leadership")
            .then_some(())
    })
    .expect("the witness hands leadership on");
    std::thread::sleep(Duration::from_secs(1));
    let signer = c.leader();
    assert_ne!(signer, 3);
    c.append_record("w1 IN TXT \"after the witness\"");
    let (serial2, _) = c.converged(serial);
    assert_eq!(c.zone_status(1)["published_by"].as_u64(), Some(signer));
    // The signer dies: the other signer takes over (the witness, if elected, hands on).
    c.kill(signer, libc::SIGKILL);
    c.append_record("w2 IN TXT \"after the signer died\"");
    let (_, _) = c.converged(serial2);
    let other = if signer == 1 { 2 } else { 1 };
    assert_eq!(c.zone_status(other)["published_by"].as_u64(), Some(other));
    assert_eq!(c.zone_status(3)["published_by"].as_u64(), Some(other));
}

#[test]
fn node_replace_fences_joins_and_removes_and_unsafe_steps_are_refused() {
    let (_dir, fence_dir, fence) = lab_fence();
    let extra = format!("{fence}[raft]\nsnapshot_every = 10\n");
    let mut c = Cluster::start(3, 20100, &extra);
    let (serial, _) = c.converged(0);
    let leader = c.leader();
    let admin = c.node(leader).admin.clone();
    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let (victim, other) = (followers[0], followers[1]);
    // Refused: removing the leader; with one follower down, removing or fencing the other.
    let (code, out, err) = qs(&["node", "remove", &leader.to_string(), "--admin", &admin]);
    assert_ne!(code, 0);
    assert!(
        (out.clone() + &err).contains("it is the leader"),
        "{out}{err}"
    );
    c.kill(victim, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(2));
    for args in [
        vec!["node", "remove", &*other.to_string()],
        vec!["node", "fence", &*other.to_string()],
    ] {
        let mut a: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        a.extend(["--admin", &admin]);
        let (code, out, err) = qs(&a);
        assert_ne!(code, 0, "{a:?} must be refused");
        assert!(
            (out.clone() + &err).contains("would leave"),
            "{a:?}: {out}{err}"
        );
    }
    assert!(
        !fence_dir.join(format!("fenced-node-{other}")).exists(),
        "a refused fence runs no hook"
    );
    // The frozen node is replaced by node 4: fenced, joined from a snapshot, removed.
    c.kill(victim, libc::SIGKILL);
    let n4 = lab::write(c.dir.path(), &[4], &[1, 2, 3, 4], c.port, &extra)
        .unwrap()
        .remove(0);
    c.procs.add(n4.clone()).unwrap();
    lab::wait_for(Duration::from_secs(20), || lab::status(&n4.admin)).expect("node 4 answers");
    let (code, out, err) = qs(&[
        "node",
        "replace",
        &victim.to_string(),
        "--with",
        "4",
        "--raft",
        &n4.raft,
        "--node-admin",
        &n4.https,
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "node replace: {out}{err}");
    for s in [
        "fenced",
        "joined as a voter",
        "validated every zone",
        "removed; node 4 replaces it",
    ] {
        assert!(out.contains(s), "missing {s:?}:\n{out}");
    }
    assert!(fence_dir.join(format!("fenced-node-{victim}")).exists());
    let st = lab::status(&admin).unwrap();
    let mut voters: Vec<u64> = st["voters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    voters.sort();
    let mut want = vec![leader, other, 4];
    want.sort();
    assert_eq!(voters, want);
    c.append_record("r1 IN TXT \"after the replacement\"");
    let (next, _) = c.converged(serial);
    assert_eq!(lab::validated_serial(&n4.admin, ZONE).unwrap().0, next);
}

#[test]
fn drill_hsm_loss_moves_signing_to_a_ready_standby_and_reports_the_gap() {
    let c = Cluster::start(3, 20300, "");
    let (serial, _) = c.converged(0);
    let leader = c.leader();
    let admin = c.node(leader).admin.clone();
    let (code, out, err) = qs(&["drill", "hsm-loss", "--dry-run", "--admin", &admin]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("would take node"), "{out}");
    assert_eq!(c.leader(), leader, "a dry run changes nothing");
    let (code, out, err) = qs(&["drill", "hsm-loss", "--json", "--admin", &admin]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    for s in [
        "keystore taken away",
        "leader stepped down",
        "published by the standby",
        "publication gap",
        "keystore given back",
    ] {
        assert!(steps.contains(&s), "missing {s}: {v}");
    }
    let new = c.leader();
    assert_ne!(new, leader);
    let (next, _) = c.converged(serial);
    assert_eq!(c.zone_status(new)["published_by"].as_u64(), Some(new));
    assert!(next > serial);
    // The old leader's keystore is back: ready again, and it audited both changes.
    let st = lab::status(&admin).unwrap();
    assert_eq!(st["readiness"]["ready"], true, "{}", st["readiness"]);
    let audit = qs(&["cluster", "audit", "--admin", &admin]).1;
    assert!(
        audit.contains("available=false") && audit.contains("available=true"),
        "{audit}"
    );
}
