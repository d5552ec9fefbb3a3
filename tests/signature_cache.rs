//! The signature cache: a second run signs only what is new, changed or due for refresh,
//! and the result still validates everywhere.

mod common;

use common::*;

/// Signs and returns (signed, reused) from the run's summary line.
fn sign(args: &[&str]) -> (usize, usize) {
    let (code, out, err) = qs(args);
    assert_eq!(code, 0, "{out}\n{err}");
    let field = |k: &str| -> usize {
        let at = err
            .find(&format!(" {k}="))
            .unwrap_or_else(|| panic!("no {k}= in {err}"));
        err[at + k.len() + 2..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("signed"), field("reused"))
}

#[test]
fn only_changed_and_expiring_rrsets_are_signed_again() {
    let dir = tempfile::tempdir().unwrap();
    let ks = make_keys(&dir.path().join("keys"), "tld", "13", false);
    let input = generated_zone(dir.path(), "tld", "tld", 2000);
    let out = dir.path().join("signed");
    let cache = dir.path().join("cache");
    let now = quorumsign::hsm::soft::now_u32();
    let now_s = now.to_string();
    let base = |input: &std::path::Path, now: &str| -> Vec<String> {
        [
            "sign",
            "--zone",
            "tld",
            "--input",
            p(input),
            "--output",
            p(&out),
            "--keystore",
            &ks,
            "--denial",
            "nsec",
            "--cache",
            p(&cache),
            "--now",
            now,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |input: &std::path::Path, now: &str| {
        let a = base(input, now);
        sign(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    tracing_phase("first run signs everything");
    let (signed, reused) = run(&input, &now_s);
    assert!(
        signed > 1000 && reused == 0,
        "signed {signed} reused {reused}"
    );
    let total = signed;

    tracing_phase("unchanged input: nothing is signed again");
    let (signed, reused) = run(&input, &now_s);
    assert_eq!((signed, reused), (0, total));

    tracing_phase("one new delegation: its DS/NSEC and the neighbours' NSEC and the SOA");
    let mut text = std::fs::read_to_string(&input).unwrap();
    text = text.replace("2026112201", "2026112202");
    text.push_str("zzzznew IN NS ns1.example.net.\nzzzznew IN DS 1 13 2 00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA00AA\n");
    let changed = dir.path().join("changed.zone");
    std::fs::write(&changed, text).unwrap();
    let (signed, reused) = run(&changed, &now_s);
    assert!((3..=6).contains(&signed), "signed {signed}");
    assert_eq!(signed + reused, total + 2);
    assert_all_validators_accept("tld", &out);

    tracing_phase("12 days later every signature is inside the 3-day refresh window");
    let later = (now + 12 * 86_400).to_string();
    let (signed, reused) = run(&changed, &later);
    assert_eq!((signed, reused), (total + 2, 0));
    let (code, o, e) = qs(&["verify", "--zone", "tld", "--now", &later, p(&out)]);
    assert_eq!(code, 0, "{o}{e}");
}

#[test]
fn a_different_key_set_re_signs() {
    let dir = tempfile::tempdir().unwrap();
    let keydir = dir.path().join("keys");
    let ks = make_keys(&keydir, "example", "13", false);
    let out = dir.path().join("signed");
    let cache = dir.path().join("cache");
    let input = example_zone();
    let args = [
        "sign",
        "--zone",
        "example",
        "--input",
        p(&input),
        "--output",
        p(&out),
        "--keystore",
        &ks,
        "--cache",
        p(&cache),
    ];
    let (signed, _) = sign(&args);
    // A new ZSK: every RRset gains a signature by it; the KSK's DNSKEY signature is redone
    // because the DNSKEY RRset itself changed.
    qs_ok(&[
        "keys",
        "generate",
        "--zone",
        "example",
        "--keystore",
        &ks,
        "--algorithm",
        "13",
    ]);
    let (signed2, reused2) = sign(&args);
    assert!(signed2 >= signed, "signed {signed2}");
    assert!(reused2 > 0, "the old ZSK's unchanged signatures are kept");
    assert_all_validators_accept("example", &out);
    // The cache is tied to its zone.
    let other = generated_zone(dir.path(), "flat", "other", 10);
    make_keys(&keydir, "other", "13", true);
    let (code, _, err) = qs(&[
        "sign",
        "--zone",
        "other",
        "--input",
        p(&other),
        "--output",
        p(&out),
        "--keystore",
        &ks,
        "--cache",
        p(&cache),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("is for zone example."), "{err}");
}

fn tracing_phase(s: &str) {
    eprintln!("--- phase: {s}");
}
