//! The signer's publish gate: a signed zone is validated in full (structure, coverage,
//! chains) before anything is written; a broken one is refused.

mod common;

use common::*;
use quorumsign::signer::{Denial, Nsec3Params, SignOptions, SignatureCache, sign_zone};
use quorumsign::zone::{Name, ParseOptions, Zone, rtype};

fn signed(denial: Denial) -> (tempfile::TempDir, quorumsign::signer::SignedZone) {
    let dir = tempfile::tempdir().unwrap();
    let ks = make_keys(dir.path(), "example", "13", false);
    let origin = Name::parse(b"example.", None).unwrap();
    let keys = quorumsign::hsm::open(&ks).unwrap().load(&origin).unwrap();
    let opts = ParseOptions {
        origin: origin.clone(),
        limits: Default::default(),
        keep_dnssec: false,
    };
    let (zone, _) = Zone::load(&example_zone(), &opts).unwrap();
    let mut so = SignOptions::new(quorumsign::hsm::soft::now_u32());
    so.denial = denial;
    let s = sign_zone(zone, &keys, &so, &SignatureCache::default(), &|_, _| {}).unwrap();
    (dir, s)
}

#[test]
fn a_sound_zone_passes_and_a_broken_chain_is_caught() {
    let now = quorumsign::hsm::soft::now_u32();
    let (_d, mut s) = signed(Denial::Nsec);
    let r = quorumsign::validate::verify_signed(&s, now);
    assert!(r.valid, "{:?}", r.failures);
    // Plant a bug: one name loses its NSEC record.
    let node = s
        .zone
        .nodes
        .iter_mut()
        .find(|n| n.name.to_text() == "mail.example.")
        .unwrap();
    node.rrsets.retain(|r| r.rtype != rtype::NSEC);
    let r = quorumsign::validate::verify_signed(&s, now);
    assert!(!r.valid);
    assert!(
        r.failures
            .iter()
            .any(|f| f.owner == "mail.example." && f.message.contains("no NSEC record")),
        "{:?}",
        r.failures
    );
}

#[test]
fn nsec3_chain_and_unsigned_rrsets_are_checked() {
    let now = quorumsign::hsm::soft::now_u32();
    let (_d, mut s) = signed(Denial::Nsec3(Nsec3Params {
        iterations: 0,
        salt: Vec::new(),
        opt_out: true,
    }));
    assert!(quorumsign::validate::verify_signed(&s, now).valid);
    // An NSEC3 record goes missing, and an RRset loses its signature.
    s.nsec3.remove(1);
    let www = s
        .zone
        .nodes
        .iter_mut()
        .find(|n| n.name.to_text() == "www.example.")
        .unwrap();
    www.sigs.clear();
    let r = quorumsign::validate::verify_signed(&s, now);
    assert!(!r.valid);
    assert!(
        r.failures
            .iter()
            .any(|f| f.message.contains("next hashed owner")),
        "{:?}",
        r.failures
    );
    assert!(
        r.failures
            .iter()
            .any(|f| f.owner == "www.example." && f.message.contains("not signed")),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_check_through_the_private_scalars_finds_what_the_public_keys_find() {
    use quorumsign::keys::ecdsa_check::ScalarVerifier;
    use quorumsign::validate::{VerifyOptions, verify_zone};
    use std::sync::Arc;
    let now = quorumsign::hsm::soft::now_u32();
    let dir = tempfile::tempdir().unwrap();
    let ks = make_keys(dir.path(), "example", "13", false);
    let origin = Name::parse(b"example.", None).unwrap();
    let keys = quorumsign::hsm::open(&ks).unwrap().load(&origin).unwrap();
    let private: Vec<Arc<ScalarVerifier>> = keys
        .iter()
        .map(|k| {
            let d = k.dnskey();
            let scalar = k.private_scalar().expect("a soft key holds its scalar");
            Arc::new(ScalarVerifier::new(d.algorithm, &d.public_key, &scalar).unwrap())
        })
        .collect();
    let (_d, s) = signed(Denial::Nsec);
    let mut zone = s.zone;
    let by_scalar = VerifyOptions {
        now,
        private_keys: private,
        ..Default::default()
    };
    let by_public = VerifyOptions {
        now,
        ..Default::default()
    };
    for o in [&by_scalar, &by_public] {
        let r = verify_zone(&zone, o);
        assert!(r.valid, "{:?}", r.failures);
        assert!(r.rrsigs_checked > 10);
    }
    // One signature byte flipped: both ways name the RRset.
    let www = zone
        .nodes
        .iter_mut()
        .find(|n| n.name.to_text() == "www.example.")
        .unwrap();
    let (ttl, sig) = www.sigs[0].clone();
    let mut bad = sig.to_vec();
    *bad.last_mut().unwrap() ^= 1;
    www.sigs[0] = (ttl, bad.into());
    for o in [&by_scalar, &by_public] {
        let r = verify_zone(&zone, o);
        assert!(!r.valid);
        assert!(
            r.failures
                .iter()
                .any(|f| f.owner == "www.example." && f.message.contains("does not verify")),
            "{:?}",
            r.failures
        );
    }
}
