//! Serving and transfers with real peers on 127.0.0.1: a three-node cluster serves the
//! signed zone; BIND (named) and Knot pull it as secondaries with TSIG (AXFR, then IXFR
//! after a change, on NOTIFY); dig/kdig query it; delv and Unbound validate answers from
//! the zone's KSK; a transfer without TSIG is refused; the leader dies while secondaries
//! pull and the next NOTIFY comes from the new leader. A hidden primary (named) feeds a
//! second zone by NOTIFY + AXFR with TSIG.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_validators_accept, p, qs, tool};
use quorumsign::node::lab::{self, LabNode, dnskey_lines};

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
    nodes: Vec<LabNode>,
    children: Vec<Option<Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- node {} log (newest first):\n{}", n.id, tail.join("\n"));
            }
        }
    }
}

impl Cluster {
    fn start(port: u16) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ids = [1, 2, 3];
        let nodes = lab::write(dir.path(), &ids, &ids, port, "").unwrap();
        let children = nodes
            .iter()
            .map(|n| Some(lab::spawn(&exe(), n).unwrap()))
            .collect();
        let c = Cluster {
            dir,
            nodes,
            children,
        };
        for n in &c.nodes {
            lab::wait_for(Duration::from_secs(20), || lab::status(&n.admin)).expect("node answers");
        }
        let (code, out, err) = qs(&["cluster", "init", "--admin", &c.nodes[0].admin]);
        assert_eq!(code, 0, "cluster init: {out}{err}");
        c.leader();
        c
    }

    fn secret(&self) -> String {
        lab::lab_tsig_secret(self.dir.path()).unwrap()
    }

    fn running(&self) -> Vec<&LabNode> {
        self.nodes
            .iter()
            .zip(&self.children)
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| n)
            .collect()
    }

    fn leader(&self) -> u64 {
        lab::wait_for(Duration::from_secs(30), || {
            let seen: Vec<Option<u64>> = self
                .running()
                .iter()
                .map(|n| lab::status(&n.admin).and_then(|s| s["leader"].as_u64()))
                .collect();
            let first = seen[0]?;
            let running = self.running().iter().any(|n| n.id == first);
            (running && seen.iter().all(|s| *s == Some(first))).then_some(first)
        })
        .expect("one leader all running nodes agree on")
    }

    /// Every running node has validated the same serial above `after` for `zone`.
    fn converged(&self, zone: &str, after: u64) -> u64 {
        lab::wait_for(Duration::from_secs(60), || {
            let v: Vec<(u64, String)> = self
                .running()
                .iter()
                .map(|n| lab::validated_serial(&n.admin, zone))
                .collect::<Option<_>>()?;
            (v[0].0 > after && v.iter().all(|x| *x == v[0])).then_some(v[0].0)
        })
        .unwrap_or_else(|| panic!("nodes did not converge on a serial of {zone} above {after}"))
    }

    fn kill(&mut self, id: u64) {
        let i = self.nodes.iter().position(|n| n.id == id).unwrap();
        let mut c = self.children[i].take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    fn admin(&self) -> &str {
        &self.running()[0].admin
    }

    fn dns_port(&self, id: u64) -> String {
        let n = self.nodes.iter().find(|n| n.id == id).unwrap();
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
    let serial = c.converged(ZONE, 0);
    let leader = c.leader();

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
    for (name, t) in [
        ("www.example.", "A"),
        ("nothere.example.", "A"),
        ("x.wild.example.", "A"),
    ] {
        let (_, out, err) = tool(
            "delv",
            &[
                "@127.0.0.1",
                "-p",
                &port1,
                "-a",
                p(&anchor),
                "+root=example.",
                name,
                t,
            ],
        );
        assert!(
            out.contains("; fully validated")
                || out.contains("; negative response, fully validated"),
            "delv {name} {t}:\n{out}{err}"
        );
    }

    // Unbound with a stub zone to the cluster resolves names, NXDOMAIN and wildcards as secure.
    let ud = d.join("unbound");
    std::fs::create_dir_all(&ud).unwrap();
    let stubs: String = (1..=3)
        .map(|id| format!("    stub-addr: 127.0.0.1@{}\n", c.dns_port(id)))
        .collect();
    let uconf = write(
        &ud,
        "unbound.conf",
        &format!(
            "server:\n    interface: 127.0.0.1@{unbound_port}\n    port: {unbound_port}\n\
             \x20   do-ip6: no\n    chroot: \"\"\n    username: \"\"\n    directory: \"{u}\"\n\
             \x20   pidfile: \"{u}/unbound.pid\"\n    use-syslog: no\n    logfile: \"\"\n\
             \x20   do-not-query-localhost: no\n    module-config: \"validator iterator\"\n\
             \x20   trust-anchor: \"example. DNSKEY {flags} {key}\"\n    val-log-level: 2\n\
             \x20   verbosity: 1\n\
             remote-control:\n    control-enable: no\n\
             stub-zone:\n    name: \"example.\"\n{stubs}",
            u = ud.display()
        ),
    );
    let _unbound = Daemon::start(
        "unbound",
        Command::new("unbound").args(["-d", "-c", p(&uconf)]),
        d.join("unbound.log"),
    );
    lab::wait_for(Duration::from_secs(15), || {
        dig(unbound_port, &["www.example.", "A"])
            .contains("NOERROR")
            .then_some(())
    })
    .expect("unbound answers");
    for (name, rcode) in [
        ("www.example.", "NOERROR"),
        ("nothere.example.", "NXDOMAIN"),
        ("anything.wild.example.", "NOERROR"),
        ("a.b.c.example.", "NOERROR"),
        ("b.c.example.", "NOERROR"),
    ] {
        let out = dig(unbound_port, &["+dnssec", name, "A"]);
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
        .nodes
        .iter()
        .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
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
    let nl = std::fs::read_to_string(&c.nodes[new_leader as usize - 1].log).unwrap();
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
