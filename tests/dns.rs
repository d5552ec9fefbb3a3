//! Serving and transfers with real peers on 127.0.0.1: a three-node cluster serves the
//! signed zone; BIND (named) and Knot pull it as secondaries with TSIG (AXFR, then IXFR
//! after a change, on NOTIFY); dig/kdig query it; delv and Unbound validate answers from
//! the zone's KSK; a transfer without TSIG is refused; the leader dies while secondaries
//! pull and the next NOTIFY comes from the new leader. (Hidden primaries: `primary.rs`;
//! key rolls against a real parent: `rolls.rs`.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    Cluster, Daemon, assert_validators_accept, dig, p, qs_ok, soa_serial, tool, unbound, write,
};
use quorumsign::testkit::lab::{self, dnskey_lines};

const ZONE: &str = "example.";

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

const NAMED: &str = "18700";
const KNOT: &str = "18710";
const UNBOUND: &str = "18720";

/// What the phases of the secondaries test share.
struct Sec {
    c: Cluster,
    d: std::path::PathBuf,
    secret: String,
    zone_file: std::path::PathBuf,
    output: std::path::PathBuf,
}

#[test]
fn secondaries_pull_with_tsig_resolvers_validate_and_failover_keeps_serving() {
    eprintln!("phase: two zones signed: example. (NSEC3) and example.org. (NSEC)");
    let (mut s, serial, leader) = two_zones_signed();
    eprintln!("phase: referrals");
    referrals_carry_the_ds_or_the_proof_of_none(&s);
    eprintln!("phase: answers and the file output");
    every_node_answers_and_the_file_output_validates(&s, serial);
    eprintln!("phase: transfers need TSIG");
    transfers_need_tsig(&s);
    eprintln!("phase: BIND and Knot as secondaries");
    let (named, knot) = named_and_knot_pull_the_zone(&s, serial);
    eprintln!("phase: delv and Unbound validate");
    resolvers_validate_from_the_ksk(&s);
    eprintln!("phase: a change, by NOTIFY and IXFR");
    let serial2 = a_change_goes_to_the_secondaries_by_ixfr(&s, &named, &knot, serial);
    eprintln!("phase: the leader dies");
    the_leader_dies_and_the_new_one_notifies(&mut s, named, knot, leader, serial2);
}

/// The cluster with example. (NSEC3) and example.org. (NSEC), both signed; the first
/// serial of example., and the leader.
fn two_zones_signed() -> (Sec, u64, u64) {
    let c = Cluster::start(18500);
    let d = c.dir.path().to_path_buf();
    let secret = c.secret();
    let (named_port, knot_port) = (NAMED, KNOT);
    let zone_file = d.join("example.zone");
    std::fs::copy(common::example_zone(), &zone_file).unwrap();
    let output = d.join("example.signed");
    qs_ok(&[
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
    qs_ok(&[
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
    let s = Sec {
        c,
        d,
        secret,
        zone_file,
        output,
    };
    (s, serial, leader)
}

fn referrals_carry_the_ds_or_the_proof_of_none(s: &Sec) {
    let Sec { c, .. } = s;
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
}

fn every_node_answers_and_the_file_output_validates(s: &Sec, serial: u64) {
    let Sec { c, output, .. } = s;
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
}

fn transfers_need_tsig(s: &Sec) {
    let Sec { c, secret, .. } = s;
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
}

fn named_and_knot_pull_the_zone(s: &Sec, serial: u64) -> (Daemon, Daemon) {
    let Sec { c, d, secret, .. } = s;
    let (named_port, knot_port) = (NAMED, KNOT);
    // BIND and Knot as secondaries.
    let nd = d.join("named");
    std::fs::create_dir_all(&nd).unwrap();
    let primaries: String = (1..=3)
        .map(|id| format!("127.0.0.1 port {} key xfr-key; ", c.dns_port(id)))
        .collect();
    let zones = format!(
        "zone \"example.\" {{ type secondary; primaries {{ {primaries} }}; \
         file \"example.db\"; masterfile-format text; allow-notify {{ 127.0.0.1; }}; }};\n"
    );
    let named = common::named(&nd, named_port, secret, "notify no; ", &zones);
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

    (named, knot)
}

fn resolvers_validate_from_the_ksk(s: &Sec) {
    let Sec { c, d, output, .. } = s;
    let unbound_port = UNBOUND;
    let port1 = c.dns_port(1);
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
}

fn a_change_goes_to_the_secondaries_by_ixfr(
    s: &Sec,
    named: &Daemon,
    knot: &Daemon,
    serial: u64,
) -> u64 {
    let Sec {
        c,
        secret,
        zone_file,
        ..
    } = s;
    let (named_port, knot_port) = (NAMED, KNOT);
    let port1 = c.dns_port(1);
    let key_arg = format!("hmac-sha256:xfr-key:{secret}");
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

    serial2
}

fn the_leader_dies_and_the_new_one_notifies(
    s: &mut Sec,
    _named: Daemon,
    knot: Daemon,
    leader: u64,
    serial2: u64,
) {
    let Sec {
        c,
        zone_file,
        output,
        ..
    } = s;
    let (named_port, knot_port) = (NAMED, KNOT);
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
