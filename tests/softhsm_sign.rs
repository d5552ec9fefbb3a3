//! Signing with keys in SoftHSM2 over PKCS#11, through the real binary: the output is
//! accepted by quorumsign verify, dnssec-verify, ldns-verify-zone and kzonecheck for NSEC,
//! NSEC3 and NSEC3 opt-out, for algorithms 13 and 15; a wrong PIN is a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

struct Hsm {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    conf: PathBuf,
}

impl Hsm {
    fn new(label: &str) -> Hsm {
        let dir = tempfile::tempdir().unwrap();
        let conf = softhsm_conf(dir.path());
        init_softhsm_token(&conf, label);
        std::fs::write(dir.path().join("pin"), format!("{}\n", common::USER_PIN)).unwrap();
        std::fs::write(
            dir.path().join("badpin"),
            format!("{}\n", common::WRONG_PIN),
        )
        .unwrap();
        Hsm {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            conf,
        }
    }

    fn uri(&self, label: &str, pin_file: &str) -> String {
        format!(
            "pkcs11:token={label}?module-path={MODULE}&pin-source={}",
            self.dir.join(pin_file).display()
        )
    }

    /// Runs quorumsign with this token's SOFTHSM2_CONF.
    fn qs(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(qs_bin())
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        split(out)
    }

    fn qs_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.qs(args);
        assert_eq!(code, 0, "quorumsign {args:?}:\n{out}\n{err}");
        out
    }
}

impl Hsm {
    /// A KSK and a ZSK of algorithm `alg` for zone tld., generated in the token.
    fn generate_ksk_and_zsk(&self, uri: &str, alg: &str) {
        for role in ["ksk", "zsk"] {
            self.qs_ok(&[
                "keys",
                "generate",
                "--zone",
                "tld",
                "--keystore",
                uri,
                "--algorithm",
                alg,
                "--role",
                role,
            ]);
        }
    }
}

fn sign_with_hsm(alg: &str) {
    let hsm = Hsm::new("qs");
    let uri = hsm.uri("qs", "pin");
    hsm.generate_ksk_and_zsk(&uri, alg);
    let listed = hsm.qs_ok(&["keys", "list", "--zone", "tld", "--keystore", &uri]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("KSK") && listed.contains("ZSK") && listed.contains("pkcs11:token=qs"),
        "{listed}"
    );
    assert!(
        !listed.contains(common::USER_PIN),
        "the PIN must never be printed: {listed}"
    );
    let input = generated_zone(&hsm.dir, "tld", "tld", 800);
    for (name, extra) in [
        ("nsec", &["--denial", "nsec"][..]),
        ("nsec3", &["--denial", "nsec3"][..]),
        ("optout", &["--denial", "nsec3", "--opt-out"][..]),
    ] {
        let out = hsm.dir.join(format!("{name}.signed"));
        let mut args = vec![
            "sign",
            "--zone",
            "tld",
            "--input",
            p(&input),
            "--output",
            p(&out),
            "--keystore",
            &uri,
        ];
        args.extend_from_slice(extra);
        hsm.qs_ok(&args);
        assert_all_validators_accept("tld", &out);
    }
}

#[test]
fn ecdsa_p256_keys_in_softhsm() {
    sign_with_hsm("13");
}

#[test]
fn ed25519_keys_in_softhsm() {
    sign_with_hsm("15");
}

#[test]
fn wrong_pin_is_a_clear_error_and_never_printed() {
    let hsm = Hsm::new("pins");
    let bad = hsm.uri("pins", "badpin");
    let (code, out, err) = hsm.qs(&[
        "keys",
        "generate",
        "--zone",
        "example",
        "--keystore",
        &bad,
        "--role",
        "ksk",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("wrong PIN") && err.contains("pins"), "{err}");
    assert!(
        !format!("{out}{err}").contains(common::WRONG_PIN),
        "PIN leaked: {err}"
    );
    let inline = format!(
        "pkcs11:token=pins?module-path={MODULE}&pin-value={}",
        common::WRONG_PIN
    );
    let (code, out, err) = hsm.qs(&["keys", "list", "--zone", "example", "--keystore", &inline]);
    assert_ne!(code, 0);
    assert!(err.contains("wrong PIN"), "{err}");
    assert!(
        !format!("{out}{err}").contains(common::WRONG_PIN),
        "PIN leaked: {err}"
    );
    assert!(Path::new(MODULE).exists());
}

/// In a zone of 4,096 names or more, the signatures of a P-256 key in the token are checked
/// through a table of the key's multiples instead of one public-key verification each: a
/// token that returns a wrong signature now and then is still caught every time, and the
/// good signatures still pass.
#[test]
fn corrupted_hsm_signatures_in_a_large_zone_are_caught() {
    let hsm = Hsm::new("big");
    let uri = hsm.uri("big", "pin");
    hsm.generate_ksk_and_zsk(&uri, "13");
    let input = generated_zone(&hsm.dir, "tld", "tld", 6000);
    let out = hsm.dir.join("big.signed");
    for every in [1u32, 997, 4999] {
        std::fs::write(&out, "previous version\n").unwrap();
        let ks = format!("fault:every={every}:{uri}");
        let (code, o, e) = hsm.qs(&[
            "sign",
            "--zone",
            "tld",
            "--input",
            p(&input),
            "--output",
            p(&out),
            "--keystore",
            &ks,
        ]);
        assert_ne!(code, 0, "every={every} slipped through:\n{o}\n{e}");
        assert!(
            e.contains("does not verify against its public key"),
            "every={every}: {e}"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "previous version\n",
            "output was touched with every={every}"
        );
    }
    hsm.qs_ok(&[
        "sign",
        "--zone",
        "tld",
        "--input",
        p(&input),
        "--output",
        p(&out),
        "--keystore",
        &uri,
    ]);
    let (code, o, e) = hsm.qs(&["verify", "--zone", "tld", p(&out)]);
    assert_eq!(code, 0, "{o}\n{e}");
}
