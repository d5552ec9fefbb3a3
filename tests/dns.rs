//! Serving and transfers with real peers on 127.0.0.1: a three-node cluster serves the
//! signed zone; BIND (named) and Knot pull it as secondaries with TSIG (AXFR, then IXFR
//! after a change, on NOTIFY); dig/kdig query it; delv and Unbound validate answers from
//! the zone's KSK; a transfer without TSIG is refused; the leader dies while secondaries
//! pull and the next NOTIFY comes from the new leader. A hidden primary (named) feeds a
//! second zone by NOTIFY + AXFR with TSIG. Key rolls on an accelerated key clock run
//! against a parent zone served by Knot, with the leader killed in the middle of a KSK roll.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::{assert_validators_accept, p, qs, tool};
use quorumsign::kasp::sim::{ChildVersion, History, ParentVersion, check};
use quorumsign::keys::KeyId;
use quorumsign::testkit::lab::{self, LabNode, dnskey_lines};

const ZONE: &str = "example.";

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumsign"))
}

/// A daemon started by the test, killed when dropped (log printed on failure).
struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(name: &str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name}: {e} (install with bash tests/run.sh)")
            });
        Daemon {
            name: name.into(),
            child,
            log,
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    #[allow(dead_code)]
    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- {} log (newest first):\n{}", self.name, tail.join("\n"));
        }
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    procs: lab::Procs,
}

impl Cluster {
    fn start(port: u16) -> Cluster {
        Cluster::start_with(port, "")
    }

    /// Starts three nodes with `extra` in each node's configuration.
    fn start_with(port: u16, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ids = [1, 2, 3];
        let nodes = lab::write(dir.path(), &ids, &ids, port, extra).unwrap();
        let mut c = Cluster {
            dir,
            procs: lab::Procs::local(nodes, &exe()),
        };
        c.procs.start().unwrap();
        let (code, out, err) = qs(&["cluster", "init", "--admin", &c.procs.nodes[0].admin]);
        assert_eq!(code, 0, "cluster init: {out}{err}");
        c.leader();
        c
    }

    fn secret(&self) -> String {
        lab::lab_tsig_secret(self.dir.path()).unwrap()
    }

    fn running(&self) -> Vec<&LabNode> {
        self.procs.running()
    }

    fn leader(&self) -> u64 {
        self.procs
            .agreed_leader(Duration::from_secs(30))
            .expect("one leader all running nodes agree on")
    }

    /// Every running node has validated the same serial above `after` for `zone`, with the
    /// same content hash.
    fn converged(&self, zone: &str, after: u64) -> u64 {
        let v = self
            .procs
            .converged(zone, after, Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!("nodes did not converge on a serial of {zone} above {after}")
            });
        assert!(
            v.iter().all(|x| *x == v[0]),
            "same serial, same hash: {v:?}"
        );
        v[0].0
    }

    /// Every node's log, in node order.
    fn logs(&self) -> Vec<String> {
        self.procs
            .nodes
            .iter()
            .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
            .collect()
    }

    fn restart(&mut self, id: u64) {
        assert!(self.running().iter().all(|n| n.id != id), "node {id} runs");
        self.procs.restart(id).unwrap();
    }

    fn kill(&mut self, id: u64) {
        self.procs.kill(id);
    }

    fn admin(&self) -> &str {
        &self.running()[0].admin
    }

    fn dns_port(&self, id: u64) -> String {
        let n = self.procs.node(id);
        n.dns.rsplit(':').next().unwrap().to_string()
    }
}

fn dig(port: &str, args: &[&str]) -> String {
    let mut a = vec!["@127.0.0.1", "-p", port, "+time=2", "+tries=2"];
    a.extend_from_slice(args);
    let (_, out, err) = tool("dig", &a);
    out + &err
}

fn soa_serial(port: &str, zone: &str) -> Option<u64> {
    let out = dig(port, &["+short", "+norec", zone, "SOA"]);
    out.split_whitespace().nth(2)?.parse().ok()
}

fn ksk_anchor(zone_text: &str) -> (String, String) {
    // "example. 3600 IN DNSKEY 257 3 13 <base64>"
    let line = dnskey_lines(zone_text)
        .into_iter()
        .find(|l| l.split_whitespace().nth(4) == Some("257"))
        .expect("a KSK in the DNSKEY RRset");
    let f: Vec<&str> = line.split_whitespace().collect();
    let key = f[7..].join("");
    (format!("{} {} {}", f[4], f[5], f[6]), key)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn secondaries_pull_with_tsig_resolvers_validate_and_failover_keeps_serving() {
    let mut c = Cluster::start(18500);
    let d = c.dir.path().to_path_buf();
    let secret = c.secret();
    let (named_port, knot_port, unbound_port) = ("18700", "18710", "18720");
    let zone_file = d.join("example.zone");
    std::fs::copy(common::example_zone(), &zone_file).unwrap();
    let output = d.join("example.signed");
    qs_ok_args(&[
        "zone",
        "add",
        ZONE,
        "--file",
        p(&zone_file),
        "--output",
        p(&output),
        "--transfer",
        "127.0.0.0/8 key xfr-key",
        "--notify",
        &format!("127.0.0.1:{named_port} key xfr-key"),
        "--notify",
        &format!("127.0.0.1:{knot_port}"),
        "--admin",
        c.admin(),
    ]);
    // The same content as example.org., signed with NSEC instead of NSEC3.
    let org_file = d.join("example.org.zone");
    let org = std::fs::read_to_string(&zone_file)
        .unwrap()
        .replace("$ORIGIN example.", "$ORIGIN example.org.")
        .replace("ns2.example.", "ns2.example.org.");
    std::fs::write(&org_file, org).unwrap();
    qs_ok_args(&[
        "zone",
        "add",
        "example.org.",
        "--file",
        p(&org_file),
        "--denial",
        "nsec",
        "--output",
        p(&d.join("example.org.signed")),
        "--admin",
        c.admin(),
    ]);
    let serial = c.converged(ZONE, 0);
    c.converged("example.org.", 0);
    let leader = c.leader();

    // Referrals: a secure delegation carries its DS and RRSIG, an insecure one the proof
    // that it has no DS (NSEC3 in example., NSEC in example.org.); glue in additional.
    let port = c.dns_port(2);
    let q = |name: &str, t: &str| {
        dig(&port, &["+dnssec", "+norec", name, t])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = q("host.sub.example.", "A");
    assert!(
        !out.contains("flags: qr aa"),
        "a referral is not authoritative:\n{out}"
    );
    assert!(
        out.contains("AUTHORITY SECTION: sub.example. 3600 IN NS ns.sub.example.")
            && out.contains("sub.example. 3600 IN DS 12345 13 2")
            && out.contains("IN RRSIG DS 13"),
        "secure referral:\n{out}"
    );
    assert!(
        out.contains("ADDITIONAL SECTION: ns.sub.example. 3600 IN A 192.0.2.53"),
        "glue:\n{out}"
    );
    let out = q("x.insecure.example.", "A");
    let bitmap: Vec<&str> = out
        .split("IN NSEC3 1 0 0 - ")
        .nth(1)
        .map(|r| {
            r.split(' ')
                .skip(1)
                .take_while(|w| !w.ends_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        bitmap,
        ["NS"],
        "insecure referral: NSEC3 of the cut, NS and no DS:\n{out}"
    );
    let out = q("x.insecure.example.org.", "A");
    assert!(
        out.contains("IN NSEC mail.example.org. NS RRSIG NSEC ")
            && out.contains("IN RRSIG NSEC 13"),
        "insecure referral (NSEC):\n{out}"
    );
    let out = q("sub.example.", "DS");
    assert!(
        out.contains("flags: qr aa")
            && out.contains("ANSWER SECTION: sub.example. 3600 IN DS 12345"),
        "DS is answered by the parent:\n{out}"
    );

    // Every node answers, authoritatively, with RRSIGs under +dnssec.
    for id in 1..=3 {
        let out = dig(&c.dns_port(id), &["+dnssec", "+norec", "www.example.", "A"]);
        assert!(
            out.contains("flags: qr aa"),
            "node {id} is authoritative:\n{out}"
        );
        assert!(
            out.contains("192.0.2.80") && out.contains("RRSIG\tA 13"),
            "node {id}:\n{out}"
        );
    }
    // The file output carries the fencing token and validates.
    let file = lab::wait_for(Duration::from_secs(20), || {
        let t = std::fs::read_to_string(&output).ok()?;
        t.contains(&format!("serial={serial} ")).then_some(t)
    })
    .expect("the leader writes the file output");
    assert!(
        file.starts_with("; quorumsign signed zone zone=example. serial="),
        "{file:.200}"
    );
    assert!(
        file.lines().next().unwrap().contains(" token="),
        "token in the first line"
    );
    assert_validators_accept(ZONE, &output, false);

    // A transfer without TSIG is refused; with the key it works (dig and kdig).
    let port1 = c.dns_port(1);
    let out = dig(&port1, &["example.", "AXFR"]);
    assert!(
        out.contains("Transfer failed") || out.contains("REFUSED"),
        "AXFR without TSIG must be refused:\n{out}"
    );
    let key_arg = format!("hmac-sha256:xfr-key:{secret}");
    let out = dig(&port1, &["-y", &key_arg, "example.", "AXFR"]);
    assert!(
        out.contains("NSEC3PARAM") && out.contains("XFR size"),
        "signed AXFR:\n{out}"
    );
    assert!(!out.contains("tsig verify failure"), "{out}");
    let (code, out, err) = tool(
        "kdig",
        &[
            "@127.0.0.1",
            "-p",
            &port1,
            "-y",
            &key_arg,
            "example.",
            "AXFR",
        ],
    );
    assert_eq!(code, 0, "kdig AXFR: {out}{err}");
    assert!(
        out.contains("RRSIG") && !out.contains("BADSIG"),
        "kdig AXFR:\n{out}"
    );
    let wrong = "hmac-sha256:xfr-key:d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==";
    let out = dig(&port1, &["-y", wrong, "example.", "AXFR"]);
    assert!(
        !out.contains("XFR size"),
        "a wrong secret gets no zone:\n{out}"
    );

    // BIND and Knot as secondaries.
    let nd = d.join("named");
    std::fs::create_dir_all(&nd).unwrap();
    let primaries: String = (1..=3)
        .map(|id| format!("127.0.0.1 port {} key xfr-key; ", c.dns_port(id)))
        .collect();
    let conf = write(
        &nd,
        "named.conf",
        &format!(
            "options {{ directory \"{nd}\"; listen-on port {named_port} {{ 127.0.0.1; }}; \
             listen-on-v6 {{ none; }}; pid-file \"{nd}/named.pid\"; recursion no; \
             dnssec-validation no; notify no; session-keyfile \"{nd}/session.key\"; \
             managed-keys-directory \"{nd}\"; }};\n\
             key \"xfr-key\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
             zone \"example.\" {{ type secondary; primaries {{ {primaries} }}; \
             file \"example.db\"; masterfile-format text; allow-notify {{ 127.0.0.1; }}; }};\n",
            nd = nd.display()
        ),
    );
    let named = Daemon::start(
        "named",
        Command::new("named").args(["-g", "-c", p(&conf)]),
        d.join("named.log"),
    );
    let kd = d.join("knot");
    std::fs::create_dir_all(&kd).unwrap();
    let addrs: Vec<String> = (1..=3)
        .map(|id| format!("127.0.0.1@{}", c.dns_port(id)))
        .collect();
    let kconf = write(
        &kd,
        "knot.conf",
        &format!(
            "server:\n    rundir: \"{k}\"\n    listen: 127.0.0.1@{knot_port}\n\
             database:\n    storage: \"{k}\"\n\
             key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             remote:\n  - id: qs\n    address: [{}]\n    key: xfr-key\n\
             acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n\
             zone:\n  - domain: example.\n    storage: \"{k}\"\n    file: example.zone\n\
             \x20   master: qs\n    acl: notify\n    semantic-checks: off\n",
            addrs.join(", "),
            k = kd.display()
        ),
    );
    let knot = Daemon::start(
        "knotd",
        Command::new("knotd").args(["-c", p(&kconf)]),
        d.join("knot.log"),
    );
    for (who, port) in [("named", named_port), ("knotd", knot_port)] {
        lab::wait_for(Duration::from_secs(30), || {
            (soa_serial(port, ZONE) == Some(serial)).then_some(())
        })
        .unwrap_or_else(|| panic!("{who} did not load serial {serial}"));
    }
    // What named pulled and serves is the validated zone.
    let out = dig(named_port, &["+dnssec", "+norec", "www.example.", "A"]);
    assert!(
        out.contains("RRSIG\tA 13"),
        "named serves the signed zone:\n{out}"
    );
    lab::wait_for(Duration::from_secs(10), || {
        nd.join("example.db").exists().then_some(())
    })
    .expect("named writes its copy");
    assert_validators_accept(ZONE, &nd.join("example.db"), false);
    let (code, out, err) = tool(
        "kdig",
        &[
            "@127.0.0.1",
            "-p",
            knot_port,
            "+dnssec",
            "mail.example.",
            "A",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("192.0.2.25") && out.contains("RRSIG"),
        "knot:\n{out}"
    );

    // delv validates from the KSK.
    let signed = std::fs::read_to_string(&output).unwrap();
    let (flags, key) = ksk_anchor(&signed);
    let anchor = write(
        &d,
        "anchor.conf",
        &format!("trust-anchors {{ example. static-key {flags} \"{key}\"; }};\n"),
    );
    let (oflags, okey) =
        ksk_anchor(&std::fs::read_to_string(d.join("example.org.signed")).unwrap());
    let org_anchor = write(
        &d,
        "org-anchor.conf",
        &format!("trust-anchors {{ example.org. static-key {oflags} \"{okey}\"; }};\n"),
    );
    let delv_cases = [
        (&org_anchor, "example.org.", "www.example.org.", "A"),
        (&org_anchor, "example.org.", "nothere.example.org.", "A"),
        (&org_anchor, "example.org.", "x.wild.example.org.", "A"),
        (&org_anchor, "example.org.", "www.example.org.", "MX"),
        (&anchor, "example.", "www.example.", "A"),
        (&anchor, "example.", "nothere.example.", "A"),
        (&anchor, "example.", "x.wild.example.", "A"),
        (&anchor, "example.", "www.example.", "MX"),
        (&anchor, "example.", "c.example.", "A"),
    ];
    for (anchor_file, root, name, t) in delv_cases {
        let root_arg = format!("+root={root}");
        let (_, out, err) = tool(
            "delv",
            &[
                "@127.0.0.1",
                "-p",
                &port1,
                "-a",
                p(anchor_file),
                &root_arg,
                name,
                t,
            ],
        );
        assert!(
            out.contains("; fully validated")
                || out.contains("; negative response, fully validated"),
            "delv {name} {t} (anchor {root}):\n{out}{err}"
        );
    }

    // Unbound with a stub zone to the cluster resolves names, NXDOMAIN and wildcards as secure.
    let stubs: String = (1..=3)
        .map(|id| format!("    stub-addr: 127.0.0.1@{}\n", c.dns_port(id)))
        .collect();
    let _unbound = unbound(
        &d.join("unbound"),
        unbound_port,
        &format!(
            "\x20   module-config: \"validator iterator\"\n\
             \x20   trust-anchor: \"example. DNSKEY {flags} {key}\"\n\
             \x20   trust-anchor: \"example.org. DNSKEY {oflags} {okey}\"\n    val-log-level: 2\n\
             \x20   verbosity: 1\n"
        ),
        &format!(
            "stub-zone:\n    name: \"example.\"\n{stubs}\
             stub-zone:\n    name: \"example.org.\"\n{stubs}"
        ),
    );
    lab::wait_for(Duration::from_secs(15), || {
        dig(unbound_port, &["www.example.", "A"])
            .contains("NOERROR")
            .then_some(())
    })
    .expect("unbound answers");
    for (name, t, rcode) in [
        ("www.example.", "A", "NOERROR"),
        ("nothere.example.", "A", "NXDOMAIN"),
        ("anything.wild.example.", "A", "NOERROR"),
        ("anything.wild.example.", "TXT", "NOERROR"),
        ("a.b.c.example.", "A", "NOERROR"),
        ("b.c.example.", "A", "NOERROR"),
        ("alias.example.", "A", "NOERROR"),
        ("www.example.org.", "A", "NOERROR"),
        ("nothere.example.org.", "A", "NXDOMAIN"),
        ("anything.wild.example.org.", "A", "NOERROR"),
        ("anything.wild.example.org.", "AAAA", "NOERROR"),
        ("b.c.example.org.", "A", "NOERROR"),
        ("mail.example.org.", "TXT", "NOERROR"),
    ] {
        let out = dig(unbound_port, &["+dnssec", name, t]);
        assert!(
            out.contains(&format!("status: {rcode}")),
            "unbound {name}:\n{out}"
        );
        assert!(
            out.contains(" ad;") || out.contains(" ad "),
            "unbound {name} must be secure (AD):\n{out}"
        );
    }

    // A change: the leader NOTIFYs; named takes it by IXFR, knot too; both serve it.
    let t = std::fs::read_to_string(&zone_file).unwrap();
    std::fs::write(&zone_file, t.replace("192.0.2.25", "192.0.2.26")).unwrap();
    let serial2 = c.converged(ZONE, serial);
    for (who, port) in [("named", named_port), ("knotd", knot_port)] {
        lab::wait_for(Duration::from_secs(30), || {
            (soa_serial(port, ZONE) == Some(serial2)).then_some(())
        })
        .unwrap_or_else(|| panic!("{who} did not follow to serial {serial2}"));
        let out = dig(port, &["+short", "mail.example.", "A"]);
        assert_eq!(out.trim(), "192.0.2.26", "{who} serves the change");
    }
    let nlog = named.log();
    assert!(
        nlog.contains("notify from 127.0.0.1") || nlog.contains("received notify"),
        "named got a NOTIFY:\n{nlog}"
    );
    assert!(
        knot.log().contains("IXFR, incoming") && knot.log().contains("finished"),
        "knot took the change by IXFR:\n{}",
        knot.log()
    );
    let ixfrs: usize = c
        .logs()
        .iter()
        .map(|l| {
            l.lines()
                .filter(|l| l.contains("IXFR out") && l.contains("kind=\"incremental\""))
                .count()
        })
        .sum();
    assert!(
        ixfrs >= 2,
        "named and knot were served incremental IXFRs ({ixfrs})"
    );
    // IXFR from a serial the journal does not hold: the whole zone, in AXFR form.
    let out = dig(&port1, &["-y", &key_arg, "example.", "IXFR=1"]);
    assert!(
        out.contains("NSEC3PARAM") && out.contains("XFR size") && out.contains("192.0.2.26"),
        "IXFR falls back to the full zone:\n{out}"
    );
    // IXFR from the previous serial: only the change, between the SOAs.
    let out = dig(
        &port1,
        &["-y", &key_arg, "example.", &format!("IXFR={serial}")],
    );
    assert!(
        out.contains("192.0.2.25") && out.contains("192.0.2.26") && !out.contains("NSEC3PARAM"),
        "IXFR from {serial} holds the removed and added record only:\n{out}"
    );

    // The leader dies while the secondaries keep pulling; the new leader's NOTIFY follows.
    c.kill(leader);
    let t = std::fs::read_to_string(&zone_file).unwrap();
    std::fs::write(&zone_file, t.replace("192.0.2.26", "192.0.2.27")).unwrap();
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    let serial3 = c.converged(ZONE, serial2);
    for (who, port) in [("named", named_port), ("knotd", knot_port)] {
        lab::wait_for(Duration::from_secs(60), || {
            (soa_serial(port, ZONE) == Some(serial3)).then_some(())
        })
        .unwrap_or_else(|| panic!("{who} did not follow to serial {serial3} after failover"));
        let out = dig(port, &["+short", "mail.example.", "A"]);
        assert_eq!(
            out.trim(),
            "192.0.2.27",
            "{who} serves the change after failover"
        );
    }
    let nl = std::fs::read_to_string(&c.procs.nodes[new_leader as usize - 1].log).unwrap();
    assert!(
        nl.contains(&format!("serial={serial3}")) && nl.contains("NOTIFY sent"),
        "the new leader sent the NOTIFY"
    );
    // The file output moved on with the new leader's (higher) token.
    lab::wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&output)
            .ok()?
            .contains(&format!("serial={serial3} "))
            .then_some(())
    })
    .expect("file output from the new leader");
    assert_validators_accept(ZONE, &output, false);
    drop(knot);
}

fn qs_ok_args(args: &[&str]) {
    let (code, out, err) = qs(args);
    assert_eq!(code, 0, "quorumsign {args:?}: {out}{err}");
}

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
    let conf = write(
        &nd,
        "named.conf",
        &format!(
            "options {{ directory \"{nd}\"; listen-on port {named_port} {{ 127.0.0.1; }}; \
             listen-on-v6 {{ none; }}; pid-file \"{nd}/named.pid\"; recursion no; \
             dnssec-validation no; session-keyfile \"{nd}/session.key\"; \
             managed-keys-directory \"{nd}\"; }};\n\
             key \"xfr-key\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
             zone \"hidden.\" {{ type primary; file \"{}\"; notify explicit; ixfr-from-differences yes; max-ixfr-ratio unlimited; \
             also-notify {{ {also} }}; allow-transfer {{ key xfr-key; }}; }};\n",
            hidden.display(),
            nd = nd.display()
        ),
    );
    let named = Daemon::start(
        "named",
        Command::new("named").args(["-g", "-c", p(&conf)]),
        d.join("named.log"),
    );
    lab::wait_for(Duration::from_secs(20), || {
        soa_serial(named_port, "hidden.").map(|_| ())
    })
    .expect("named serves hidden.");
    qs_ok_args(&[
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
    qs_ok_args(&[
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
        qs_ok_args(&["zone", "reload", "fake.", "--admin", admin]);
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
    qs_ok_args(&["zone", "reload", "fake.", "--admin", admin]);
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
    qs_ok_args(&[
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
    qs_ok_args(&["zone", "reload", "fake.", "--admin", admin]);
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

/// Unbound on 127.0.0.1:`port`, with `server` lines added to its server section and
/// `zones` (stub zones) after it.
fn unbound(dir: &Path, port: &str, server: &str, zones: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let conf = write(
        dir,
        "unbound.conf",
        &format!(
            "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n\
             \x20   do-ip6: no\n    chroot: \"\"\n    username: \"\"\n    directory: \"{u}\"\n\
             \x20   pidfile: \"{u}/unbound.pid\"\n    use-syslog: no\n    logfile: \"\"\n\
             \x20   do-not-query-localhost: no\n{server}\
             remote-control:\n    control-enable: no\n{zones}",
            u = dir.display()
        ),
    );
    Daemon::start(
        "unbound",
        Command::new("unbound").args(["-d", "-c", p(&conf)]),
        dir.join("unbound.log"),
    )
}

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
