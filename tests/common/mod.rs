//! Helpers shared by the integration tests: run the real binary and the real peer tools.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod daemon;
pub mod example;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use cluster::Cluster;
pub use daemon::{Daemon, named, unbound};

pub fn qs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumsign"))
}

/// Runs quorumsign with `args`; returns (exit code, stdout, stderr).
pub fn qs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(qs_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run quorumsign");
    split(out)
}

pub fn split(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs quorumsign and panics with its output unless it exits 0.
pub fn qs_ok(args: &[&str]) -> String {
    let (code, out, err) = qs(args);
    assert_eq!(code, 0, "quorumsign {args:?} failed:\n{out}\n{err}");
    out
}

/// `quorumsign sign` of `input` into `output` with keystore `ks` and `extra` arguments;
/// panics with the output unless it succeeds.
pub fn sign_ok(zone: &str, input: &str, output: &str, ks: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "sign",
        "--zone",
        zone,
        "--input",
        input,
        "--output",
        output,
        "--keystore",
        ks,
    ];
    args.extend_from_slice(extra);
    qs_ok(&args)
}

/// Runs an external tool; the tools are installed by the README's test command, so a
/// missing tool is a failure, not a skip.
pub fn tool(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}); install the test tools with `bash tests/run.sh`")
    });
    split(out)
}

pub fn example_zone() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example.zone")
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Makes a KSK and a ZSK (or one CSK) for `zone` in `dir:<dir>`.
pub fn make_keys(dir: &Path, zone: &str, alg: &str, csk: bool) -> String {
    let ks = format!("dir:{}", dir.display());
    let roles: &[&str] = if csk { &["csk"] } else { &["ksk", "zsk"] };
    for role in roles {
        qs_ok(&[
            "keys",
            "generate",
            "--zone",
            zone,
            "--keystore",
            &ks,
            "--algorithm",
            alg,
            "--role",
            role,
        ]);
    }
    ks
}

/// Writes a SoftHSM2 configuration with its token directory under `dir`; returns its path.
pub fn softhsm_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("softhsm2.conf");
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\n", dir.join("tokens").display()),
    )
    .unwrap();
    conf
}

/// The user PIN of every test token. Tests assert it is never printed, so it must be a string
/// no key tag, hex id or base64 key can contain (a PIN of digits once matched a key tag).
pub const USER_PIN: &str = "Qz-user-pin-7x";
/// A PIN that is always wrong, with the same property.
pub const WRONG_PIN: &str = "Vk-wrong-pin-9w";

/// Creates a SoftHSM2 token `label` (user PIN [`USER_PIN`]) in the token directory of `conf`.
pub fn init_softhsm_token(conf: &Path, label: &str) {
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            USER_PIN,
            "--so-pin",
            "5678",
        ])
        .output()
        .expect("softhsm2-util (install the test tools with `bash tests/run.sh`)");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that quorumsign verify, dnssec-verify, ldns-verify-zone and kzonecheck all
/// accept the signed zone.
pub fn assert_all_validators_accept(zone: &str, signed: &Path) {
    assert_validators_accept(zone, signed, false)
}

/// As [`assert_all_validators_accept`]; `csk` passes dnssec-verify's `-z` (a single key
/// with the SEP flag signs everything, so BIND must not insist on a separate ZSK).
pub fn assert_validators_accept(zone: &str, signed: &Path, csk: bool) {
    let (code, out, err) = qs(&["verify", "--zone", zone, p(signed)]);
    assert_eq!(
        code,
        0,
        "quorumsign verify rejected {}:\n{out}\n{err}",
        signed.display()
    );
    let origin = if zone.ends_with('.') {
        zone.to_string()
    } else {
        format!("{zone}.")
    };
    let mut args = vec!["-o", origin.as_str(), p(signed)];
    if csk {
        args.insert(0, "-z");
    }
    let (code, out, err) = tool("dnssec-verify", &args);
    assert_eq!(
        code,
        0,
        "dnssec-verify rejected {}:\n{out}\n{err}",
        signed.display()
    );
    let (code, out, err) = tool("ldns-verify-zone", &[p(signed)]);
    assert_eq!(
        code,
        0,
        "ldns-verify-zone rejected {}:\n{out}\n{err}",
        signed.display()
    );
    let (code, out, err) = tool("kzonecheck", &["-o", &origin, "-d", "on", p(signed)]);
    assert_eq!(
        code,
        0,
        "kzonecheck rejected {}:\n{out}\n{err}",
        signed.display()
    );
}

pub fn generated_zone(dir: &Path, shape: &str, zone: &str, count: usize) -> PathBuf {
    let text = qs_ok(&[
        "generate-zone",
        "--shape",
        shape,
        "--zone",
        zone,
        "--count",
        &count.to_string(),
    ]);
    let path = dir.join(format!("{shape}-{count}.zone"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A lab cluster of nodes 1..=n on loopback from `port` in `dir`: started, initialised,
/// with the example zone (copied to `dir/example.zone`) added and validated on every node.
pub fn example_lab(dir: &Path, n: u64, port: u16, extra: &str) -> quorumsign::testkit::lab::Procs {
    use quorumsign::testkit::lab;
    let ids: Vec<u64> = (1..=n).collect();
    let nodes = lab::write(dir, &ids, &ids, port, extra).unwrap();
    let mut procs = lab::Procs::local(nodes, Path::new(env!("CARGO_BIN_EXE_quorumsign")));
    procs.start().unwrap();
    let admin = procs.node(1).admin.clone();
    let (code, out, err) = qs(&["cluster", "init", "--admin", &admin]);
    assert_eq!(code, 0, "cluster init: {out}{err}");
    procs
        .agreed_leader(std::time::Duration::from_secs(30))
        .expect("a leader");
    let zone = dir.join("example.zone");
    std::fs::copy(example_zone(), &zone).unwrap();
    let (code, out, err) = qs(&[
        "zone",
        "add",
        "example.",
        "--file",
        p(&zone),
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0, "zone add: {out}{err}");
    procs
        .converged("example.", 0, std::time::Duration::from_secs(60))
        .expect("the example zone validated on every node");
    procs
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    f
}

/// dig against 127.0.0.1:`port` (2 s, 2 tries); stdout and stderr.
pub fn dig(port: &str, args: &[&str]) -> String {
    let mut a = vec!["@127.0.0.1", "-p", port, "+time=2", "+tries=2"];
    a.extend_from_slice(args);
    let (_, out, err) = tool("dig", &a);
    out + &err
}

/// The SOA serial `zone` has at 127.0.0.1:`port`, if it answers.
pub fn soa_serial(port: &str, zone: &str) -> Option<u64> {
    let out = dig(port, &["+short", "+norec", zone, "SOA"]);
    out.split_whitespace().nth(2)?.parse().ok()
}
