//! Zones fed by a hidden primary, with real peers on 127.0.0.1: named feeds a zone by
//! NOTIFY and IXFR with TSIG; a fake primary sends good, truncated, malformed, backwards and
//! oversized transfers (the last good version stays served); a primary that trickles its
//! transfer holds up no other zone and is dropped at the transfer deadline.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, Daemon, assert_validators_accept, dig, p, qs_ok, soa_serial, write};
use quorumsign::testkit::lab;

/// Writes `text` as named's copy of "hidden.", reloads named (which NOTIFYs the cluster)
/// and returns the serial every running node then validated above `after`.
fn primary_changes(c: &Cluster, named: &Daemon, file: &Path, text: &str, after: u64) -> u64 {
    std::fs::write(file, text).unwrap();
    named.signal(libc::SIGHUP);
    c.converged("hidden.", after)
}

/// What the fake primary does with the next requests.
#[derive(Clone, Debug)]
enum Primary {
    /// A good zone with this serial and this many extra A records.
    Good(u32, usize),
    /// The AXFR stops before the closing SOA.
    Truncated(u32),
    /// A CNAME beside other data.
    Malformed(u32),
}

/// A primary on loopback that answers SOA and AXFR as `mode` says (no TSIG).
fn fake_primary(port: u16, mode: std::sync::Arc<std::sync::Mutex<Primary>>) {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, CNAME, NS, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(200) {
            let Ok(mut s) = s else { continue };
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if s.read_exact(&mut q).is_err() {
                continue;
            }
            let req = Message::from_vec(&q).unwrap();
            let zone = Name::from_ascii("fake.").unwrap();
            let n = |s: &str| Name::from_ascii(s).unwrap();
            let mode = mode.lock().unwrap().clone();
            let serial = match mode {
                Primary::Good(s, _) | Primary::Truncated(s) | Primary::Malformed(s) => s,
            };
            let soa = Record::from_rdata(
                zone.clone(),
                300,
                RData::SOA(SOA::new(
                    n("ns.fake."),
                    n("host.fake."),
                    serial,
                    2,
                    600,
                    86400,
                    60,
                )),
            );
            let mut recs = vec![soa.clone()];
            let qtype = req.queries[0].query_type();
            if qtype == RecordType::AXFR {
                recs.push(Record::from_rdata(
                    zone.clone(),
                    300,
                    RData::NS(NS(n("ns.fake."))),
                ));
                recs.push(Record::from_rdata(
                    n("ns.fake."),
                    300,
                    RData::A(A::new(192, 0, 2, 1)),
                ));
                if let Primary::Good(_, extra) = mode {
                    for i in 0..extra {
                        let name = n(&format!("h{i}.fake."));
                        recs.push(Record::from_rdata(
                            name,
                            300,
                            RData::A(A::new(192, 0, 2, 9)),
                        ));
                    }
                }
                if let Primary::Malformed(_) = mode {
                    recs.push(Record::from_rdata(
                        n("x.fake."),
                        300,
                        RData::A(A::new(192, 0, 2, 7)),
                    ));
                    recs.push(Record::from_rdata(
                        n("x.fake."),
                        300,
                        RData::CNAME(CNAME(n("ns.fake."))),
                    ));
                }
                if !matches!(mode, Primary::Truncated(_)) {
                    recs.push(soa);
                }
            }
            let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
            m.metadata.authoritative = true;
            m.add_query(req.queries[0].clone());
            m.add_answers(recs);
            let b = m.to_vec().unwrap();
            let _ = s.write_all(&(b.len() as u16).to_be_bytes());
            let _ = s.write_all(&b);
        }
    });
}

#[test]
fn hidden_primaries_feed_zones_and_bad_transfers_keep_the_last_good_version() {
    let mut c = Cluster::start(18800);
    let d = c.dir.path().to_path_buf();
    let secret = c.secret();
    let (named_port, fake_port) = ("18960", 18965u16);

    // named as the hidden primary of "hidden.", with TSIG and NOTIFY to every node.
    let nd = d.join("named");
    std::fs::create_dir_all(&nd).unwrap();
    let zone_text = |serial: u32, ip: &str| {
        format!(
            "$ORIGIN hidden.\n$TTL 300\n@ SOA ns host {serial} 3600 600 86400 60\n@ NS ns\n\
             ns A 192.0.2.1\nwww A {ip}\n*.w TXT \"wild\"\n"
        )
    };
    let hidden = write(&nd, "hidden.zone", &zone_text(100, "192.0.2.10"));
    let also: String = (1..=3)
        .map(|id| format!("127.0.0.1 port {} key xfr-key; ", c.dns_port(id)))
        .collect();
    let zones = format!(
        "zone \"hidden.\" {{ type primary; file \"{}\"; notify explicit; ixfr-from-differences yes; \
         max-ixfr-ratio unlimited; also-notify {{ {also} }}; allow-transfer {{ key xfr-key; }}; }};\n",
        hidden.display()
    );
    let named = common::named(&nd, named_port, &secret, "", &zones);
    lab::wait_for(Duration::from_secs(20), || {
        soa_serial(named_port, "hidden.").map(|_| ())
    })
    .expect("named serves hidden.");
    qs_ok(&[
        "zone",
        "add",
        "hidden.",
        "--primary",
        &format!("127.0.0.1:{named_port} key xfr-key"),
        "--transfer",
        "127.0.0.1/32 key xfr-key",
        "--admin",
        c.admin(),
    ]);
    let s1 = c.converged("hidden.", 0);
    assert_eq!(
        s1, 100,
        "serial policy increment keeps the primary's serial when it is newer"
    );
    let port1 = c.dns_port(1);
    assert_eq!(
        dig(&port1, &["+short", "www.hidden.", "A"]).trim(),
        "192.0.2.10"
    );

    // A change on the primary: named NOTIFYs the cluster, which transfers and signs it.
    let s2 = primary_changes(&c, &named, &hidden, &zone_text(101, "192.0.2.11"), s1);
    assert_eq!(s2, 101);
    assert_eq!(
        dig(&port1, &["+short", "www.hidden.", "A"]).trim(),
        "192.0.2.11"
    );
    let logs = c.logs().concat();
    assert!(
        logs.contains("NOTIFY from the primary"),
        "the cluster got named's NOTIFY"
    );
    assert!(
        logs.contains("kind=\"IXFR\" reason=\"NOTIFY\""),
        "the change came by IXFR after the NOTIFY"
    );
    assert!(
        logs.contains("changes=2 signed=2") && logs.contains("input=\"IXFR changes\""),
        "only the IXFR's changed RRsets (www A and the SOA) were parsed and signed"
    );
    assert!(
        logs.contains("reason=\"NOTIFY\""),
        "the transfer followed the NOTIFY"
    );
    assert!(
        named.log().contains("sending notifies"),
        "named sent NOTIFY:\n{}",
        named.log()
    );

    // A new name changes the NSEC chain: the IXFR's changes are signed with the denial
    // records around the new name (its own and its predecessor's), not the whole zone.
    let mut grown = zone_text(102, "192.0.2.11");
    grown.push_str("mail A 192.0.2.25\nalias CNAME WWW.Hidden.\n");
    let s3 = primary_changes(&c, &named, &hidden, &grown, s2);
    assert_eq!(s3, 102);
    assert_eq!(
        dig(&port1, &["+short", "mail.hidden.", "A"]).trim(),
        "192.0.2.25"
    );
    let signed = dig(&port1, &["+dnssec", "+norec", "mail.hidden.", "A"]);
    assert!(
        signed.contains("RRSIG\tA 13 "),
        "the new name is signed:\n{signed}"
    );
    let logs = c.logs().concat();
    assert!(
        logs.lines()
            .any(|l| l.contains("names or types came or went")
                && l.contains("serial=102 ")
                && l.contains("input=\"IXFR changes\"")),
        "the new name was built from the IXFR's changes:\n{logs}"
    );
    // The version as a secondary gets it (the closing SOA of the AXFR left out) passes
    // the outside validators.
    let key_arg = format!("hmac-sha256:xfr-key:{secret}");
    let axfr = dig(
        &port1,
        &["-y", &key_arg, "+noall", "+answer", "hidden.", "AXFR"],
    );
    let mut lines: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .collect();
    assert!(lines.len() > 10, "signed AXFR of hidden.:\n{axfr}");
    lines.pop();
    let f = d.join("hidden-grown.signed");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    assert_validators_accept("hidden.", &f, false);

    // The leader killed: the next one holds only the apex and reads the rest from the
    // replicated content, so the primary's next change is again signed from the IXFR alone.
    // It removes a record whose rdata named holds in mixed case (the content holds it
    // lower-cased, as parsed): the removal still matches.
    let old_leader = c.leader();
    c.kill(old_leader);
    let mut next = zone_text(103, "192.0.2.12");
    next.push_str("mail A 192.0.2.25\n");
    let s4 = primary_changes(&c, &named, &hidden, &next, s3);
    assert_eq!(s4, 103);
    let new_leader = c.leader();
    let log = &c.logs()[new_leader as usize - 1];
    assert!(
        log.lines().any(|l| l.contains("version built")
            && l.contains("serial=103 ")
            && l.contains("input=\"IXFR changes\"")),
        "the new leader signed the change from the IXFR alone:\n{log}"
    );
    c.restart(old_leader);
    assert_eq!(
        c.converged("hidden.", s3),
        103,
        "the restarted node caught up"
    );
    let port1 = c.dns_port(1);
    assert_eq!(
        dig(&port1, &["+short", "www.hidden.", "A"]).trim(),
        "192.0.2.12"
    );

    // A NOTIFY that does not come with the zone's key is refused (signed NOTIFY needed).
    let out = dig(&port1, &["+opcode=notify", "+norec", "hidden.", "SOA"]);
    assert!(out.contains("REFUSED"), "unsigned NOTIFY refused:\n{out}");

    // The fake primary for "fake.": good, then truncated, malformed, backwards, too big.
    let mode = std::sync::Arc::new(std::sync::Mutex::new(Primary::Good(10, 3)));
    fake_primary(fake_port, mode.clone());
    qs_ok(&[
        "zone",
        "add",
        "fake.",
        "--primary",
        &format!("127.0.0.1:{fake_port}"),
        "--denial",
        "nsec",
        "--max-records",
        "50",
        "--admin",
        c.admin(),
    ]);
    let f1 = c.converged("fake.", 0);
    assert_eq!(f1, 10);
    let leader = c.leader();
    let admin = &c.procs.nodes[leader as usize - 1].admin;
    for (m, expect) in [
        (Primary::Truncated(11), "truncated transfer"),
        (Primary::Malformed(12), "CNAME"),
        (Primary::Good(9, 3), "went backwards from 10 to 9"),
        (Primary::Good(13, 60), "more than 50 records"),
    ] {
        *mode.lock().unwrap() = m.clone();
        qs_ok(&["zone", "reload", "fake.", "--admin", admin]);
        let why = lab::wait_for(Duration::from_secs(30), || {
            let s = lab::status(admin)?;
            let z = lab::zone_of(&s, "fake.")?;
            let e = z["last_error"]
                .as_str()
                .or(z["alarm"].as_str())?
                .to_string();
            e.contains(expect).then_some(e)
        })
        .unwrap_or_else(|| {
            panic!(
                "{m:?}: expected an error with {expect:?}: {:#}",
                lab::status(admin).unwrap()
            )
        });
        assert!(why.contains("fake."), "the error names the zone: {why}");
        assert_eq!(
            soa_serial(&port1, "fake."),
            Some(f1 as u64),
            "{m:?}: the last good version stays served"
        );
    }
    *mode.lock().unwrap() = Primary::Good(14, 4);
    qs_ok(&["zone", "reload", "fake.", "--admin", admin]);
    let f2 = c.converged("fake.", f1);
    assert_eq!(f2, 14);
    let logs = c.logs().concat();
    assert!(
        logs.lines()
            .any(|l| l.contains("names or types came or went")
                && l.contains("serial=14 ")
                && l.contains("input=\"transfer compared\"")),
        "a new name in a whole transfer is signed with the denial records around it, \
         not the whole zone:\n{logs}"
    );
    assert_eq!(
        dig(&port1, &["+short", "h3.fake.", "A"]).trim(),
        "192.0.2.9"
    );

    // zone set: a file output and a transfer ACL for a running zone, keys and state kept.
    let out_file = d.join("fake.signed");
    qs_ok(&[
        "zone",
        "set",
        "fake.",
        "--output",
        p(&out_file),
        "--transfer",
        "127.0.0.0/8 key xfr-key",
        "--admin",
        admin,
    ]);
    *mode.lock().unwrap() = Primary::Good(15, 4);
    qs_ok(&["zone", "reload", "fake.", "--admin", admin]);
    let f3 = c.converged("fake.", f2);
    assert_eq!(f3, 15);
    let logs = c.logs().concat();
    assert!(
        logs.lines().any(|l| l.contains("version built")
            && l.contains("serial=15 ")
            && l.contains("changes=1 signed=1")
            && l.contains("input=\"transfer compared\"")),
        "a whole transfer is compared with the content and only what differs (the SOA) \
         is signed:\n{logs}"
    );
    lab::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&out_file)
            .ok()?
            .contains("serial=15 ")
            .then_some(())
    })
    .expect("file output after zone set");
    assert_validators_accept("fake.", &out_file, false);
    let key_arg = format!("hmac-sha256:xfr-key:{secret}");
    let out = dig(&port1, &["-y", &key_arg, "fake.", "AXFR"]);
    assert!(
        out.contains("XFR size"),
        "transfer allowed after zone set:\n{out}"
    );

    // No NOTIFY, no reload: the leader asks the primary every SOA refresh (2 s here).
    *mode.lock().unwrap() = Primary::Good(17, 5);
    let f4 = c.converged("fake.", f3);
    assert_eq!(f4, 17);
    let logs = c.logs().concat();
    assert!(
        logs.lines()
            .any(|l| l.contains("serial=17") && l.contains("reason=\"refresh\"")),
        "the change came by SOA refresh polling"
    );
}

/// What the trickling primary has done: AXFRs begun, and messages of the one going on.
#[derive(Default)]
struct Trickled {
    axfrs: std::sync::atomic::AtomicU64,
    sent: std::sync::atomic::AtomicU64,
}

/// A primary for "slow." on 127.0.0.1:`port` that answers SOA at once and trickles every
/// AXFR: one record a second (each message well inside the per-message timeout), never the
/// closing SOA. Bounded: 40 connections, 120 messages each.
fn trickling_primary(port: u16, seen: std::sync::Arc<Trickled>) {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, NS, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering::SeqCst;
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(40) {
            let Ok(mut s) = s else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).ok()?;
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut q).ok()?;
                let req = Message::from_vec(&q).ok()?;
                let n = |s: &str| Name::from_ascii(s).unwrap();
                let soa = SOA::new(n("ns.slow."), n("host.slow."), 7, 2, 600, 86400, 60);
                let answer = |recs: Vec<Record>| {
                    let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
                    m.metadata.authoritative = true;
                    m.add_query(req.queries[0].clone());
                    m.add_answers(recs);
                    let b = m.to_vec().unwrap();
                    [&(b.len() as u16).to_be_bytes()[..], &b].concat()
                };
                let soa_rr = Record::from_rdata(n("slow."), 300, RData::SOA(soa));
                if req.queries[0].query_type() != RecordType::AXFR {
                    return s.write_all(&answer(vec![soa_rr])).ok();
                }
                seen.axfrs.fetch_add(1, SeqCst);
                seen.sent.store(0, SeqCst);
                let ns = Record::from_rdata(n("slow."), 300, RData::NS(NS(n("ns.slow."))));
                s.write_all(&answer(vec![soa_rr, ns])).ok()?;
                for i in 0..120 {
                    std::thread::sleep(Duration::from_secs(1));
                    let a = Record::from_rdata(
                        n(&format!("h{i}.slow.")),
                        300,
                        RData::A(A::new(192, 0, 2, 9)),
                    );
                    s.write_all(&answer(vec![a])).ok()?;
                    seen.sent.fetch_add(1, SeqCst);
                }
                Some(())
            });
        }
    });
}

#[test]
fn a_trickling_primary_holds_up_no_other_zone_and_meets_the_transfer_deadline() {
    use std::sync::atomic::Ordering::SeqCst;
    const DEADLINE_S: u64 = 25;
    let c = Cluster::start_with(
        24100,
        &format!("\n[signer]\ntransfer_timeout_s = {DEADLINE_S}\n"),
    );
    let (d, admin) = (c.dir.path().to_path_buf(), c.admin().to_string());
    let seen = std::sync::Arc::new(Trickled::default());
    trickling_primary(24190, seen.clone());

    eprintln!("phase 1: slow. takes its input from a primary that trickles its AXFR");
    qs_ok(&[
        "zone",
        "add",
        "slow.",
        "--primary",
        "127.0.0.1:24190",
        "--admin",
        &admin,
    ]);
    lab::wait_for(Duration::from_secs(30), || {
        (seen.sent.load(SeqCst) >= 2).then_some(())
    })
    .expect("the leader is transferring slow.");
    let began = Instant::now();

    eprintln!("phase 2: meanwhile another zone is added, signed, changed and signed again");
    let file = d.join("example.zone");
    std::fs::copy(common::example_zone(), &file).unwrap();
    qs_ok(&[
        "zone",
        "add",
        "example.",
        "--file",
        p(&file),
        "--admin",
        &admin,
    ]);
    let s1 = c.converged("example.", 0);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("added IN A 192.0.2.77\n");
    std::fs::write(&file, text).unwrap();
    qs_ok(&["zone", "reload", "example.", "--admin", &admin]);
    let s2 = c.converged("example.", s1);
    let port = c.dns_port(c.leader());
    assert_eq!(
        dig(&port, &["+short", "added.example.", "A"]).trim(),
        "192.0.2.77"
    );
    let logs = c.logs().concat();
    assert!(
        seen.axfrs.load(SeqCst) == 1 && !logs.contains("transfer deadline"),
        "example. was signed twice (serial {s2}) while the first transfer of slow. was still \
         trickling ({} s in, {} records sent)",
        began.elapsed().as_secs(),
        seen.sent.load(SeqCst)
    );

    eprintln!("phase 3: the trickling transfer is dropped at the deadline; nothing is published");
    let leader = c.procs.node(c.leader()).admin.clone();
    let why = lab::wait_for(Duration::from_secs(DEADLINE_S + 30), || {
        let s = lab::status(&leader)?;
        let e = lab::zone_of(&s, "slow.")?["last_error"]
            .as_str()?
            .to_string();
        e.contains("transfer deadline").then_some(e)
    })
    .expect("slow.'s transfer dropped at the deadline");
    assert!(
        why.contains("slow.") && why.contains(&format!("within {DEADLINE_S} s")),
        "{why}"
    );
    assert_eq!(
        soa_serial(&port, "slow."),
        None,
        "nothing of slow. is served"
    );
}
