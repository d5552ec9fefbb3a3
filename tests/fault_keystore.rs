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

/// A soft P-256 key whose batches come back damaged: one signature altered, or one missing.
struct BadBatches {
    inner: quorumsign::hsm::soft::SoftKey,
    drop_one: bool,
}

impl quorumsign::hsm::SigningKey for BadBatches {
    fn dnskey(&self) -> &quorumsign::keys::DnsKey {
        self.inner.dnskey()
    }
    fn handle(&self) -> &str {
        "bad-batches"
    }
    fn private_scalar(&self) -> Option<Vec<u8>> {
        self.inner.private_scalar()
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, quorumsign::hsm::HsmError> {
        self.inner.sign(data)
    }
    fn sign_batch(&self, items: &[&[u8]]) -> Result<Vec<Vec<u8>>, quorumsign::hsm::HsmError> {
        let mut sigs = self.inner.sign_batch(items)?;
        if self.drop_one {
            sigs.pop();
        } else if let Some(s) = sigs.get_mut(items.len() / 2) {
            s[40] ^= 0x01;
        }
        Ok(sigs)
    }
}

#[test]
fn a_damaged_or_short_batch_stops_the_run() {
    use quorumsign::hsm::SigningKey;
    use quorumsign::hsm::soft::SoftKey;
    use quorumsign::keys::Algorithm;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let input = generated_zone(dir.path(), "tld", "tld", 3000);
    let origin = quorumsign::zone::Name::parse(b"tld.", None).unwrap();
    let opts = quorumsign::zone::ParseOptions {
        origin,
        limits: Default::default(),
        keep_dnssec: false,
    };
    let so = quorumsign::signer::SignOptions::new(quorumsign::hsm::soft::now_u32());
    for (drop_one, expect) in [
        (false, "does not verify against its public key"),
        (true, "signatures returned for"),
    ] {
        let (ksk, _) = SoftKey::generate(Algorithm::EcdsaP256Sha256, true).unwrap();
        let (zsk, _) = SoftKey::generate(Algorithm::EcdsaP256Sha256, false).unwrap();
        let bad = BadBatches {
            inner: zsk,
            drop_one,
        };
        let keys: Vec<Arc<dyn SigningKey>> = vec![Arc::new(ksk), Arc::new(bad)];
        let (zone, _) = quorumsign::zone::Zone::load(&input, &opts).unwrap();
        let err = quorumsign::signer::sign_zone(zone, &keys, &so, &Default::default(), &|_, _| {})
            .err()
            .expect("a damaged batch must stop the run");
        let msg = err.to_string();
        assert!(msg.contains(expect) && msg.contains("bad-batches"), "{msg}");
    }
    // Undamaged batches of the same kind of keys sign the whole zone.
    let (ksk, _) = SoftKey::generate(Algorithm::EcdsaP256Sha256, true).unwrap();
    let (zsk, _) = SoftKey::generate(Algorithm::EcdsaP256Sha256, false).unwrap();
    let keys: Vec<Arc<dyn SigningKey>> = vec![Arc::new(ksk), Arc::new(zsk)];
    let (zone, _) = quorumsign::zone::Zone::load(&input, &opts).unwrap();
    let signed =
        quorumsign::signer::sign_zone(zone, &keys, &so, &Default::default(), &|_, _| {}).unwrap();
    assert!(signed.stats.signed > 3000, "{:?}", signed.stats);
}
