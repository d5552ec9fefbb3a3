//! The master-file parser and zone model: every RFC 1035 feature the signer needs, every
//! refusal naming file and line, and agreement with hickory's parser as the reference.

mod common;

use std::collections::BTreeSet;

use common::*;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use quorumsign::zone::{Limits, Name, NodeKind, ParseOptions, Zone, rtype};

fn opts(origin: &str) -> ParseOptions {
    ParseOptions {
        origin: Name::parse(origin.as_bytes(), None).unwrap(),
        limits: Limits::default(),
        keep_dnssec: false,
    }
}

fn load(text: &str) -> Result<(Zone, Vec<quorumsign::zone::Warning>), String> {
    let o = opts("example.");
    let parsed = quorumsign::zone::parse::parse_bytes(text.as_bytes(), "test.zone", &o)
        .map_err(|e| e.to_string())?;
    Zone::build(parsed, &o.origin, "test.zone", &o.limits).map_err(|e| e.to_string())
}

const HEAD: &str =
    "$ORIGIN example.\n$TTL 300\n@ IN SOA ns hostmaster 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.1\n";

fn err_of(body: &str) -> String {
    match load(&format!("{HEAD}{body}")) {
        Ok(_) => panic!("accepted:\n{body}"),
        Err(e) => e,
    }
}

#[test]
fn refusals_name_file_and_line() {
    assert!(
        err_of("www IN A 192.0.2.1\nwww IN CNAME ns\n").starts_with("test.zone:7: "),
        "{}",
        err_of("www IN A 192.0.2.1\nwww IN CNAME ns\n")
    );
    assert!(err_of("www IN A 192.0.2.1\nwww IN CNAME ns\n").contains("beside"));
    let e = err_of("www.example.org. IN A 192.0.2.1\n");
    assert!(
        e.starts_with("test.zone:6: ") && e.contains("out of zone"),
        "{e}"
    );
    let e = err_of("bad IN A 300.1.2.3\n");
    assert!(e.starts_with("test.zone:6: ") && e.contains("IPv4"), "{e}");
    let e = err_of("x IN A (\n192.0.2.1\n");
    assert!(
        e.starts_with("test.zone:6: ") && e.contains("parentheses"),
        "{e}"
    );
    let e = err_of("x IN DS 1 13 2 00AA\n");
    assert!(
        e.starts_with("test.zone:6: ") && e.contains("needs 32 octets"),
        "{e}"
    );
    let e = err_of("x IN BOGUS 1\n");
    assert!(e.contains("unknown record type"), "{e}");
    let e = err_of("x IN TXT \"unterminated\n");
    assert!(
        e.starts_with("test.zone:6: ") && e.contains("quoted"),
        "{e}"
    );
    let e = err_of("x IN CH A 192.0.2.1\n");
    assert!(e.contains("class CH"), "{e}");
    let e = load("$ORIGIN example.\n$TTL 300\nwww IN A 192.0.2.1\n").unwrap_err();
    assert!(e.contains("no SOA"), "{e}");
}

#[test]
fn rrset_over_the_limit_is_refused_by_name() {
    let o = ParseOptions {
        limits: Limits {
            rrset_records_max: 3,
            ..Limits::default()
        },
        ..opts("example.")
    };
    let body =
        format!("{HEAD}m IN A 192.0.2.1\nm IN A 192.0.2.2\nm IN A 192.0.2.3\nm IN A 192.0.2.4\n");
    let parsed = quorumsign::zone::parse::parse_bytes(body.as_bytes(), "big.zone", &o).unwrap();
    let e = Zone::build(parsed, &o.origin, "big.zone", &o.limits)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rrset_records_max = 3") && e.starts_with("big.zone:"),
        "{e}"
    );
}

#[test]
fn presentation_features() {
    let text = format!(
        "{HEAD}\
         MiXeD IN A 192.0.2.2\n\
         a\\.b IN A 192.0.2.3\n\
         \\065bc IN TXT \"quoted ; not a comment\" plain\n\
         multi 600 IN ( A\n 192.0.2.4 ) ; trailing comment\n\
         \t IN AAAA 2001:db8::4\n\
         unk IN TYPE65280 \\# 4 0a000001\n\
         known IN A \\# 4 c0000205\n\
         ttl1 100 IN A 192.0.2.7\n\
         ttl1 200 IN A 192.0.2.8\n\
         sig IN RRSIG A 13 2 300 20260101000000 20250101000000 1 example. AAAA\n\
         $TTL 1h\n\
         later IN A 192.0.2.9\n"
    );
    let (zone, warnings) = load(&text).unwrap();
    let node = |n: &str| {
        zone.nodes
            .iter()
            .find(|x| x.name == Name::parse(n.as_bytes(), None).unwrap())
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert!(node("mixed.example.").has(rtype::A));
    assert!(node("a\\.b.example.").has(rtype::A));
    let txt = &node("abc.example.").rrset(rtype::TXT).unwrap().rdatas[0];
    assert_eq!(&txt[..], b"\x16quoted ; not a comment\x05plain");
    let m = node("multi.example.");
    assert_eq!(m.rrset(rtype::A).unwrap().ttl, 600);
    assert!(
        m.has(rtype::AAAA),
        "blank owner continues the previous owner"
    );
    assert_eq!(
        &node("unk.example.").rrset(65280).unwrap().rdatas[0][..],
        &[10, 0, 0, 1]
    );
    assert_eq!(
        &node("known.example.").rrset(rtype::A).unwrap().rdatas[0][..],
        &[192, 0, 2, 5]
    );
    let t = node("ttl1.example.").rrset(rtype::A).unwrap();
    assert_eq!(
        (t.ttl, t.rdatas.len()),
        (100, 2),
        "mixed TTLs are normalised to the lowest"
    );
    assert!(
        warnings.iter().any(|w| w.msg.contains("TTLs 100 and 200")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.msg.contains("dropped sig.example. RRSIG")),
        "{warnings:?}"
    );
    assert!(
        zone.nodes
            .iter()
            .all(|n| n.name.to_text() != "sig.example."),
        "the dropped RRSIG left nothing behind"
    );
    assert_eq!(node("later.example.").rrset(rtype::A).unwrap().ttl, 3600);
}

#[test]
fn zone_structure_cuts_glue_occlusion_wildcards() {
    let text = format!(
        "{HEAD}\
         sub IN NS ns.sub\n\
         sub IN DS 1 13 2 0011223344556677889900112233445566778899001122334455667788990011\n\
         ns.sub IN A 192.0.2.53\n\
         deep.below.sub IN A 192.0.2.54\n\
         d IN DNAME example.net.\n\
         x.d IN A 192.0.2.55\n\
         *.w IN A 192.0.2.56\n\
         a.b.c IN A 192.0.2.57\n"
    );
    let (zone, _) = load(&text).unwrap();
    let kind = |n: &str| {
        zone.nodes
            .iter()
            .find(|x| x.name.to_text() == n)
            .map(|x| x.kind)
    };
    assert_eq!(kind("example."), Some(NodeKind::Apex));
    assert_eq!(kind("sub.example."), Some(NodeKind::Delegation));
    assert_eq!(kind("ns.sub.example."), Some(NodeKind::BelowCut));
    assert_eq!(kind("deep.below.sub.example."), Some(NodeKind::BelowCut));
    assert_eq!(kind("d.example."), Some(NodeKind::Auth));
    assert_eq!(kind("x.d.example."), Some(NodeKind::BelowCut));
    assert_eq!(kind("*.w.example."), Some(NodeKind::Auth));
    assert_eq!(
        kind("c.example."),
        None,
        "empty non-terminals are not nodes"
    );
    // Canonical order holds for the whole node list.
    assert!(zone.nodes.windows(2).all(|w| w[0].name < w[1].name));
}

#[test]
fn include_directive() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inc.zone"), "www IN A 192.0.2.80\n").unwrap();
    std::fs::write(
        dir.path().join("main.zone"),
        format!("{HEAD}$INCLUDE inc.zone sub\nafter IN A 192.0.2.81\n"),
    )
    .unwrap();
    let o = opts("example.");
    let (zone, _) = Zone::load(&dir.path().join("main.zone"), &o).unwrap();
    let names: Vec<String> = zone.nodes.iter().map(|n| n.name.to_text()).collect();
    assert!(
        names.contains(&"www.sub.example.".to_string())
            && names.contains(&"after.example.".to_string()),
        "{names:?}"
    );
}

/// Record sets from our parser and from hickory's must be the same.
fn compare_with_hickory(text: &str, origin: &str) {
    let o = opts(origin);
    // hickory's parser refuses DS ("DS should be dynamically generated") and DNAME, and has no
    // RFC 3597 generic rdata; it reads the owner `\065bc` as `5bc` where RFC 1035 §5.1 says
    // `\DDD` is one decimal octet (`Abc`). Leave those lines out of the comparison.
    let text: String = text
        .lines()
        .filter(|l| {
            !l.contains(" DS ")
                && !l.contains(" DNAME ")
                && !l.contains("\\#")
                && !l.contains("\\0")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.as_str();
    let ours = quorumsign::zone::parse::parse_bytes(text.as_bytes(), "ref.zone", &o).unwrap();
    let ours: BTreeSet<(Vec<u8>, u16, u32, Vec<u8>)> = ours
        .records
        .iter()
        .map(|r| (r.owner.as_wire().to_vec(), r.rtype, r.ttl, r.rdata.to_vec()))
        .collect();
    let hname = hickory_proto::rr::Name::from_ascii(origin).unwrap();
    let (_, sets) = hickory_proto::serialize::txt::Parser::new(text, None, Some(hname))
        .parse()
        .expect("hickory parses");
    let mut theirs = BTreeSet::new();
    for set in sets.values() {
        for r in set.records_without_rrsigs() {
            let mut owner = Vec::new();
            let mut enc = BinEncoder::new(&mut owner);
            enc.set_canonical_form(true);
            r.name.to_lowercase().emit(&mut enc).unwrap();
            let mut rd = Vec::new();
            let mut enc = BinEncoder::new(&mut rd);
            enc.set_canonical_form(true);
            r.data.emit(&mut enc).unwrap();
            theirs.insert((owner, u16::from(r.record_type()), r.ttl, rd));
        }
    }
    let only_ours: Vec<_> = ours.difference(&theirs).take(3).collect();
    let only_theirs: Vec<_> = theirs.difference(&ours).take(3).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "differ: ours only {only_ours:?}, hickory only {only_theirs:?}"
    );
    assert!(ours.len() > 5);
}

#[test]
fn agrees_with_hickory_reference_parser() {
    let example = std::fs::read_to_string(example_zone()).unwrap();
    compare_with_hickory(&example, "example.");
    for shape in [
        quorumsign::zone::generate::Shape::Tld,
        quorumsign::zone::generate::Shape::Flat,
    ] {
        compare_with_hickory(
            &quorumsign::zone::generate::zone_text(shape, "gen.", 2000, 7),
            "gen.",
        );
    }
}

#[test]
fn cli_sign_reports_file_and_line_and_leaves_output_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ks = make_keys(&dir.path().join("k"), "example", "13", false);
    let bad = dir.path().join("bad.zone");
    std::fs::write(&bad, format!("{HEAD}www IN A 192.0.2.1\nwww IN CNAME ns\n")).unwrap();
    let out = dir.path().join("out");
    std::fs::write(&out, "old\n").unwrap();
    let (code, _, err) = qs(&[
        "sign",
        "--zone",
        "example",
        "--input",
        p(&bad),
        "--output",
        p(&out),
        "--keystore",
        &ks,
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("bad.zone:7:") && err.contains("CNAME"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n");
}

/// Parses `text` twice, in parallel chunks and sequentially.
fn both_ways(text: &str) -> (Result<Vec<String>, String>, Result<Vec<String>, String>) {
    let run = |min: usize| {
        let o = ParseOptions {
            limits: Limits {
                parallel_parse_bytes_min: min,
                ..Limits::default()
            },
            ..opts("gen.")
        };
        quorumsign::zone::parse::parse_bytes(text.as_bytes(), "big.zone", &o)
            .map(|p| {
                p.records
                    .iter()
                    .map(|r| format!("{} {} {} {:?} {}", r.owner, r.rtype, r.ttl, r.rdata, r.line))
                    .collect()
            })
            .map_err(|e| e.to_string())
    };
    (run(0), run(usize::MAX))
}

#[test]
fn parallel_chunks_parse_like_one_pass() {
    let base = quorumsign::zone::generate::zone_text(
        quorumsign::zone::generate::Shape::Tld,
        "gen.",
        20_000,
        3,
    );
    // Directives and multi-line records in the middle of the file.
    let mid = base.len() / 2;
    let cut = mid + base[mid..].find('\n').unwrap() + 1;
    let text = format!(
        "{}$TTL 77\n$ORIGIN sub.gen.\nx IN TXT ( \"a\" \n \"b;c\" )\n\t IN A 192.0.2.1\ny IN A 192.0.2.2\n$ORIGIN gen.\n{}",
        &base[..cut],
        &base[cut..]
    );
    let (par, seq) = both_ways(&text);
    let (par, seq) = (par.unwrap(), seq.unwrap());
    assert!(par.len() > 40_000);
    assert_eq!(par, seq);
    // An error late in the file is reported at the same line either way.
    let bad = format!("{text}zz IN A 300.0.0.1\n");
    let (par, seq) = both_ways(&bad);
    assert_eq!(par.unwrap_err(), seq.clone().unwrap_err());
    assert!(
        seq.unwrap_err()
            .starts_with(&format!("big.zone:{}:", bad.lines().count()))
    );
}
