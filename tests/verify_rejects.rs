//! `quorumsign verify` rejects broken zones with the right message and exit code 1, and
//! unusable input with exit code 2.

mod common;

use common::*;
use quorumsign::keys::{RrsigHeader, rrsig_labels, signed_data};
use quorumsign::zone::{Name, rtype};

struct Signed {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    ks: String,
    text: String,
}

fn signed_example(denial: &str) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let ks = make_keys(&dir.path().join("keys"), "example", "13", false);
    let out = dir.path().join("signed");
    sign_ok(
        "example",
        p(&example_zone()),
        p(&out),
        &ks,
        &["--denial", denial],
    );
    let text = std::fs::read_to_string(&out).unwrap();
    Signed {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        ks,
        text,
    }
}

/// Writes `text`, verifies it, and returns (exit code, stdout).
fn verify_text(s: &Signed, text: &str, extra: &[&str]) -> (i32, String) {
    let path = s.dir.join("mutated");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["verify", "--zone", "example", p(&path)];
    args.extend_from_slice(extra);
    let (code, out, err) = qs(&args);
    (code, format!("{out}{err}"))
}

fn is_rrsig_for(line: &str, owner: &str, covered: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    f.len() > 4 && f[0] == owner && f[3] == "RRSIG" && f[4] == covered
}

#[test]
fn intact_zone_is_valid_and_json_says_so() {
    let s = signed_example("nsec3");
    let (code, out) = verify_text(&s, &s.text, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["denial"], "NSEC3");
    assert!(v["rrsigs_checked"].as_u64().unwrap() > 20);
}

#[test]
fn flipped_byte_in_one_rrsig() {
    let s = signed_example("nsec3");
    let mut done = false;
    let text: String = s
        .text
        .lines()
        .map(|l| {
            if !done && is_rrsig_for(l, "mail.example.", "A") {
                done = true;
                // Change one character of the base64 signature (last field).
                let mut b = l.as_bytes().to_vec();
                let i = b.len() - 10;
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).unwrap()
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert!(done);
    let (code, out) = verify_text(&s, &text, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("mail.example. A: RRSIG") && out.contains("does not verify"),
        "{out}"
    );
}

#[test]
fn expired_signatures() {
    let s = signed_example("nsec");
    let later = (quorumsign::hsm::soft::now_u32() + 40 * 86_400).to_string();
    let (code, out) = verify_text(&s, &s.text, &["--now", &later]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("has expired"), "{out}");
    let earlier = (quorumsign::hsm::soft::now_u32() - 2 * 86_400).to_string();
    let (code, out) = verify_text(&s, &s.text, &["--now", &earlier]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not yet valid"), "{out}");
}

#[test]
fn missing_nsec3_record() {
    let s = signed_example("nsec3");
    // Remove the NSEC3 of one name (and its RRSIG): the chain no longer closes.
    let victim = s
        .text
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some("NSEC3"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let text: String = s
        .text
        .lines()
        .filter(|l| !l.starts_with(&victim))
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, out) = verify_text(&s, &text, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no NSEC3 record") && out.contains("next hashed owner"),
        "{out}"
    );
}

#[test]
fn unsigned_rrset() {
    let s = signed_example("nsec");
    let text: String = s
        .text
        .lines()
        .filter(|l| !is_rrsig_for(l, "example.", "MX"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, out) = verify_text(&s, &text, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("example. MX: RRset is not signed"), "{out}");
}

#[test]
fn dnskey_set_not_signed_by_ksk() {
    let s = signed_example("nsec");
    // Replace the KSK's signature over the DNSKEY RRset with one made by the ZSK.
    let origin = Name::parse(b"example.", None).unwrap();
    let keys = quorumsign::hsm::open(&s.ks).unwrap().load(&origin).unwrap();
    let zsk = keys.iter().find(|k| !k.dnskey().is_sep()).unwrap();
    let mut rdatas: Vec<Box<[u8]>> = keys
        .iter()
        .map(|k| k.dnskey().rdata().into_boxed_slice())
        .collect();
    rdatas.sort();
    let now = quorumsign::hsm::soft::now_u32();
    let h = RrsigHeader {
        type_covered: rtype::DNSKEY,
        algorithm: 13,
        labels: rrsig_labels(&origin),
        original_ttl: 3600,
        expiration: now + 86_400,
        inception: now - 3600,
        key_tag: zsk.dnskey().key_tag(),
        signer: origin.clone(),
    };
    let mut data = Vec::new();
    let rdatas = quorumsign::zone::Rdatas::from(rdatas);
    signed_data(&h, &origin, rtype::DNSKEY, &rdatas, &mut data);
    let mut rd = Vec::new();
    h.write(&mut rd);
    rd.extend(zsk.sign(&data).unwrap());
    let mut line = String::new();
    quorumsign::zone::write::push_record(&mut line, &origin, rtype::RRSIG, 3600, &rd);
    let mut text: String = s
        .text
        .lines()
        .filter(|l| !is_rrsig_for(l, "example.", "DNSKEY"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&line);
    let (code, out) = verify_text(&s, &text, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not signed by a key-signing key"), "{out}");
}

#[test]
fn trust_anchor_must_match() {
    let s = signed_example("nsec3");
    let ds = qs_ok(&["ds", "--zone", "example", "--keystore", &s.ks]);
    let ta = s.dir.join("ta");
    std::fs::write(&ta, &ds).unwrap();
    let (code, out) = verify_text(&s, &s.text, &["--trust-anchor", p(&ta)]);
    assert_eq!(code, 0, "{out}");
    // A DS for a key that is not in the zone.
    let other = tempfile::tempdir().unwrap();
    let ks2 = make_keys(other.path(), "example", "13", true);
    std::fs::write(&ta, qs_ok(&["ds", "--zone", "example", "--keystore", &ks2])).unwrap();
    let (code, out) = verify_text(&s, &s.text, &["--trust-anchor", p(&ta)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("trust anchor"), "{out}");
}

#[test]
fn unusable_input_exits_2() {
    let s = signed_example("nsec");
    let (code, out) = verify_text(&s, "example. 3600 IN A 1.2.3.4.5\n", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("mutated:1:"), "{out}");
    let (code, _, err) = qs(&["verify", "--zone", "example", "/nonexistent/zone"]);
    assert_eq!(code, 2, "{err}");
}

/// A zone large enough that its P-256 keys' signatures are checked through tables of the
/// keys' multiples: intact it is valid; one flipped signature among thousands is named.
#[test]
fn flipped_byte_in_a_large_zone() {
    let dir = tempfile::tempdir().unwrap();
    let ks = make_keys(&dir.path().join("keys"), "tld", "13", false);
    let input = generated_zone(dir.path(), "tld", "tld", 6000);
    let out = dir.path().join("signed");
    sign_ok("tld", p(&input), p(&out), &ks, &["--denial", "nsec"]);
    let (code, text, err) = qs(&["verify", "--zone", "tld", p(&out)]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("0 failure(s)"), "{text}");
    let signed = std::fs::read_to_string(&out).unwrap();
    // The 1000th RRSIG over a DS record.
    let mut seen = 0;
    let mut owner = String::new();
    let mutated: String = signed
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 4 && f[3] == "RRSIG" && f[4] == "DS" {
                seen += 1;
                if seen == 1000 {
                    owner = f[0].to_string();
                    let mut b = l.as_bytes().to_vec();
                    let i = b.len() - 20;
                    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                    return String::from_utf8(b).unwrap() + "\n";
                }
            }
            format!("{l}\n")
        })
        .collect();
    assert!(!owner.is_empty(), "only {seen} DS signatures");
    let path = dir.path().join("mutated");
    std::fs::write(&path, mutated).unwrap();
    let (code, text, err) = qs(&["verify", "--zone", "tld", p(&path)]);
    assert_eq!(code, 1, "{text}{err}");
    assert!(
        text.contains(&format!("{owner} DS: RRSIG")) && text.contains("does not verify"),
        "{text}"
    );
    assert!(text.contains("1 failure(s)"), "{text}");
}
