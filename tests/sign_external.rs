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
    sign_ok("example", p(&example_zone()), p(&out), &ks, &[]);
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

#[test]
fn keys_from_ldns_keygen_sign() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [&["-k"][..], &[][..]] {
        let mut args = vec!["-a", "ECDSAP256SHA256"];
        args.extend_from_slice(extra);
        args.push("example.");
        let out = std::process::Command::new("ldns-keygen")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("ldns-keygen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // ldns-keygen also writes a .ds file; the keystore reads the .key/.private pairs.
    let ks = format!("dir:{}", dir.path().display());
    let listed = qs_ok(&["keys", "list", "--zone", "example", "--keystore", &ks]);
    assert!(listed.contains("KSK") && listed.contains("ZSK"), "{listed}");
    let out = dir.path().join("signed");
    sign_ok("example", p(&example_zone()), p(&out), &ks, &[]);
    assert_all_validators_accept("example", &out);
}

#[test]
fn our_keys_are_imported_by_knot_keymgr_and_kzonesign_output_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kd = d.join("keys");
    make_keys(&kd, "example", "13", false);
    for sub in ["run", "db", "keys"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::copy(example_zone(), d.join("zone.db")).unwrap();
    let conf = d.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n    rundir: \"{0}/run\"\ndatabase:\n    storage: \"{0}/db\"\n    kasp-db: \"{0}/db/keys\"\n\
             keystore:\n  - id: pem\n    backend: pem\n    config: \"{0}/keys\"\n\
             policy:\n  - id: p\n    keystore: pem\n    manual: on\n    algorithm: ecdsap256sha256\n    nsec3: on\n    nsec3-iterations: 0\n    nsec3-salt-length: 0\n\
             zone:\n  - domain: example.\n    storage: \"{0}\"\n    file: \"zone.db\"\n    dnssec-signing: on\n    dnssec-policy: p\n    zonefile-load: whole\n    journal-content: none\n    semantic-checks: off\n",
            d.display()
        ),
    )
    .unwrap();
    for e in std::fs::read_dir(&kd).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "private") {
            let (code, o, err) = tool(
                "keymgr",
                &["-c", p(&conf), "example.", "import-bind", p(&path)],
            );
            assert_eq!(
                code,
                0,
                "keymgr import-bind refused our key {}:\n{o}\n{err}",
                path.display()
            );
        }
    }
    let outdir = d.join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let (code, o, err) = tool("kzonesign", &["-c", p(&conf), "-o", p(&outdir), "example."]);
    assert_eq!(code, 0, "kzonesign failed with our keys:\n{o}\n{err}");
    let signed = std::fs::read_dir(&outdir)
        .unwrap()
        .next()
        .expect("kzonesign wrote a zone")
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&signed).unwrap();
    // Knot signed with exactly our two keys.
    let tags: Vec<String> = qs_ok(&[
        "keys",
        "list",
        "--zone",
        "example",
        "--keystore",
        &format!("dir:{}", kd.display()),
    ])
    .lines()
    .map(|l| l.split('\t').next().unwrap().to_string())
    .collect();
    for t in &tags {
        assert!(
            text.contains(&format!(" {t} example.")),
            "no RRSIG by key {t} in Knot's output"
        );
    }
    let (code, o, err) = qs(&["verify", "--zone", "example", p(&signed)]);
    assert_eq!(code, 0, "we reject kzonesign's output:\n{o}\n{err}");
}

#[test]
fn output_is_deterministic_apart_from_ecdsa_randomness() {
    // Ed25519 signatures are deterministic, so two runs at the same time give the same bytes
    // (jitter included); with ECDSA only the signature fields differ.
    let dir = tempfile::tempdir().unwrap();
    let input = generated_zone(dir.path(), "tld", "tld", 500);
    for (alg, deterministic) in [("15", true), ("13", false)] {
        let ks = make_keys(&dir.path().join(format!("k{alg}")), "tld", alg, false);
        let now = quorumsign::hsm::soft::now_u32().to_string();
        let run = |n: u32| {
            let out = dir.path().join(format!("{alg}-{n}.signed"));
            sign_ok("tld", p(&input), p(&out), &ks, &["--now", &now]);
            std::fs::read_to_string(out).unwrap()
        };
        let (a, b) = (run(1), run(2));
        if deterministic {
            assert_eq!(a, b);
        } else {
            let strip = |s: &str| -> Vec<String> {
                s.lines()
                    .map(|l| {
                        if l.contains("\tRRSIG\t") {
                            l.rsplit_once(' ').unwrap().0.to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect()
            };
            assert_ne!(a, b, "ECDSA signatures are randomised");
            assert_eq!(strip(&a), strip(&b));
        }
    }
}

#[test]
fn bind_signs_with_our_keys_and_we_accept_its_nsec3_output() {
    let dir = tempfile::tempdir().unwrap();
    let kd = dir.path().join("keys");
    make_keys(&kd, "example", "13", false);
    let out = dir.path().join("bind.signed");
    let (code, o, e) = tool(
        "dnssec-signzone",
        &[
            "-x",
            "-N",
            "keep",
            "-S",
            "-d",
            p(dir.path()),
            "-K",
            p(&kd),
            "-3",
            "-",
            "-H",
            "0",
            "-A",
            "-o",
            "example.",
            "-f",
            p(&out),
            p(&example_zone()),
        ],
    );
    assert_eq!(code, 0, "dnssec-signzone failed with our keys:\n{o}\n{e}");
    let (code, o, e) = qs(&["verify", "--zone", "example", p(&out)]);
    assert_eq!(code, 0, "we reject dnssec-signzone's output:\n{o}\n{e}");
}
