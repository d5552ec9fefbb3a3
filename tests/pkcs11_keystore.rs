//! The PKCS#11 keystore against SoftHSM2: generation, loading, signing for every algorithm,
//! PIN handling and concurrent signing. Skipped (with a message) when SoftHSM2 is missing.
//!
//! Everything runs in one test function: the module reads `SOFTHSM2_CONF` once, when it is
//! initialized, and stays initialized for the whole process.

mod common;

use std::path::Path;
use std::process::Command;

use quorumsign::hsm::{self, Keystore};
use quorumsign::keys::Algorithm;
use quorumsign::zone::Name;

use common::{init_softhsm_token, softhsm_conf};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn generate_load_sign(store: &dyn Keystore, zone: &Name) {
    let algs = [
        Algorithm::EcdsaP256Sha256,
        Algorithm::EcdsaP384Sha384,
        Algorithm::Ed25519,
        Algorithm::RsaSha256,
    ];
    let mut made = Vec::new();
    for alg in algs {
        for ksk in [true, false] {
            let k = store
                .generate(zone, alg, ksk)
                .unwrap_or_else(|e| panic!("generate {alg:?}: {e}"));
            assert_eq!(k.dnskey().is_sep(), ksk);
            assert!(
                k.handle().starts_with("pkcs11:token=t;object=K"),
                "{}",
                k.handle()
            );
            made.push((k.handle().to_string(), k.dnskey().clone()));
        }
    }
    let keys = store.load(zone).expect("load");
    assert_eq!(keys.len(), made.len());
    for (handle, dnskey) in &made {
        let k = keys
            .iter()
            .find(|k| k.handle() == handle)
            .unwrap_or_else(|| panic!("{handle} not loaded"));
        assert_eq!(
            k.dnskey(),
            dnskey,
            "flags and public key survive the round trip"
        );
        let data = b"the full RRSIG input".repeat(10);
        let sig = k.sign(&data).expect("sign");
        assert!(
            dnskey.verifier().unwrap().verify(&data, &sig),
            "{handle}: signature does not verify"
        );
    }
    let other = Name::parse(b"other.", None).unwrap();
    assert!(store.load(&other).unwrap().is_empty(), "keys are per zone");
}

fn concurrent_signing(store: &dyn Keystore, zone: &Name) {
    let keys = store.load(zone).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let keys = &keys;
            s.spawn(move || {
                for i in 0..25u8 {
                    let k = &keys[(t as usize + i as usize) % keys.len()];
                    let data = [t, i, 42];
                    let sig = k.sign(&data).expect("sign");
                    assert!(k.dnskey().verifier().unwrap().verify(&data, &sig));
                }
            });
        }
    });
}

fn errors_are_clear(base: &str, bad_pin: &Path) {
    let e = hsm::open(&format!(
        "{base}?module-path={MODULE}&pin-source=file:{}",
        bad_pin.display()
    ))
    .err()
    .expect("wrong PIN fails");
    let msg = e.to_string();
    assert!(msg.contains("wrong PIN") && msg.contains("\"t\""), "{msg}");
    let e = hsm::open(&format!(
        "pkcs11:token=missing?module-path={MODULE}&pin-value={}",
        common::USER_PIN
    ))
    .err()
    .expect("no such token");
    let msg = e.to_string();
    assert!(
        msg.contains("\"missing\"") && msg.contains("\"t\""),
        "lists the labels found: {msg}"
    );
    assert!(!msg.contains(common::USER_PIN), "no PIN in messages: {msg}");
    let e = hsm::open("pkcs11:token=t?module-path=/nonexistent/module.so&pin-value=x")
        .err()
        .expect("no module");
    assert!(e.to_string().contains("cannot load PKCS#11 module"), "{e}");
}

#[test]
fn softhsm_keystore() {
    if !Path::new(MODULE).exists()
        || Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_err()
    {
        panic!("SoftHSM2 is not installed: run the tests through `bash tests/run.sh`");
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm_conf(dir.path());
    // SAFETY: the only test in this binary; no other thread reads the environment yet.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    init_softhsm_token(&conf, "t");
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{}\n", common::USER_PIN)).unwrap();
    let bad_pin = dir.path().join("badpin");
    std::fs::write(&bad_pin, format!("{}\n", common::WRONG_PIN)).unwrap();

    // First: once this process has logged in to the token, every later login is accepted
    // (PKCS#11 login state is per application), so a wrong PIN shows only before that.
    errors_are_clear("pkcs11:token=t", &bad_pin);

    let zone = Name::parse(b"example.", None).unwrap();
    let uri = format!(
        "pkcs11:token=t?module-path={MODULE}&pin-source=file:{}",
        pin.display()
    );
    let store = hsm::open(&uri).expect("open");
    assert_eq!(store.describe(), uri);
    generate_load_sign(store.as_ref(), &zone);
    concurrent_signing(store.as_ref(), &zone);

    let with_value = hsm::open(&format!(
        "pkcs11:token=t?module-path={MODULE}&pin-value={}",
        common::USER_PIN
    ))
    .expect("pin-value");
    assert!(
        !with_value.describe().contains(common::USER_PIN),
        "{}",
        with_value.describe()
    );
    let first = store.load(&zone).unwrap()[0].handle().to_string();
    let label = first
        .split("object=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let only = hsm::open(&format!(
        "pkcs11:token=t;object={label}?module-path={MODULE}&pin-value={}",
        common::USER_PIN
    ))
    .unwrap();
    let keys = only.load(&zone).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].handle(),
        first,
        "a key's handle opens just that key"
    );
}
