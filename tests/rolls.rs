//! Key rolls on an accelerated key clock against a parent zone served by Knot, with the
//! leader killed in the middle of a KSK roll.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, Daemon, p, qs, tool, unbound, write};
use quorumsign::kasp::sim::{ChildVersion, History, ParentVersion, check};
use quorumsign::keys::KeyId;
use quorumsign::testkit::lab;

/// What the test sees of the child and the parent, on the key clock.
struct Recorder {
    rt: tokio::runtime::Runtime,
    epoch: u64,
    scale: u64,
    history: History,
    /// Every key tag seen in a DNSKEY RRset: (KSKs, ZSKs).
    tags: Arc<Mutex<(BTreeSet<u16>, BTreeSet<u16>)>>,
}

impl Recorder {
    fn kasp_now(&self) -> u64 {
        let t = quorumsign::runtime::wall();
        self.epoch
            + (t.saturating_sub(self.epoch)) * self.scale
            + (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis() as u64
                * self.scale
                / 1000)
    }

    fn ask(&self, addr: &str, owner: &str, qtype: u16) -> Option<Vec<(u16, u32, Vec<u8>)>> {
        let name = quorumsign::zone::Name::parse(owner.as_bytes(), None).unwrap();
        self.rt
            .block_on(quorumsign::dns::client::ask(
                addr.parse().unwrap(),
                &name,
                qtype,
                true,
            ))
            .ok()
    }

    /// Records the child's DNSKEY RRset, who signs it and who signs the SOA, as served by
    /// `addr`.
    fn child(&mut self, addr: &str, zone: &str, sig_ttl: u32) -> Option<()> {
        use quorumsign::keys::{RrsigHeader, key_tag_of_rdata};
        let id = |tag: u16| {
            KeyId({
                let mut b = [0u8; 32];
                b[..2].copy_from_slice(&tag.to_be_bytes());
                b
            })
        };
        let at = self.kasp_now();
        let keys = self.ask(addr, zone, 48)?;
        let soa = self.ask(addr, zone, 6)?;
        let mut v = ChildVersion {
            at,
            dnskeys: Default::default(),
            dnskey_signers: Default::default(),
            data_signers: Default::default(),
            dnskey_ttl: 0,
            sig_ttl,
        };
        for (t, ttl, d) in &keys {
            match *t {
                48 => {
                    let tag = key_tag_of_rdata(d);
                    v.dnskeys.insert(id(tag));
                    v.dnskey_ttl = *ttl;
                    let mut seen = self.tags.lock().unwrap();
                    if d[1] & 1 == 1 {
                        seen.0.insert(tag);
                    } else {
                        seen.1.insert(tag);
                    }
                }
                46 => {
                    v.dnskey_signers
                        .insert(id(RrsigHeader::parse(d)?.0.key_tag));
                }
                _ => {}
            }
        }
        for (t, _, d) in &soa {
            if *t == 46 {
                v.data_signers.insert(id(RrsigHeader::parse(d)?.0.key_tag));
            }
        }
        if v.dnskeys.is_empty() {
            return None;
        }
        self.history.child_version(v);
        Some(())
    }
}

/// A KSK roll and several ZSK rolls on a key clock 600 times real time, against a parent
/// zone (Knot on loopback, its servers found through Unbound from the parent's NS set)
/// that a test "registrar" updates from the child's CDS; the parent
/// serves its DS with TTL 3600 while the policy says 600 (the .nz case). The leader is
/// killed while the new KSK's DS is submitted. The roll completes once (two KSKs in all),
/// no key is duplicated, and the recorded history has no bogus instant for any validator
/// cache.
#[test]
fn key_rolls_on_an_accelerated_clock_with_a_real_parent_and_the_leader_killed_mid_roll() {
    const SCALE: u64 = 600;
    const CHILD: &str = "child.parent.test.";
    let epoch = quorumsign::runtime::wall();
    let mut c = Cluster::start_with(
        21100,
        &format!("\n[signer]\ntick_ms = 100\nkasp_time_scale = {SCALE}\nkasp_epoch = {epoch}\n"),
    );
    let d = c.dir.path().to_path_buf();
    let parent_port = 21400;
    let parent_dir = d.join("parent");
    std::fs::create_dir_all(&parent_dir).unwrap();
    let parent_zone = |serial: u32, ds: &[String]| {
        let mut z = format!(
            "$TTL 3600\n@ SOA ns hostmaster {serial} 3600 600 86400 600\n@ NS ns\nns A 127.0.0.1\n\
             child NS ns.child\nns.child A 127.0.0.1\n"
        );
        for r in ds {
            z.push_str(&format!("child 3600 DS {r}\n"));
        }
        std::fs::write(parent_dir.join("parent.zone"), z).unwrap();
    };
    parent_zone(1, &[]);
    let kconf = write(
        &parent_dir,
        "knot.conf",
        &format!(
            "server:\n    rundir: \"{k}\"\n    listen: 127.0.0.1@{parent_port}\n\
             database:\n    storage: \"{k}\"\n\
             zone:\n  - domain: parent.test.\n    storage: \"{k}\"\n    file: parent.zone\n\
             \x20   semantic-checks: off\n",
            k = parent_dir.display()
        ),
    );
    let _knot = Daemon::start(
        "knotd (parent)",
        Command::new("knotd").args(["-c", p(&kconf)]),
        parent_dir.join("knot.log"),
    );
    // The parent's servers are found through a resolver (Unbound, with the parent zone as
    // a stub): NS set of parent.test., then their addresses.
    let resolver_port = 21410;
    let _unbound = unbound(
        &d.join("unbound"),
        &resolver_port.to_string(),
        "\x20   module-config: \"iterator\"\n    local-zone: \"test.\" nodefault\n",
        &format!(
            "stub-zone:\n    name: \"parent.test.\"\n    stub-addr: 127.0.0.1@{parent_port}\n"
        ),
    );
    let child_file = write(
        &d,
        "child.zone",
        "$TTL 600\n@ SOA ns hostmaster 1 3600 600 86400 600\n@ NS ns\nns A 127.0.0.1\n\
         www A 192.0.2.1\nmail A 192.0.2.2\n",
    );
    let policy = write(
        &d,
        "policy.toml",
        &format!(
            "dnskey_ttl = 600\nds_ttl = 600\npropagation_delay = 300\nparent_propagation_delay = 600\n\
             publish_safety = 60\nretire_safety = 60\npurge_after = 3600\nzsk_lifetime = 7200\n\
             ksk_lifetime = 0\nparent_resolver = \"127.0.0.1:{resolver_port}\"\nparent_port = {parent_port}\n\
             parent_check_interval = 600\n"
        ),
    );
    // The policy's propagation delay (300 s) is five times what the checker assumes (60 s):
    // on this clock, the time from a decision to its publication and to the watcher seeing
    // it is real time × 600 (a CI run under load took 210 ms from the stamp of a first
    // version to its first answer, 125 s here, over the 120 s this policy once allowed).
    let tags = Arc::new(Mutex::new((BTreeSet::new(), BTreeSet::new())));
    let recorder = || Recorder {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        epoch,
        scale: SCALE,
        history: History {
            propagation: 60,
            negative_ttl: 600,
            ..Default::default()
        },
        tags: tags.clone(),
    };
    // The child is watched from its own thread every 20 ms, from before the zone is added
    // (an observation late by 100 ms is 60 s on this clock, and a first version seen late
    // would look like a DS arriving early); the main loop plays registrar and operator.
    let mut rec = recorder();
    let watched: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        c.running().iter().map(|n| n.dns.clone()).collect(),
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (mut r, watched, stop) = (recorder(), watched.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let nodes = watched.lock().unwrap().clone();
                for n in nodes {
                    if r.child(&n, CHILD, 600).is_some() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r.history
        })
    };
    let admin = c.admin().to_string();
    let (code, out, err) = qs(&[
        "zone",
        "add",
        CHILD,
        "--file",
        p(&child_file),
        "--policy",
        p(&policy),
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "zone add: {out}{err}");
    rec.history.parent.push(ParentVersion {
        ds: Default::default(),
        earliest: 0,
        latest: 0,
        ttl: 3600,
    });
    let parent_addr = format!("127.0.0.1:{parent_port}");
    let mut parent_ds: Vec<String> = Vec::new();
    let mut parent_serial = 1;
    let keys_of = |admin: &str| -> Option<serde_json::Value> {
        let (code, out, _) = qs(&["keys", "show", CHILD, "--json", "--admin", admin]);
        (code == 0)
            .then(|| serde_json::from_str(&out).ok())
            .flatten()
    };
    let mut phase = 0; // 0: first DS, 1: KSK roll asked, 2: leader killed, 3: done
    let mut killed: Option<u64> = None;
    let mut old_ksk: Option<u64> = None;
    let started = std::time::Instant::now();
    let mut last_keys = std::time::Instant::now() - Duration::from_secs(1);
    while phase < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "rolls did not finish in 240 s (phase {phase}); keys: {}",
            keys_of(c.admin())
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
        *watched.lock().unwrap() = c.running().iter().map(|n| n.dns.clone()).collect();
        let node = c.running()[0].dns.clone();
        // The registrar: the parent's DS set follows the child's CDS.
        if let Some(cds) = rec.ask(&node, CHILD, 59) {
            let mut want: Vec<String> = cds
                .iter()
                .filter(|(t, _, _)| *t == 59)
                .map(|(_, _, d)| quorumsign::zone::rdata::to_text(43, d).unwrap())
                .collect();
            want.sort();
            if !want.is_empty() && want != parent_ds {
                let earliest = rec.kasp_now();
                parent_serial += 1;
                parent_zone(parent_serial, &want);
                let (code, out, err) =
                    tool("knotc", &["-c", p(&kconf), "zone-reload", "parent.test."]);
                assert_eq!(code, 0, "knotc: {out}{err}");
                lab::wait_for(Duration::from_secs(10), || {
                    let got = rec.ask(&parent_addr, CHILD, 43)?;
                    let mut got: Vec<String> = got
                        .iter()
                        .filter(|(t, _, _)| *t == 43)
                        .map(|(_, _, d)| quorumsign::zone::rdata::to_text(43, d).unwrap())
                        .collect();
                    got.sort();
                    (got == want).then_some(())
                })
                .expect("the parent serves the new DS set");
                let id = |s: &String| {
                    let tag: u16 = s.split_whitespace().next().unwrap().parse().unwrap();
                    let mut b = [0u8; 32];
                    b[..2].copy_from_slice(&tag.to_be_bytes());
                    KeyId(b)
                };
                rec.history.parent.push(ParentVersion {
                    ds: want.iter().map(id).collect(),
                    earliest,
                    latest: rec.kasp_now(),
                    ttl: 3600,
                });
                parent_ds = want;
            }
        }
        if last_keys.elapsed() >= Duration::from_millis(500) {
            last_keys = std::time::Instant::now();
            if let Some(v) = keys_of(c.admin()) {
                let ksks: Vec<&serde_json::Value> = v["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|k| k["role"] == "ksk")
                    .collect();
                let ds =
                    |k: &serde_json::Value| k["records"]["DS"].as_str().unwrap_or("").to_string();
                match phase {
                    0 if ksks.len() == 1 && ds(ksks[0]) == "omnipresent" => {
                        old_ksk = ksks[0]["tag"].as_u64();
                        let (code, out, err) =
                            qs(&["keys", "rollover", CHILD, "ksk", "--admin", c.admin()]);
                        assert_eq!(code, 0, "keys rollover: {out}{err}");
                        phase = 1;
                    }
                    1 if ksks
                        .iter()
                        .any(|k| k["goal"] == "active" && ds(k) == "rumoured") =>
                    {
                        let leader = c.leader();
                        c.kill(leader);
                        killed = Some(leader);
                        phase = 2;
                    }
                    2 if ksks.len() == 1
                        && ksks[0]["tag"].as_u64() != old_ksk
                        && ksks[0]["records"]
                            .as_object()
                            .unwrap()
                            .values()
                            .all(|s| s == "omnipresent" || s == "-")
                        && tags.lock().unwrap().1.len() >= 3 =>
                    {
                        phase = 3;
                    }
                    _ => {}
                }
                if phase == 2
                    && let Some(k) = killed
                    && started.elapsed() > Duration::from_secs(5)
                    && c.running().len() == 2
                {
                    // The killed leader comes back as a follower while the roll goes on.
                    c.restart(k);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rec.history.child = watcher.join().unwrap().child;
    let (ksks, zsks) = tags.lock().unwrap().clone();
    assert_eq!(
        ksks.len(),
        2,
        "one KSK roll: the old KSK and one new one, no duplicate: {ksks:?}"
    );
    assert!(zsks.len() >= 3, "ZSK rolls went on: {zsks:?}");
    let bogus = check(&rec.history);
    assert!(
        bogus.is_empty(),
        "bogus instants {:?}\nchild {:#?}\nparent {:#?}",
        &bogus[..bogus.len().min(3)],
        rec.history.child,
        rec.history.parent
    );
    // The served TTL above the policy's is a standing warning of the engine.
    let notes = keys_of(c.admin()).unwrap()["notes"].to_string();
    assert!(
        notes.contains("TTL 3600 s, above ds_ttl = 600 s"),
        "{notes}"
    );
    // Every node holds the same key set, each key once. The nodes are read one after the
    // other while the leader may still be publishing (a publish clears the keys' pending
    // marks), so they are read again until they agree, for at most 10 s.
    let agree = |sets: &[serde_json::Value]| sets.windows(2).all(|w| w[0]["keys"] == w[1]["keys"]);
    let mut sets: Vec<serde_json::Value> = Vec::new();
    for _ in 0..40 {
        sets = c
            .running()
            .iter()
            .map(|n| keys_of(&n.admin).expect("keys show")["keyset"].clone())
            .collect();
        if agree(&sets) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(agree(&sets), "nodes differ: {sets:?}");
    // The timing audit names the parent's TTL above the policy's.
    let (_, out, err) = qs(&["policy", "check", CHILD, "--admin", c.admin()]);
    assert!(
        out.contains("serves the DS with TTL 3600") && out.contains("ds_ttl = 600"),
        "policy check: {out}{err}"
    );
}
