//! The signer's publish gate: a signed zone is validated in full (structure, coverage,
//! chains) before anything is written; a broken one is refused.

mod common;

use common::*;
use quorumsign::signer::{Denial, Nsec3Params, SignOptions, SignatureCache, sign_zone};
use quorumsign::zone::{Name, ParseOptions, Zone, rtype};

type Keys = Vec<std::sync::Arc<dyn quorumsign::hsm::SigningKey>>;

/// The example zone signed with new keys: (their directory, the keys, the signed zone).
fn signed(denial: Denial) -> (tempfile::TempDir, Keys, quorumsign::signer::SignedZone) {
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
    (dir, keys, s)
}

/// The node of `name` (which must exist).
fn node_mut<'a>(zone: &'a mut Zone, name: &str) -> &'a mut quorumsign::zone::Node {
    zone.nodes
        .iter_mut()
        .find(|n| n.name.to_text() == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn a_sound_zone_passes_and_a_broken_chain_is_caught() {
    let now = quorumsign::hsm::soft::now_u32();
    let (_d, _, mut s) = signed(Denial::Nsec);
    let r = s.verify(now);
    assert!(r.valid, "{:?}", r.failures);
    // Plant a bug: one name loses its NSEC record.
    let node = node_mut(&mut s.zone, "mail.example.");
    node.rrsets.retain(|r| r.rtype != rtype::NSEC);
    let r = s.verify(now);
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
    let (_d, _, mut s) = signed(Denial::Nsec3(Nsec3Params {
        iterations: 0,
        salt: Vec::new(),
        opt_out: true,
    }));
    assert!(s.verify(now).valid);
    // An NSEC3 record goes missing, and an RRset loses its signature.
    s.nsec3.remove(1);
    let www = node_mut(&mut s.zone, "www.example.");
    www.sigs.clear();
    let r = s.verify(now);
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
    // The keys that signed the zone: their scalars check its signatures.
    let (_d, keys, s) = signed(Denial::Nsec);
    let private: Vec<Arc<ScalarVerifier>> = keys
        .iter()
        .map(|k| {
            let v = quorumsign::hsm::scalar_verifier(&**k).expect("a soft key holds its scalar");
            Arc::new(v.unwrap())
        })
        .collect();
    let mut zone = s.zone;
    let dnskeys = &zone.apex().rrset(rtype::DNSKEY).unwrap().rdatas;
    for v in &private {
        let (alg, public_key) = v.key();
        assert!(
            dnskeys.iter().any(|d| d[3] == alg && &d[4..] == public_key),
            "each scalar is the private key of a DNSKEY of the zone"
        );
    }
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
    let www = node_mut(&mut zone, "www.example.");
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
