//! Signed output is accepted by quorumsign verify and by the external referees
//! dnssec-verify, ldns-verify-zone and kzonecheck, for NSEC, NSEC3 and NSEC3 opt-out,
//! for algorithms 13, 14, 15 and 8, with soft keys, on hand-written and generated zones.

mod common;

use common::*;

fn matrix(alg: &str, csk: bool) {
    let dir = tempfile::tempdir().unwrap();
    let zones = [
        ("example", example_zone()),
        ("tld", generated_zone(dir.path(), "tld", "tld", 3000)),
        (
            "flat.test",
            generated_zone(dir.path(), "flat", "flat.test", 1500),
        ),
    ];
    for (zone, input) in &zones {
        let ks = make_keys(&dir.path().join(format!("keys-{zone}")), zone, alg, csk);
        for (name, extra) in [
            ("nsec", &["--denial", "nsec"][..]),
            ("nsec3", &["--denial", "nsec3"][..]),
            ("optout", &["--denial", "nsec3", "--opt-out"][..]),
        ] {
            let out = dir.path().join(format!("{zone}.{name}.signed"));
            let mut args = vec![
                "sign",
                "--zone",
                zone,
                "--input",
                p(input),
                "--output",
                p(&out),
                "--keystore",
                &ks,
            ];
            args.extend_from_slice(extra);
            qs_ok(&args);
            assert_validators_accept(zone, &out, csk);
        }
    }
}

#[test]
fn ecdsa_p256_ksk_zsk() {
    matrix("13", false);
}

#[test]
fn ed25519_ksk_zsk() {
    matrix("15", false);
}

#[test]
fn ecdsa_p384_csk() {
    matrix("14", true);
}

#[test]
fn rsasha256_ksk_zsk() {
    matrix("8", false);
}

#[test]
fn keys_from_dnssec_keygen_sign_and_ds_matches() {
    let dir = tempfile::tempdir().unwrap();
    let kd = dir.path();
    for extra in [&["-f", "KSK"][..], &[][..]] {
        let mut args = vec!["-q", "-K", p(kd), "-a", "ECDSAP256SHA256"];
        args.extend_from_slice(extra);
        args.push("example.");
        let (code, _, err) = tool("dnssec-keygen", &args);
        assert_eq!(code, 0, "{err}");
    }
    let ks = format!("dir:{}", kd.display());
    let out = kd.join("signed");
    qs_ok(&[
        "sign",
        "--zone",
        "example",
        "--input",
        p(&example_zone()),
        "--output",
        p(&out),
        "--keystore",
        &ks,
    ]);
    assert_all_validators_accept("example", &out);
    // Our DS equals BIND's for the same key.
    let ours = qs_ok(&["ds", "--zone", "example", "--keystore", &ks]);
    let ksk = std::fs::read_dir(kd)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "key")
                && std::fs::read_to_string(p).unwrap().contains("DNSKEY 257")
        })
        .unwrap();
    let (code, bind, err) = tool("dnssec-dsfromkey", &["-2", p(&ksk)]);
    assert_eq!(code, 0, "{err}");
    let digest = |s: &str| s.split_whitespace().last().unwrap().to_ascii_uppercase();
    assert_eq!(digest(&ours), digest(&bind), "ours: {ours} bind: {bind}");
}

#[test]
fn our_keys_are_read_by_ldns_signzone() {
    // Keys we write are BIND key files: another signer can use them.
    let dir = tempfile::tempdir().unwrap();
    let kd = dir.path().join("keys");
    make_keys(&kd, "example", "13", false);
    let bases: Vec<String> = std::fs::read_dir(&kd)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .map(|p| p.to_str().unwrap().trim_end_matches(".key").to_string())
        .collect();
    assert_eq!(bases.len(), 2);
    let out = dir.path().join("ldns.signed");
    let input = example_zone();
    let mut args = vec!["-o", "example.", "-f", p(&out), p(&input)];
    args.extend(bases.iter().map(String::as_str));
    let (code, o, e) = tool("ldns-signzone", &args);
    assert_eq!(code, 0, "ldns-signzone failed with our keys:\n{o}\n{e}");
    let (code, o, e) = qs(&["verify", "--zone", "example", p(&out)]);
    assert_eq!(code, 0, "we reject ldns-signzone's output:\n{o}\n{e}");
}
