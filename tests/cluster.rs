//! The cluster with real node processes on 127.0.0.1: bootstrap, replicate, validate with
//! external validators, failover by SIGKILL and by SIGSTOP, restart and catch-up, a fourth
//! node joining from a snapshot, and admission by certificate.

mod common;

use std::path::Path;
use std::time::Duration;

use common::example::Cluster;
use common::{assert_validators_accept, p, qs, write};
use quorumsign::testkit::lab::{self, dnskey_lines};

const ZONE: &str = "example.";

#[test]
fn three_nodes_replicate_validate_fail_over_and_catch_up() {
    let mut c = Cluster::start(3, 17100, "");
    let (serial, hash) = c.converged(0);
    // Each node's copy passes our validator, dnssec-verify and ldns-verify-zone.
    for id in 1..=3 {
        let f = write(c.dir.path(), &format!("signed-{id}.zone"), &c.signed(id));
        assert_validators_accept(ZONE, &f, false);
    }
    let keys_before = dnskey_lines(&c.signed(1));
    assert_eq!(keys_before.len(), 2, "a KSK and a ZSK");

    // SIGKILL the leader; change one RRset; the new leader publishes the next serial.
    let old = c.leader();
    let before = c.zone_status(old);
    // The standbys keep the index of the current version's input file for a takeover.
    for id in (1..=3).filter(|id| *id != old) {
        lab::wait_for(Duration::from_secs(30), || {
            std::fs::read_to_string(&c.node(id).log)
                .ok()?
                .contains("standby: input file indexed for a takeover")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("node {id} indexes the input file as a standby"));
    }
    c.kill(old, libc::SIGKILL);
    c.append_record("added IN TXT \"after the failover\"");
    let new = c.leader();
    assert_ne!(new, old);
    let (serial2, hash2) = c.converged(serial);
    assert!(serial2 > serial && hash2 != hash);
    let z = c.zone_status(new);
    assert_eq!(z["published_by"].as_u64(), Some(new));
    let log = std::fs::read_to_string(&c.node(new).log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("names or types came or went")
                && l.contains(&format!("serial={serial2} "))
                && l.contains("input=\"file edit compared\"")),
        "the new name was signed with the denial records around it, not the whole zone, \
         and the file read around its change through the index the standby kept:\n{log}"
    );
    assert_eq!(
        z["resigned_unchanged"].as_u64(),
        Some(0),
        "no unchanged RRset re-signed: {z}"
    );
    let signed = z["signed"].as_u64().unwrap();
    let reused = z["reused"].as_u64().unwrap();
    assert!(
        signed > 0 && signed <= 8,
        "only the new RRset, SOA and denial neighbours are signed: {z}"
    );
    assert!(
        reused >= before["rrsets"].as_u64().unwrap() / 2,
        "the rest is reused: {z}"
    );
    let text = c.signed(new);
    assert_eq!(
        dnskey_lines(&text),
        keys_before,
        "identical DNSKEY RRset after failover"
    );
    let f = write(c.dir.path(), "after-failover.zone", &text);
    assert_validators_accept(ZONE, &f, false);

    // The killed node restarts and catches up to the same version.
    c.restart(old);
    let got = lab::wait_for(Duration::from_secs(60), || {
        lab::validated_serial(&c.node(old).admin, ZONE).filter(|(s, _)| *s == serial2)
    })
    .expect("restarted node catches up");
    assert_eq!(got.1, hash2, "restarted node holds the same content hash");

    // A same-shape change (one RRset's content): only it and the SOA are signed.
    let t = std::fs::read_to_string(c.zone_file())
        .unwrap()
        .replace("192.0.2.25", "192.0.2.26");
    std::fs::write(c.zone_file(), t).unwrap();
    let (serial3, _) = c.converged(serial2);
    let leader = c.leader();
    let z = c.zone_status(leader);
    assert_eq!(z["signed"].as_u64(), Some(2), "mail A and the SOA: {z}");
    let log = std::fs::read_to_string(&c.node(leader).log).unwrap();
    assert!(
        log.lines().any(|l| l.contains("version built")
            && l.contains(&format!("serial={serial3} "))
            && l.contains("input=\"file edit compared\"")),
        "the changed file was read around its change and told apart from the last one by its \
         pieces, not built whole:\n{log}"
    );
    let text = c.signed(old);
    assert!(text.contains("192.0.2.26") && !text.contains("192.0.2.25"));
    let f = write(c.dir.path(), "same-shape.zone", &text);
    assert_validators_accept(ZONE, &f, false);
    assert!(serial3 > serial2);

    let audit = qs(&["cluster", "audit", "--admin", &c.node(new).admin]).1;
    assert!(audit.contains("zone add example."), "audit log: {audit}");
}

#[test]
fn stopped_leader_steps_down_and_never_publishes_a_conflicting_version() {
    let mut c = Cluster::start(3, 17300, "");
    let (serial, _) = c.converged(0);
    // File output and a NOTIFY listener: the outputs that carry the fencing token.
    let notified = notify_listener(17290);
    let output = c.dir.path().join("example.signed");
    let (code, out, err) = qs(&[
        "zone",
        "set",
        ZONE,
        "--output",
        p(&output),
        "--notify",
        "127.0.0.1:17290",
        "--admin",
        &c.procs.nodes[0].admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let old = c.leader();
    let old_term = lab::status(&c.node(old).admin).unwrap()["term"]
        .as_u64()
        .unwrap();
    c.kill(old, libc::SIGSTOP);
    // The others elect a new leader and publish a change while the old one is frozen.
    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    let new = lab::wait_for(Duration::from_secs(20), || {
        others
            .iter()
            .find_map(|i| lab::leader_of(&c.node(*i).admin).filter(|l| *l != old))
    })
    .expect("new leader while the old one is stopped");
    c.append_record("frozen IN TXT \"written while the old leader was stopped\"");
    let next = lab::wait_for(Duration::from_secs(30), || {
        let v: Vec<(u64, String)> = others
            .iter()
            .map(|i| lab::validated_serial(&c.node(*i).admin, ZONE))
            .collect::<Option<_>>()?;
        (v[0].0 > serial && v[0] == v[1]).then(|| v[0].clone())
    })
    .expect("the new leader publishes");
    // Resume the old leader: it must become a follower and converge on the same version.
    c.kill(old, libc::SIGCONT);
    let s = lab::wait_for(Duration::from_secs(20), || {
        lab::status(&c.node(old).admin)
            .filter(|s| s["role"] == "follower" && s["leader"].as_u64() == Some(new))
    })
    .expect("old leader steps down");
    assert!(s["term"].as_u64().unwrap() > old_term);
    let (serial3, hash3) = c.converged(serial);
    assert!(serial3 >= next.0);
    if serial3 == next.0 {
        assert_eq!(hash3, next.1);
    }
    // No version was published by the old leader in its old term after it was stopped.
    let z = c.zone_status(old);
    assert!(
        z["token"][0].as_u64().unwrap() > old_term,
        "current version comes from a later term: {z}"
    );
    // The file output holds the new term's token; the resumed old leader wrote nothing and
    // sent no NOTIFY after it was stopped.
    let head = lab::wait_for(Duration::from_secs(20), || {
        let t = std::fs::read_to_string(&output).ok()?;
        let first = t.lines().next()?.to_string();
        first
            .contains(&format!("serial={serial3} "))
            .then_some(first)
    })
    .expect("file output of the newest version");
    let term: u64 = head
        .split("token=")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert!(term > old_term, "{head}");
    let log = std::fs::read_to_string(&c.node(old).log).unwrap();
    let after_stop: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("NOTIFY sent") || l.contains("file output written"))
        .filter(|l| {
            l.contains(&format!("serial={}", next.0)) || l.contains(&format!("serial={serial3}"))
        })
        .collect();
    assert!(
        after_stop.is_empty(),
        "the deposed leader published: {after_stop:?}"
    );
    // The NOTIFY follows the file output once the other members serve the version.
    let tokens = lab::wait_for(Duration::from_secs(20), || {
        let t = notified.lock().unwrap().clone();
        (!t.is_empty()).then_some(t)
    })
    .expect("NOTIFYs with a fencing token reached the listener");
    assert!(
        tokens.windows(2).all(|w| w[0] <= w[1]),
        "tokens only move forward: {tokens:?}"
    );
    assert!(
        tokens.last().unwrap().0 > old_term,
        "the last NOTIFY carries the new term: {tokens:?}"
    );
}

/// A UDP listener that answers NOTIFYs and keeps the fencing token each one carries
/// (EDNS option 65001: term and index).
fn notify_listener(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let sock = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        let mut buf = [0u8; 512];
        while std::time::Instant::now() < deadline {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 || (buf[2] >> 3) & 0x0f != 4 {
                continue;
            }
            let m = &buf[..n];
            let token = m
                .windows(4)
                .position(|w| w == [0xfd, 0xe9, 0x00, 0x10])
                .and_then(|i| m.get(i + 4..i + 20))
                .map(|t| {
                    (
                        u64::from_be_bytes(t[..8].try_into().unwrap()),
                        u64::from_be_bytes(t[8..].try_into().unwrap()),
                    )
                });
            if let Some(t) = token {
                g.lock().unwrap().push(t);
            }
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80;
            let _ = sock.send_to(&r, from);
        }
    });
    got
}

#[test]
fn fourth_node_joins_from_a_snapshot_and_foreign_certificates_are_refused() {
    let extra = "[raft]\nsnapshot_every = 10\nkeep_logs = 0\n";
    let mut c = Cluster::start(3, 17500, extra);
    let (mut serial, _) = c.converged(0);
    // Enough versions that the log is purged behind a snapshot.
    for i in 0..6 {
        c.append_record(&format!("v{i} IN A 192.0.2.{}", 100 + i));
        serial = c.converged(serial).0;
    }
    let leader = c.leader();
    let purged = lab::wait_for(Duration::from_secs(20), || {
        lab::status(&c.node(leader).admin)?["purged"]
            .as_u64()
            .filter(|p| *p > 5)
    })
    .expect("leader purged its log behind a snapshot");
    // Node 4: certificates from the same CA, peers 1-3.
    let n4 = lab::write(c.dir.path(), &[4], &[1, 2, 3, 4], c.port, extra)
        .unwrap()
        .remove(0);
    c.procs.add(n4.clone()).unwrap();
    lab::wait_for(Duration::from_secs(20), || lab::status(&n4.admin)).expect("node 4 answers");
    let (code, out, err) = qs(&[
        "node",
        "add",
        "--id",
        "4",
        "--raft",
        &n4.raft,
        "--node-admin",
        &n4.https,
        "--admin",
        &c.node(1).admin,
    ]);
    assert_eq!(code, 0, "node add: {out}{err}");
    let (s4, h4) = lab::wait_for(Duration::from_secs(60), || {
        lab::validated_serial(&n4.admin, ZONE).filter(|(s, _)| *s == serial)
    })
    .expect("node 4 serves the current version");
    let (_, h1) = lab::validated_serial(&c.node(1).admin, ZONE).unwrap();
    assert_eq!((s4, h4), (serial, h1), "node 4 holds the same content hash");
    let st4 = lab::status(&n4.admin).unwrap();
    assert!(
        st4["voters"].as_array().unwrap().iter().any(|v| v == 4),
        "node 4 is a voter: {st4}"
    );
    assert!(
        st4["snapshot"].as_u64().unwrap_or(0) >= purged,
        "node 4 started from a snapshot at or after the purged index {purged}: {st4}"
    );
    let log4 = std::fs::read_to_string(&n4.log).unwrap();
    assert!(!log4.contains("ALARM"), "{log4}");

    // Admission: a certificate of another CA, and a member-CA certificate for a non-member.
    let other = c.dir.path().join("other-ca");
    quorumsign::transport::certs::make(&other, &[1], &|_| Vec::new()).unwrap();
    let certs = c.dir.path().join("certs");
    quorumsign::transport::certs::make(&certs, &[9], &|_| Vec::new()).unwrap();
    let probe = |dir: &Path, cert_id: u64, as_id: u64| {
        qs(&[
            "cluster",
            "probe",
            "--ca",
            p(&certs.join("ca.pem")),
            "--cert",
            p(&dir.join(format!("node-{cert_id}.pem"))),
            "--key",
            p(&dir.join(format!("node-{cert_id}.key"))),
            "--as",
            &as_id.to_string(),
            "--to",
            "1",
            "--addr",
            &c.node(1).raft,
        ])
    };
    let (code, out, _) = probe(&certs, 2, 2);
    assert_eq!(code, 0, "a member's own certificate is welcome: {out}");
    let (code, _, err) = probe(&other, 1, 1);
    assert_ne!(code, 0, "another CA's certificate must be refused");
    assert!(err.contains("refused"), "{err}");
    let (code, _, err) = probe(&certs, 9, 9);
    assert_ne!(code, 0);
    assert!(err.contains("not a member"), "{err}");
    let (code, _, err) = probe(&certs, 2, 3);
    assert_ne!(code, 0, "node 2's certificate cannot claim node 3");
    assert!(err.contains("not valid for node-3"), "{err}");
}

#[test]
fn config_check_names_the_bad_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = lab::write(dir.path(), &[1], &[1], 17700, "").unwrap();
    let (code, out, err) = qs(&["node", "run", "--check", "--config", p(&nodes[0].config)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
    let mut text = std::fs::read_to_string(&nodes[0].config).unwrap();
    text = text.replace(
        "log_level = \"info\"",
        "log_level = \"info\"\nsigning_threads = 4",
    );
    std::fs::write(&nodes[0].config, text).unwrap();
    let (code, _, err) = qs(&["node", "run", "--check", "--config", p(&nodes[0].config)]);
    assert_ne!(code, 0);
    assert!(
        err.contains("signing_threads") && err.contains("line 8"),
        "{err}"
    );
    let bad = write(
        dir.path(),
        "bad.toml",
        "id = 1\ndata_dir = \"d\"\nraft_listen = \"nowhere\"\nadmin_listen = \"127.0.0.1:1\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n",
    );
    let (code, _, err) = qs(&["node", "run", "--check", "--config", p(&bad)]);
    assert_ne!(code, 0);
    assert!(
        err.contains("raft_listen") && err.contains("nowhere"),
        "{err}"
    );
}

/// Keys in a shared PKCS#11 token (SoftHSM2): the leader generates them in the token, every
/// node finds them there by public key, test-signs with them (readiness), and a new leader
/// signs with the same keys.
#[test]
fn nodes_share_keys_in_a_pkcs11_token() {
    let hsm = tempfile::tempdir().unwrap();
    let conf = common::softhsm_conf(hsm.path());
    common::init_softhsm_token(&conf, "signers");
    let uri = format!(
        "pkcs11:token=signers?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value={}",
        common::USER_PIN
    );
    let conf_s = conf.display().to_string();
    let mut c = Cluster::start_with(3, 17900, "", |n| {
        let text = std::fs::read_to_string(&n.config).unwrap();
        let text = text
            .replace("keystore = \"embedded\"", &format!("keystore = \"{uri}\""))
            .replace("passphrase_file = \"cluster.pass\"\n", "");
        std::fs::write(&n.config, text).unwrap();
        n.env.push(("SOFTHSM2_CONF".into(), conf_s.clone()));
    });
    let (serial, _) = c.converged(0);
    let st = lab::status(&c.node(1).admin).unwrap();
    let keys = lab::zone_of(&st, ZONE).unwrap()["keys"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        assert!(
            k["handle"]
                .as_str()
                .unwrap()
                .starts_with("pkcs11:token=signers"),
            "{k}"
        );
    }
    // Every node reaches every key in the token and test-signs with it.
    for id in 1..=3 {
        let r = lab::wait_for(Duration::from_secs(60), || {
            let s = lab::status(&c.node(id).admin)?;
            (s["readiness"]["keys_tested"].as_u64() == Some(2)).then(|| s["readiness"].clone())
        })
        .expect("readiness checked with both keys");
        assert_eq!(r["ready"], true, "node {id}: {r}");
    }
    let f = write(c.dir.path(), "pkcs11.zone", &c.signed(2));
    assert_validators_accept(ZONE, &f, false);
    let keys_before = dnskey_lines(&c.signed(2));
    let old = c.leader();
    c.kill(old, libc::SIGKILL);
    c.append_record("hsm IN TXT \"signed by the next leader through the token\"");
    let (serial2, _) = c.converged(serial);
    assert!(serial2 > serial);
    let new = c.leader();
    let text = c.signed(new);
    assert_eq!(dnskey_lines(&text), keys_before, "same keys from the token");
    let f = write(c.dir.path(), "pkcs11-after.zone", &text);
    assert_validators_accept(ZONE, &f, false);
}

/// A broken input is refused with the file and line, raised on the leader, and every node
/// keeps serving the last good version until the input is fixed; then `zone reload` makes
/// a new serial and `leader transfer` hands leadership over.
#[test]
fn bad_input_is_refused_then_reload_and_leader_transfer() {
    let c = Cluster::start(3, 18300, "");
    let (serial, hash) = c.converged(0);
    let good = std::fs::read_to_string(c.zone_file()).unwrap();
    let line = good.lines().count() + 1;
    c.append_record("mail IN CNAME www");
    let leader = c.leader();
    let alarm = lab::wait_for(Duration::from_secs(20), || {
        c.zone_status(leader)["alarm"].as_str().map(str::to_string)
    })
    .expect("the leader raises an alarm");
    assert!(
        alarm.contains(&format!("example.zone:{line}")) && alarm.contains("CNAME"),
        "{alarm}"
    );
    std::thread::sleep(Duration::from_secs(1));
    for id in 1..=3 {
        let z = c.zone_status(id);
        assert_eq!(
            (z["serial"].as_u64(), z["hash"].as_str()),
            (Some(serial), Some(hash.as_str())),
            "node {id}: {z}"
        );
        assert!(
            c.signed(id).contains("192.0.2.25"),
            "node {id} still serves the last good version"
        );
    }
    std::fs::write(c.zone_file(), good.replace("192.0.2.25", "192.0.2.27")).unwrap();
    let (next, _) = c.converged(serial);
    assert!(next > serial);
    assert!(
        c.zone_status(leader)["alarm"].is_null(),
        "alarm cleared by the next good version"
    );

    let (code, out, err) = qs(&["zone", "reload", ZONE, "--admin", &c.node(1).admin]);
    assert_eq!(code, 0, "{out}{err}");
    let (after_reload, _) = c.converged(next);
    assert!(after_reload > next, "reload publishes a new serial");

    let to = (1..=3).find(|i| *i != c.leader()).unwrap();
    let (code, out, err) = qs(&[
        "leader",
        "transfer",
        "--to",
        &to.to_string(),
        "--admin",
        &c.node(1).admin,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    lab::wait_for(Duration::from_secs(20), || (c.leader() == to).then_some(()))
        .unwrap_or_else(|| panic!("node {to} did not take over"));
    let audit = qs(&["cluster", "audit", "--admin", &c.node(to).admin]).1;
    assert!(
        audit.contains("leader transfer --to") && audit.contains("zone reload"),
        "{audit}"
    );
}

/// With `require_backup`, the leader makes the zone's keys but publishes none until
/// `backup commit`; `backup prepare` lists them, and the commit is in the audit log.
#[test]
fn keys_wait_for_their_backup_before_the_zone_is_signed() {
    let c = Cluster::start(3, 21600, "");
    c.converged(0);
    let zone = write(
        c.dir.path(),
        "backup.zone",
        "$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 192.0.2.53\n",
    );
    let policy = write(c.dir.path(), "policy.toml", "require_backup = true\n");
    let admin = c.node(1).admin.clone();
    let (code, out, err) = qs(&[
        "zone",
        "add",
        "backup.test.",
        "--file",
        p(&zone),
        "--policy",
        p(&policy),
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "zone add: {out}{err}");
    let listed = lab::wait_for(Duration::from_secs(30), || {
        let (code, out, _) = qs(&["backup", "prepare", "backup.test.", "--admin", &admin]);
        (code == 0
            && out.contains("key(s) to back up")
            && out.contains("ksk")
            && out.contains("zsk"))
        .then_some(out)
    })
    .expect("backup prepare lists the new keys");
    std::thread::sleep(Duration::from_secs(3));
    let st = lab::status(&admin).unwrap();
    let z = lab::zone_of(&st, "backup.test.").expect("zone in status");
    assert!(
        z["serial"].is_null() || z["serial"].as_u64() == Some(0),
        "nothing is published before the backup: {z}\n{listed}"
    );
    let (code, out, err) = qs(&["keys", "show", "backup.test.", "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backup prepare"), "the engine says why: {out}");

    let (code, out, err) = qs(&[
        "backup",
        "commit",
        "backup.test.",
        "--all",
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "backup commit: {out}{err}");
    lab::wait_for(Duration::from_secs(30), || {
        lab::validated_serial(&admin, "backup.test.").filter(|(s, _)| *s > 0)
    })
    .expect("the zone is signed once its keys are backed up");
    // The keys in use are backed up; what is left to back up is the pool made since.
    let (_, out, _) = qs(&["backup", "prepare", "backup.test.", "--admin", &admin]);
    assert!(!out.contains("(active)"), "{out}");
    let audit = common::qs_ok(&["cluster", "audit", "--admin", &admin]);
    assert!(audit.contains("keys backup-commit backup.test."), "{audit}");
}

/// The leader's clock check over the node transport fails closed: with its control traffic
/// dropped (Raft still flowing) it raises the clock alarm and hands over, and the others
/// carry on; with every node's control traffic dropped nothing new is signed until it is
/// back.
#[test]
fn clock_check_fails_closed_when_control_traffic_is_dropped() {
    let c = Cluster::start(3, 23100, "fault_control = \"fault.ctl\"\n");
    let ctl = c.dir.path().join("fault.ctl");
    let (serial, _) = c.converged(0);
    let old = c.leader();
    // Every node drops control traffic to and from the leader.
    std::fs::write(&ctl, format!("control = drop:{old}\n")).unwrap();
    let alarm = lab::wait_for(Duration::from_secs(20), || {
        lab::status(&c.node(old).admin)?["clock_alarm"]
            .as_str()
            .filter(|a| a.contains("clock check failed"))
            .map(str::to_string)
    })
    .expect("the cut-off leader raises the clock alarm");
    assert!(alarm.contains("a majority needs 2"), "{alarm}");
    let new = lab::wait_for(Duration::from_secs(30), || {
        c.procs
            .agreed_leader(Duration::from_secs(1))
            .filter(|l| *l != old)
    })
    .expect("another node leads");
    c.append_record("during-drop 300 IN A 192.0.2.71");
    let (code, out, err) = qs(&["zone", "reload", ZONE, "--admin", &c.node(new).admin]);
    assert_eq!(code, 0, "{out}{err}");
    let (serial2, _) = c.converged(serial);
    // Every node's control traffic dropped: no leader can compare clocks, none signs.
    std::fs::write(&ctl, "control = drop\n").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    c.append_record("all-dropped 300 IN A 192.0.2.72");
    let published = lab::wait_for(Duration::from_secs(8), || {
        c.procs
            .running()
            .iter()
            .filter_map(|n| lab::status(&n.admin))
            .filter_map(|s| lab::zone_of(&s, ZONE)?["serial"].as_u64())
            .find(|s| *s > serial2)
    });
    assert_eq!(
        published, None,
        "a version was signed without a clock check"
    );
    let alarms = c
        .procs
        .running()
        .iter()
        .filter_map(|n| lab::status(&n.admin))
        .filter(|s| s["clock_alarm"].is_string())
        .count();
    assert!(alarms >= 1, "no node raised the clock alarm");
    // Control back: the change is published everywhere.
    std::fs::write(&ctl, "control = none\n").unwrap();
    c.converged(serial2);
}
