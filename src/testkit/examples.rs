//! The example zone (`examples/example.zone`) signed with fresh keys, as the unit tests of
//! several modules start from it.

use std::sync::Arc;

use crate::hsm::SigningKey;
use crate::hsm::soft::SoftKey;
use crate::keys::Algorithm;
use crate::replica::state::{ZoneState, hash_step, rrset_digest};
use crate::signer::{Denial, SignOptions, SignatureCache, sign_zone};
use crate::zone::{Limits, Name, ParseOptions, Zone};

/// The example zone signed with fresh keys as a replicated zone state.
pub fn signed_example(denial: Denial) -> (ZoneState, Name, u32) {
    let (z, origin, t, _, _) = signed_example_with_keys(denial);
    (z, origin, t)
}

/// The example zone's text, as `signed_example` signs it.
pub fn example_text() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example.zone"),
    )
    .unwrap()
}

/// `text` signed with `keys` as `signed_example` signs, as the content of a version.
pub fn signed_content(
    text: &str,
    origin: &Name,
    keys: &[Arc<dyn SigningKey>],
    opts: &SignOptions,
) -> crate::ingest::held::Content {
    let popts = ParseOptions {
        origin: origin.clone(),
        limits: Limits::default(),
        keep_dnssec: false,
    };
    let parsed = crate::zone::parse::parse_file_bytes(
        text.as_bytes(),
        std::path::Path::new("example.zone"),
        &popts,
    )
    .unwrap();
    let (zone, _) = Zone::build(parsed, origin, "example.zone", &popts.limits).unwrap();
    let signed = sign_zone(zone, keys, opts, &SignatureCache::default(), &|_, _| {}).unwrap();
    signed.into_entries().into_iter().collect()
}

/// `signed_example`, with the keys and the options it signed with.
#[allow(clippy::type_complexity)]
pub fn signed_example_with_keys(
    denial: Denial,
) -> (ZoneState, Name, u32, Vec<Arc<dyn SigningKey>>, SignOptions) {
    let origin = Name::parse(b"example.", None).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example.zone");
    let popts = ParseOptions {
        origin: origin.clone(),
        limits: Limits::default(),
        keep_dnssec: false,
    };
    let (zone, _) = Zone::load(&path, &popts).unwrap();
    let keys: Vec<Arc<dyn SigningKey>> = [true, false]
        .iter()
        .map(|ksk| {
            Arc::new(
                SoftKey::generate(Algorithm::EcdsaP256Sha256, *ksk)
                    .unwrap()
                    .0,
            ) as Arc<dyn SigningKey>
        })
        .collect();
    let t = crate::runtime::wall() as u32;
    let mut opts = SignOptions::new(t);
    opts.denial = denial;
    let signed = sign_zone(zone, &keys, &opts, &SignatureCache::default(), &|_, _| {}).unwrap();
    let mut z = ZoneState::default();
    for ((o, ty), v) in signed.into_entries() {
        hash_step(&mut z.hash, &rrset_digest(&o.0, ty, &v), false);
        z.content.insert((o, ty), v);
    }
    (z, origin, t, keys, opts)
}
