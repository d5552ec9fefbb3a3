//! A keystore that returns a wrong signature for 1 in N requests is caught every time,
//! the run fails naming the key, and nothing is written (shared/seeds/002).

mod common;

use common::*;

#[test]
fn every_corrupted_signature_is_caught_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let keydir = dir.path().join("keys");
    make_keys(&keydir, "tld", "13", false);
    let input = generated_zone(dir.path(), "tld", "tld", 2000);
    let out = dir.path().join("signed");
    for every in [1u32, 2, 7, 97, 500] {
        std::fs::write(&out, "previous version\n").unwrap();
        let ks = format!("fault:every={every}:dir:{}", keydir.display());
        let (code, o, e) = qs(&[
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
        assert_ne!(
            code, 0,
            "a corrupted signature slipped through with every={every}:\n{o}\n{e}"
        );
        assert!(
            e.contains("does not verify against its public key"),
            "every={every}: {e}"
        );
        assert!(
            e.contains(keydir.to_str().unwrap()),
            "the error must name the key: {e}"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "previous version\n",
            "output was touched with every={every}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty(), "temporary files left behind");
    }
    // The same keystore with no fault signs fine: the check does not reject good signatures.
    let ks = format!("dir:{}", keydir.display());
    sign_ok("tld", p(&input), p(&out), &ks, &[]);
    let (code, o, _) = qs(&["verify", "--zone", "tld", p(&out)]);
    assert_eq!(code, 0, "{o}");
}

#[test]
fn two_keys_with_one_key_tag_are_refused() {
    use quorumsign::hsm::SigningKey;
    use quorumsign::hsm::soft::SoftKey;
    use quorumsign::keys::Algorithm;
    use std::collections::HashMap;
    use std::sync::Arc;
    // Key tags are 16 bits: among a few thousand keys two share a tag (birthday bound).
    let mut by_tag: HashMap<u16, SoftKey> = HashMap::new();
    let (a, b) = loop {
        let (k, _) = SoftKey::generate(Algorithm::EcdsaP256Sha256, true).unwrap();
        let tag = k.dnskey().key_tag();
        if let Some(first) = by_tag.remove(&tag) {
            break (first, k);
        }
        by_tag.insert(tag, k);
        assert!(by_tag.len() < 20_000, "no collision among 20000 keys");
    };
    assert_ne!(a.dnskey().id(), b.dnskey().id());
    let keys: Vec<Arc<dyn SigningKey>> = vec![Arc::new(a), Arc::new(b)];
    let origin = quorumsign::zone::Name::parse(b"example.", None).unwrap();
    let opts = quorumsign::zone::ParseOptions {
        origin: origin.clone(),
        limits: Default::default(),
        keep_dnssec: false,
    };
    let (zone, _) = quorumsign::zone::Zone::load(&example_zone(), &opts).unwrap();
    let so = quorumsign::signer::SignOptions::new(quorumsign::hsm::soft::now_u32());
    let err = quorumsign::signer::sign_zone(zone, &keys, &so, &Default::default(), &|_, _| {})
        .err()
        .expect("refused");
    assert!(err.to_string().contains("key tag collision"), "{err}");
}
