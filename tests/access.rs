//! Who may use the admin API, with real node processes and real TLS: the role matrix over
//! HTTPS (no certificate, a foreign CA, monitor, operator, security officer) and the Unix
//! socket; browser-style requests; slow and idle connections and the connection cap; the
//! three-bogus-adds wedge; bounded operator notes; audit entries naming the caller; the
//! modes of the files the lab and the node create.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{p, qs};
use quorumsign::admin::client::{Credentials, call, call_as};
use quorumsign::testkit::lab;
use serde_json::{Value, json};

const ZONE: &str = "example.";
const T: Duration = Duration::from_secs(30);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumsign"))
}

struct Lab {
    dir: tempfile::TempDir,
    procs: lab::Procs,
}

impl Lab {
    fn start(port: u16) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let procs = common::example_lab(dir.path(), 3, port, "");
        Lab { dir, procs }
    }

    fn sock(&self, id: u64) -> &str {
        &self.procs.node(id).admin
    }

    fn https(&self, id: u64) -> &str {
        &self.procs.node(id).https
    }

    fn creds(&self, role: &str) -> Credentials {
        let c = self.dir.path().join("certs");
        Credentials {
            cert: c.join(format!("operator-lab-{role}.pem")),
            key: c.join(format!("operator-lab-{role}.key")),
            ca: c.join("ca.pem"),
        }
    }

    /// Waits until every node validated one serial above `after`; returns it.
    fn serial_everywhere(&self, after: u64) -> u64 {
        self.procs
            .converged(ZONE, after, Duration::from_secs(60))
            .expect("every node validates a new serial")[0]
            .0
    }
}

/// One raw HTTP/1.1 exchange on a Unix socket, as a hostile client writes it; the answer's
/// status code (0 when the connection closed without one).
fn raw(sock: &str, request: &str) -> u16 {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One raw HTTP/1.1 exchange over TLS with node 1's HTTPS listener, with `creds`' client
/// certificate or none; `{addr}` in `request` is the listener's address. The whole answer.
fn raw_tls(l: &Lab, creds: Option<&Credentials>, request: &str) -> String {
    use quorumsign::transport::{client_config, load_chain, load_key, load_roots};
    let roots = std::sync::Arc::new(load_roots(&l.creds("monitor").ca).unwrap());
    let cfg = match creds {
        None => std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        ),
        Some(c) => {
            let (chain, key) = (load_chain(&c.cert).unwrap(), load_key(&c.key).unwrap());
            client_config(roots, chain, key, &c.cert).unwrap()
        }
    };
    let addr = l.https(1).trim_start_matches("https://").to_string();
    let mut conn = rustls::ClientConnection::new(cfg, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let _ = tls.write_all(request.replace("{addr}", &addr).as_bytes());
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// How long until the server closes an open connection that sends `first` and then nothing.
fn closed_after(sock: &str, first: &[u8]) -> Duration {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t = Instant::now();
    // Closed before anything was written (the connection cap): closed at once.
    if s.write_all(first).is_err() {
        return t.elapsed();
    }
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn every_endpoint_needs_its_role_over_https_and_the_socket() {
    let l = Lab::start(22100);
    // A certificate of another operator CA: refused at the handshake or with 401.
    let foreign = tempfile::tempdir().unwrap();
    quorumsign::transport::certs::operator(
        foreign.path(),
        "mallory",
        quorumsign::access::Role::SecurityOfficer,
    )
    .unwrap();
    let foreign = Credentials {
        cert: foreign.path().join("operator-mallory.pem"),
        key: foreign.path().join("operator-mallory.key"),
        ca: l.creds("monitor").ca,
    };
    // No client certificate at all: a certificate file without the key refuses to load, so
    // this goes through a raw TLS client with no client auth.
    let no_cert = raw_tls(&l, None, "GET /v1/status HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(
        !no_cert.contains("\"role\""),
        "status given without a certificate: {no_cert}"
    );
    // (method, path, body, role needed). Bodies make the change fail after the role check
    // where it would disturb the cluster.
    let leader = l.procs.agreed_leader(T).unwrap();
    let matrix: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("GET", "/status".into(), None, "monitor"),
        ("GET", "/cluster".into(), None, "monitor"),
        ("GET", "/zones".into(), None, "monitor"),
        ("GET", "/audit".into(), None, "monitor"),
        ("GET", format!("/zones/{ZONE}/keys"), None, "monitor"),
        ("GET", format!("/zones/{ZONE}/backup"), None, "monitor"),
        ("GET", format!("/zones/{ZONE}/signed"), None, "operator"),
        ("POST", format!("/zones/{ZONE}/reload"), None, "operator"),
        (
            "POST",
            "/audit".into(),
            Some(json!({ "command": "matrix" })),
            "operator",
        ),
        ("POST", "/nodes/9/unfence".into(), None, "operator"),
        ("DELETE", "/nodes/9".into(), None, "operator"),
        (
            "POST",
            "/nodes".into(),
            Some(json!({ "id": 9, "raft": "127.0.0.1:1" })),
            "operator",
        ),
        (
            "DELETE",
            "/zones/nosuch.".into(),
            Some(json!({ "confirm": "nosuch." })),
            "operator",
        ),
        (
            "POST",
            "/leader/transfer".into(),
            Some(json!({ "to": leader })),
            "operator",
        ),
        (
            "POST",
            format!("/zones/{ZONE}/keys"),
            Some(json!({ "action": "bogus" })),
            "security-officer",
        ),
        (
            "DELETE",
            "/zones/nosuch./keys".into(),
            Some(json!({ "confirm": "nosuch." })),
            "security-officer",
        ),
        (
            "POST",
            "/keystore".into(),
            Some(json!({ "available": true })),
            "security-officer",
        ),
        (
            "POST",
            "/nodes/2/keystore".into(),
            Some(json!({ "available": true })),
            "security-officer",
        ),
        (
            "PATCH",
            format!("/zones/{ZONE}"),
            Some(json!({ "policy": "not toml [" })),
            "security-officer",
        ),
    ];
    let rank = |r: &str| {
        ["monitor", "operator", "security-officer"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, path, body, needed) in &matrix {
        let body = body.as_ref();
        let a = call_as(l.https(1), Some(&foreign), method, path, body, T);
        assert!(
            a.as_ref().map_or(true, |a| a.code == 401),
            "{method} {path} with a foreign CA: {:?}",
            a.map(|a| (a.code, a.message()))
        );
        for role in ["monitor", "operator", "security-officer"] {
            let a = call_as(l.https(1), Some(&l.creds(role)), method, path, body, T)
                .unwrap_or_else(|e| panic!("{method} {path} as {role}: {e}"));
            if rank(role) < rank(needed) {
                assert_eq!(a.code, 403, "{method} {path} as {role}: {}", a.message());
                assert!(
                    a.message().contains(&format!("needs the role {needed}")),
                    "{}",
                    a.message()
                );
            } else {
                assert!(
                    a.code != 401 && a.code != 403,
                    "{method} {path} as {role}: {} {}",
                    a.code,
                    a.message()
                );
            }
        }
        // The lab maps its own uid to security-officer on the socket.
        let a = call(l.sock(2), method, path, body, T).unwrap();
        assert!(
            a.code != 401 && a.code != 403,
            "{method} {path} on the socket: {}",
            a.message()
        );
        if *method == "POST" && path == "/leader/transfer" {
            l.procs
                .agreed_leader(T)
                .expect("a leader after the transfer");
        }
    }
    // A body that is not one JSON object is refused before its role is judged: a policy
    // given positionally in an array would otherwise pass for an operator's zone add.
    let array = json!([
        "arr.example.",
        "/dev/null",
        null,
        null,
        null,
        null,
        null,
        null,
        [],
        [],
        null,
        "ksk_lifetime = 0\n"
    ]);
    for (method, path) in [
        ("POST", "/zones".to_string()),
        ("PATCH", format!("/zones/{ZONE}")),
    ] {
        let a = call_as(
            l.https(1),
            Some(&l.creds("operator")),
            method,
            &path,
            Some(&array),
            T,
        )
        .unwrap();
        assert_eq!(
            a.code,
            400,
            "{method} {path} with an array body: {}",
            a.message()
        );
    }
    // Refusals and changes are audited with the caller's identity and role.
    let audit = call(l.sock(3), "GET", "/audit", None, T).unwrap().json();
    let by: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["origin"]["by"], r["origin"]["command"]))
        .collect();
    assert!(
        by.iter()
            .any(|b| b.contains("cert:lab-operator (operator)") && b.contains("matrix")),
        "{by:#?}"
    );
    assert!(by.iter().any(|b| b.contains("unix:")), "{by:#?}");

    // Browser-style requests on the socket: text/plain, a foreign Origin, a foreign Host.
    let s = l.sock(1);
    let note = r#"{"command":"x"}"#;
    let post = |ct: &str, extra: &str, host: &str| {
        format!(
            "POST /v1/audit HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ct}\r\n{extra}Content-Length: {}\r\n\r\n{note}",
            note.len()
        )
    };
    assert_eq!(raw(s, &post("text/plain", "", "localhost")), 415);
    assert_eq!(
        raw(
            s,
            &post(
                "application/json",
                "Origin: http://evil.example\r\n",
                "localhost"
            )
        ),
        403
    );
    assert_eq!(raw(s, &post("application/json", "", "evil.example")), 421);
    assert_eq!(
        raw(
            s,
            "GET /v1/status HTTP/1.1\r\nHost: rebind.evil.example\r\n\r\n"
        ),
        421
    );
    assert_eq!(raw(s, &post("application/json", "", "localhost")), 200);
    // The same over HTTPS with a monitor's certificate: a Host that is not the listener's,
    // then the listener's own.
    let monitor = l.creds("monitor");
    let rebound = raw_tls(
        &l,
        Some(&monitor),
        "GET /v1/status HTTP/1.1\r\nHost: rebind.evil.example\r\n\r\n",
    );
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    let own = raw_tls(
        &l,
        Some(&monitor),
        "GET /v1/status HTTP/1.1\r\nHost: {addr}\r\n\r\n",
    );
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    let origin = raw_tls(
        &l,
        Some(&monitor),
        "GET /v1/status HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert!(origin.starts_with("HTTP/1.1 403"), "{origin}");

    // Operator notes: bounded in size and in rate.
    let big = json!({ "command": "x".repeat(5000) });
    let a = call(s, "POST", "/audit", Some(&big), T).unwrap();
    assert_eq!(a.code, 413, "{}", a.message());
    let mut refused = 0;
    for i in 0..12 {
        let a = call(
            s,
            "POST",
            "/audit",
            Some(&json!({ "command": format!("note {i}") })),
            T,
        )
        .unwrap();
        if a.code == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 2, "12 notes in a row, {refused} refused");

    // The wedge: three adds of nodes that do not exist, even with credentials, change
    // nothing; the cluster keeps publishing and a later remove still works.
    for id in [4, 5, 6] {
        let (code, out, err) = qs(&[
            "node",
            "add",
            "--id",
            &id.to_string(),
            "--raft",
            &format!("127.0.0.1:{}", 1 + id),
            "--admin",
            l.sock(1),
        ]);
        assert_ne!(code, 0, "bogus add of node {id} accepted: {out}");
        assert!(err.contains("does not answer"), "{err}");
    }
    let st = call(s, "GET", "/status", None, T).unwrap().json();
    assert_eq!(st["voters"].as_array().unwrap().len(), 3, "{st}");
    assert!(st["learners"].as_array().unwrap().is_empty(), "{st}");
    let before = l.serial_everywhere(0);
    let zone = l.dir.path().join("example.zone");
    let mut text = std::fs::read_to_string(&zone).unwrap();
    text.push_str("wedge 300 IN A 192.0.2.77\n");
    std::fs::write(&zone, text).unwrap();
    let (code, out, err) = qs(&["zone", "reload", ZONE, "--admin", l.sock(2)]);
    assert_eq!(code, 0, "{out}{err}");
    l.serial_everywhere(before);
}

#[test]
fn slow_idle_and_too_many_connections_are_closed() {
    let l = Lab::start(22300);
    let s = l.sock(1).to_string();
    // Idle: nothing sent; a head sent a byte a second never completes; a body that stalls.
    let idle = closed_after(&s, b"");
    assert!(
        idle < Duration::from_secs(9),
        "idle connection open for {idle:?}"
    );
    let slow = {
        let mut c = UnixStream::connect(&s).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(900)))
            .unwrap();
        let t = Instant::now();
        let head = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut closed = None;
        for b in head.iter().take(30) {
            if c.write_all(&[*b]).is_err() {
                closed = Some(t.elapsed());
                break;
            }
            let mut buf = [0u8; 64];
            if let Ok(0) = c.read(&mut buf) {
                closed = Some(t.elapsed());
                break;
            }
        }
        closed.expect("a head dripped over 27 s was still read")
    };
    assert!(slow < Duration::from_secs(9), "slow head open for {slow:?}");
    let stalled = raw(
        &s,
        "POST /v1/audit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    );
    assert_eq!(stalled, 408, "a stalled body");
    // The connection cap (64): the 65th connection is closed at once, and once the others
    // are gone requests are served again.
    let held: Vec<UnixStream> = (0..64).map(|_| UnixStream::connect(&s).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let over = closed_after(&s, b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        over < Duration::from_secs(2),
        "65th connection served or held {over:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(call(&s, "GET", "/status", None, T).unwrap().code, 200);

    // Files: secrets 0600, directories of secrets 0700, the socket 0660.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let d = l.dir.path();
    for f in [
        "cluster.pass",
        "tsig.secret",
        "certs/ca.key",
        "certs/node-1.key",
        "certs/operator-ca.key",
        "certs/operator-lab-monitor.key",
    ] {
        assert_eq!(mode(&d.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&d.join("certs")), 0o700);
    assert_eq!(mode(&d.join("data-1")), 0o700);
    // Nothing the node made in its data dir (store, snapshots, spill files) is open to
    // group or others.
    let mut stack = vec![d.join("data-1")];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        assert_eq!(
            mode(&p) & 0o077,
            0,
            "{} is mode {:o}",
            p.display(),
            mode(&p)
        );
        seen += 1;
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 3, "only {seen} entries in the data dir");
    assert_eq!(mode(Path::new(&s)), 0o660);
}

#[test]
fn a_config_error_never_echoes_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    lab::write(dir.path(), &[1], &[1], 22500, "").unwrap();
    let cfg = dir.path().join("node-1.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "secret_file = \"tsig.secret\"",
        "secret = \"c2VjcmV0LXRzaWctdmFsdWUtMTIzNDU2Nzg5MA== trailing",
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = qs(&["node", "run", "--config", p(&cfg), "--check"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("line "), "{err}");
    assert!(!err.contains("c2VjcmV0"), "the secret was echoed: {err}");
    // Readable by others: the node says so when it starts (checked without starting it).
    let pass = dir.path().join("cluster.pass");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = lab::write(dir.path(), &[1], &[1], 22500, "").unwrap()[0]
        .config
        .clone();
    let c = quorumsign::config::NodeConfig::load(&cfg).unwrap();
    let w = c.exposed_secrets();
    assert!(w.iter().any(|w| w.contains("cluster.pass")), "{w:?}");
}

/// Kills a daemon the test started when the test ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn operator_key_events_are_checked_with_the_parent_and_removed_zones_keep_their_keys() {
    const CHILD: &str = "child.parent.test.";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The key clock runs 600 times real time, so that the KSK's DS is due within seconds.
    let epoch = quorumsign::runtime::wall();
    let extra = format!("\n[signer]\ntick_ms = 100\nkasp_time_scale = 600\nkasp_epoch = {epoch}\n");
    let nodes = lab::write(d, &[1], &[1], 22600, &extra).unwrap();
    let mut procs = lab::Procs::local(nodes, &exe());
    procs.start().unwrap();
    let s = procs.node(1).admin.clone();
    let (code, out, err) = qs(&["cluster", "init", "--admin", &s]);
    assert_eq!(code, 0, "{out}{err}");
    // The parent: Knot on loopback serving parent.test. without a DS for the child.
    let parent_port = 22690;
    let pd = d.join("parent");
    std::fs::create_dir_all(&pd).unwrap();
    std::fs::write(
        pd.join("parent.zone"),
        "$TTL 3600\n@ SOA ns hostmaster 1 3600 600 86400 600\n@ NS ns\nns A 127.0.0.1\n\
         child NS ns.child\nns.child A 127.0.0.1\n",
    )
    .unwrap();
    let kconf = pd.join("knot.conf");
    std::fs::write(
        &kconf,
        format!(
            "server:\n    rundir: \"{k}\"\n    listen: 127.0.0.1@{parent_port}\n\
             database:\n    storage: \"{k}\"\n\
             zone:\n  - domain: parent.test.\n    storage: \"{k}\"\n    file: parent.zone\n",
            k = pd.display()
        ),
    )
    .unwrap();
    let _knot = Daemon(
        std::process::Command::new("knotd")
            .args(["-c", p(&kconf)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("knotd (install the test tools with `bash tests/run.sh`)"),
    );
    let child = d.join("child.zone");
    std::fs::write(
        &child,
        "$TTL 600\n@ SOA ns hostmaster 1 3600 600 86400 600\n@ NS ns\nns A 127.0.0.1\nwww A 192.0.2.1\n",
    )
    .unwrap();
    let policy = d.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "dnskey_ttl = 600\nds_ttl = 600\npropagation_delay = 300\nparent_propagation_delay = 600\n\
             publish_safety = 60\nretire_safety = 60\npurge_after = 3600\nzsk_lifetime = 0\n\
             ksk_lifetime = 0\nparent_servers = [\"127.0.0.1:{parent_port}\"]\n\
             parent_check_interval = 3600\n"
        ),
    )
    .unwrap();
    let add_child = || {
        qs(&[
            "zone",
            "add",
            CHILD,
            "--file",
            p(&child),
            "--policy",
            p(&policy),
            "--admin",
            &s,
        ])
    };
    let (code, out, err) = add_child();
    assert_eq!(code, 0, "{out}{err}");
    let ksk = lab::wait_for(Duration::from_secs(60), || {
        let v = call(&s, "GET", &format!("/zones/{CHILD}/keys"), None, T)
            .ok()?
            .json();
        v["keys"].as_array()?.iter().find_map(|k| {
            (k["role"] == "ksk" || k["role"] == "csk")
                .then(|| k["tag"].as_u64())
                .flatten()
        })
    })
    .expect("the child's KSK");
    let tag = ksk.to_string();
    // Knot must answer before the check means anything.
    lab::wait_for(Duration::from_secs(10), || {
        let (code, out, _) = common::tool(
            "kdig",
            &[
                "@127.0.0.1",
                "-p",
                &parent_port.to_string(),
                "parent.test.",
                "SOA",
                "+short",
            ],
        );
        (code == 0 && out.contains("hostmaster")).then_some(())
    })
    .expect("the parent answers");
    // A forged "DS seen": the parent serves no DS of the child, so it is refused.
    let (code, out, err) = qs(&["keys", "ds-seen", CHILD, &tag, "--admin", &s]);
    assert_ne!(
        code, 0,
        "ds-seen accepted although the parent has no DS: {out}"
    );
    assert!(err.contains("do not serve a DS of this key"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{parent_port}: no DS")),
        "{err}"
    );
    // A security officer may force it once the DS is due; the audit log says so, with the
    // parent's answer.
    lab::wait_for(Duration::from_secs(60), || {
        let (code, _, err) = qs(&["keys", "ds-seen", CHILD, &tag, "--force", "--admin", &s]);
        assert!(code == 0 || err.contains("not submitted"), "{err}");
        (code == 0).then_some(())
    })
    .expect("a forced ds-seen is taken once the DS is submitted");
    let audit = call(&s, "GET", "/audit", None, T)
        .unwrap()
        .json()
        .to_string();
    assert!(
        audit.contains("FORCED: the parent's servers do not serve a DS"),
        "{audit}"
    );

    // zone remove needs the name twice and keeps the keys; the zone cannot come back
    // before a purge, which needs the name twice too.
    let (code, _, err) = qs(&[
        "zone",
        "remove",
        CHILD,
        "--confirm",
        "other.test.",
        "--admin",
        &s,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--confirm"), "{err}");
    let (code, out, err) = qs(&["zone", "remove", CHILD, "--confirm", CHILD, "--admin", &s]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = add_child();
    assert_ne!(code, 0, "re-added over retired keys");
    assert!(err.contains("keys purge"), "{err}");
    let (code, _, _) = qs(&["keys", "purge", CHILD, "--confirm", "x.", "--admin", &s]);
    assert_ne!(code, 0);
    let (code, out, err) = qs(&["keys", "purge", CHILD, "--confirm", CHILD, "--admin", &s]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = add_child();
    assert_eq!(code, 0, "{out}{err}");
}
