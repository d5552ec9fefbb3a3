//! A node restored from an older copy of its data dir, with real node processes: the
//! operator's VM-snapshot restore of a follower while the leader is killed must not make
//! the cluster publish a serial again with another content; the restored node refuses to
//! vote or acknowledge until `node rejoin`, after which it serves the same content.

mod common;

use std::time::Duration;

use common::qs;
use quorumsign::testkit::lab;
use serde_json::Value;

const ZONE: &str = "example.";

/// (serial, hash) of the zone as node `n` serves it (validated), if it answers.
fn served(n: &lab::LabNode) -> Option<(u64, String)> {
    lab::validated_serial(&n.admin, ZONE)
}

fn status(n: &lab::LabNode) -> Option<Value> {
    lab::status(&n.admin)
}

#[test]
fn a_follower_restored_from_an_old_copy_never_makes_a_serial_mean_two_contents() {
    restored(23300, false);
}

#[test]
fn the_leader_restored_from_an_old_copy_never_makes_a_serial_mean_two_contents() {
    restored(23500, true);
}

/// The scenario: node A's data dir copied while A is briefly stopped (A is the leader then
/// when `leader_copied`, a follower otherwise), A running again; B stopped and a change
/// published by the leader L and A; A restored from the copy and L killed; A and B started.
fn restored(port: u16, leader_copied: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut procs = common::example_lab(d, 3, port, "");
    let zone = d.join("example.zone");
    let first = procs
        .converged(ZONE, 0, Duration::from_secs(60))
        .expect("first version")[0]
        .0;
    let first_leader = procs.agreed_leader(Duration::from_secs(30)).unwrap();
    let a = if leader_copied {
        first_leader
    } else {
        [1, 2, 3].into_iter().find(|i| *i != first_leader).unwrap()
    };

    // --- phase: A's data dir copied while A is briefly stopped; A runs again.
    procs.kill(a);
    let data_a = d.join(format!("data-{a}"));
    let copy = d.join("copy-of-a");
    lab::copy_dir(&data_a, &copy).unwrap();
    let leader = lab::wait_for(Duration::from_secs(30), || {
        procs
            .agreed_leader(Duration::from_secs(1))
            .filter(|l| *l != a)
    })
    .expect("a leader other than A");
    procs.restart(a).unwrap();
    let b = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader && *i != a)
        .unwrap();
    // The leader records A's new incarnation, on every running node.
    let incarnation = lab::wait_for(Duration::from_secs(20), || {
        let s = status(procs.node(a))?;
        s["store_check"]
            .is_null()
            .then(|| s["store"]["incarnation"].as_str().map(str::to_string))?
    })
    .expect("A passes its store check");
    lab::wait_for(Duration::from_secs(20), || {
        [leader, b]
            .iter()
            .all(|n| {
                status(procs.node(*n)).is_some_and(|s| {
                    format!(
                        "{:x}",
                        s["stores"][a.to_string()]["incarnation"]
                            .as_u64()
                            .unwrap_or(0)
                    ) == incarnation
                })
            })
            .then_some(())
    })
    .expect("every node records A's new incarnation");

    // --- phase: B stopped; a change published by the leader and A.
    procs.kill(b);
    let mut text = std::fs::read_to_string(&zone).unwrap();
    text.push_str("restored 300 IN A 192.0.2.99\n");
    std::fs::write(&zone, text).unwrap();
    let (code, out, err) = qs(&["zone", "reload", ZONE, "--admin", &procs.node(a).admin]);
    assert_eq!(code, 0, "{out}{err}");
    let second = procs
        .converged(ZONE, first, Duration::from_secs(60))
        .expect("second version");
    let (serial2, hash2) = second[0].clone();

    // --- phase: A restored from the copy, the leader SIGKILLed, A and B started.
    procs.kill(a);
    std::fs::remove_dir_all(&data_a).unwrap();
    lab::copy_dir(&copy, &data_a).unwrap();
    procs.kill(leader);
    procs.restart(a).unwrap();
    procs.restart(b).unwrap();
    let why = lab::wait_for(Duration::from_secs(20), || {
        status(procs.node(a))?["store_check"]
            .as_str()
            .map(str::to_string)
            .filter(|w| w.contains("restored from an older copy"))
    })
    .expect("A knows it was restored from an older copy");
    assert!(why.contains("incarnation"), "{why}");
    // Neither A nor B publishes anything while the old leader is away: B alone has no
    // majority, and A grants no vote.
    let conflict = lab::wait_for(Duration::from_secs(10), || {
        [a, b].iter().find_map(|n| {
            let (s, h) = served(procs.node(*n))?;
            (s >= serial2 && h != hash2).then(|| format!("node {n} serves {s} {h}"))
        })
    });
    assert_eq!(conflict, None, "a serial with another content");
    for n in [a, b] {
        let s = status(procs.node(n)).unwrap();
        assert_ne!(s["role"], "leader", "node {n} leads: {s}");
    }

    // --- phase: the old leader back: B and it carry the second version; A stays held.
    procs.restart(leader).unwrap();
    lab::wait_for(Duration::from_secs(60), || {
        [leader, b]
            .iter()
            .all(|n| served(procs.node(*n)) == Some((serial2, hash2.clone())))
            .then_some(())
    })
    .expect("the old leader and B serve the second version");
    assert!(
        status(procs.node(a)).unwrap()["store_check"]
            .as_str()
            .is_some_and(|w| w.contains("restored")),
        "A released"
    );

    // --- phase: node rejoin: A wipes its store, is started again and re-learns.
    let admin = procs.node(b).admin.clone();
    let rejoin = std::thread::spawn(move || {
        qs(&[
            "node",
            "rejoin",
            &a.to_string(),
            "--wait-s",
            "120",
            "--admin",
            &admin,
        ])
    });
    lab::wait_for(Duration::from_secs(20), || {
        procs.exited().iter().any(|(id, _)| *id == a).then_some(())
    })
    .expect("A stops after wiping its store");
    procs.restart(a).unwrap();
    let (code, out, err) = rejoin.join().unwrap();
    assert_eq!(code, 0, "node rejoin: {out}{err}");
    let all = procs
        .converged(ZONE, serial2 - 1, Duration::from_secs(60))
        .expect("every node serves the same version");
    for (s, h) in &all {
        assert_eq!((s, h), (&all[0].0, &all[0].1));
    }
    assert!(
        std::fs::read_dir(&data_a).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("restored-")),
        "the old store is kept aside"
    );
}

/// A wiped node (a new store, recorded by the cluster) restarted while the only other
/// running member is one that lagged behind since before the wipe: that member's record
/// still names the store the wipe replaced. It proves nothing (it reaches less far into
/// the log than the wiped node applied): the node is not held, and the two carry on.
#[test]
fn a_wiped_node_is_not_held_by_a_peer_that_lags_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut procs = common::example_lab(d, 3, 23700, "");
    let zone = d.join("example.zone");
    let first = procs
        .converged(ZONE, 0, Duration::from_secs(60))
        .expect("first version")[0]
        .0;
    let leader = procs.agreed_leader(Duration::from_secs(30)).unwrap();
    let mut others = [1, 2, 3].into_iter().filter(|i| *i != leader);
    let (w, p) = (others.next().unwrap(), others.next().unwrap());

    eprintln!("phase: P (node {p}) stopped; W (node {w}) wiped and started again");
    procs.kill(p);
    procs.kill(w);
    std::fs::remove_dir_all(d.join(format!("data-{w}"))).unwrap();
    procs.restart(w).unwrap();
    let store = lab::wait_for(Duration::from_secs(30), || {
        let s = status(procs.node(w))?;
        let id = s["store"]["id"].as_str()?.to_string();
        let recorded = status(procs.node(leader))?["stores"][w.to_string()]["store"].as_str()
            == Some(id.as_str());
        (s["store_check"].is_null() && recorded).then_some(id)
    })
    .expect("W's new store passes its check and is recorded");
    let mut text = std::fs::read_to_string(&zone).unwrap();
    text.push_str("wiped 300 IN A 192.0.2.98\n");
    std::fs::write(&zone, text.clone()).unwrap();
    let (code, out, err) = qs(&["zone", "reload", ZONE, "--admin", &procs.node(w).admin]);
    assert_eq!(code, 0, "{out}{err}");
    let second = procs
        .converged(ZONE, first, Duration::from_secs(60))
        .expect("second")[0]
        .0;

    eprintln!("phase: the leader stopped; P (behind, naming W's old store) and W started");
    procs.kill(leader);
    procs.kill(w);
    procs.restart(p).unwrap();
    procs.restart(w).unwrap();
    let stale = status(procs.node(p)).and_then(|s| {
        s["stores"][w.to_string()]["store"]
            .as_str()
            .map(str::to_string)
    });
    assert_ne!(
        stale.as_deref(),
        Some(store.as_str()),
        "P is behind W's new store"
    );
    lab::wait_for(Duration::from_secs(30), || {
        let s = status(procs.node(w))?;
        s["store_check"].is_null().then_some(())
    })
    .unwrap_or_else(|| panic!("W held: {}", status(procs.node(w)).unwrap()["store_check"]));

    eprintln!("phase: W and P elect a leader and publish a change; the old leader catches up");
    text.push_str("carried 300 IN A 192.0.2.97\n");
    std::fs::write(&zone, text).unwrap();
    let (code, out, err) = qs(&["zone", "reload", ZONE, "--admin", &procs.node(p).admin]);
    assert_eq!(code, 0, "{out}{err}");
    let third = procs
        .converged(ZONE, second, Duration::from_secs(60))
        .expect("third")[0]
        .0;
    procs.restart(leader).unwrap();
    let all = procs
        .converged(ZONE, third - 1, Duration::from_secs(60))
        .expect("all three");
    assert!(all.iter().all(|v| *v == all[0]), "{all:?}");
    let log = std::fs::read_to_string(&procs.node(w).log).unwrap();
    assert!(!log.contains("ALARM: store restored"), "W was held:\n{log}");
}
