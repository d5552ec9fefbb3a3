//! Keystores: where private keys live and how signatures are made.
//!
//! # Usage
//! [`open`] takes a keystore URI:
//! - `dir:PATH` (or a bare path): the soft keystore, BIND key files in a directory;
//! - `pkcs11:token=…;object=…?module-path=…&pin-source=…` (RFC 7512): a PKCS#11 token;
//! - `fault:every=N:<uri>`: wraps another keystore and corrupts every N-th signature,
//!   to prove that nothing it produces slips through (tests and chaos runs).
//!
//! # Background
//! No keystore is trusted: the signer checks every signature it gets back against the
//! key's public half before using it (the .SE incident of 2022, shared/seeds/002).

pub mod fault;
pub mod pkcs11;
pub mod sealed;
pub mod soft;

use std::sync::Arc;

use crate::keys::{Algorithm, DnsKey};
use crate::zone::Name;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    #[error("keystore {store}: {msg}")]
    Store { store: String, msg: String },
    #[error("key {key}: signing failed: {msg}")]
    Sign { key: String, msg: String },
    #[error("bad keystore URI {0:?}: expected dir:PATH, pkcs11:… or fault:every=N:URI")]
    BadUri(String),
}

/// One private key: its DNSKEY and a way to sign with it.
pub trait SigningKey: Send + Sync {
    fn dnskey(&self) -> &DnsKey;
    /// Where the private key lives (a file path or a PKCS#11 URI), for messages and identity.
    fn handle(&self) -> &str;
    /// Signs `data` (the full RRSIG input; the key hashes it as its algorithm says).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Signs each of `items`: exactly one signature per item, in order. Keystores that can
    /// share work across signatures (soft P-256 keys) override it; the default signs them
    /// one by one. The signer checks every signature it gets, so an override need not.
    fn sign_batch(&self, items: &[&[u8]]) -> Result<Vec<Vec<u8>>, HsmError> {
        sign_each(self, items)
    }
    /// The ECDSA private scalar, for keystores that hold it in this process, so that the
    /// signer can check each signature at the cost of one generator multiplication
    /// ([`crate::keys::ecdsa_check`]). `None` (the default) means full public-key checks.
    fn private_scalar(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Signs `items` one by one with [`SigningKey::sign`]: the default batch, and the fallback
/// of keys that override [`SigningKey::sign_batch`] for some of their requests.
pub fn sign_each<K: SigningKey + ?Sized>(
    key: &K,
    items: &[&[u8]],
) -> Result<Vec<Vec<u8>>, HsmError> {
    items.iter().map(|d| key.sign(d)).collect()
}

/// A checker through `k`'s private scalar when its keystore holds one (see
/// [`SigningKey::private_scalar`]); an error when that scalar is not the DNSKEY's key.
pub fn scalar_verifier(
    k: &dyn SigningKey,
) -> Option<Result<crate::keys::ecdsa_check::ScalarVerifier, String>> {
    let scalar = k.private_scalar()?;
    let d = k.dnskey();
    Some(crate::keys::ecdsa_check::ScalarVerifier::new(
        d.algorithm,
        &d.public_key,
        &scalar,
    ))
}

pub trait Keystore: Send + Sync {
    fn describe(&self) -> String;
    /// All usable keys of `zone`.
    fn load(&self, zone: &Name) -> Result<Vec<Arc<dyn SigningKey>>, HsmError>;
    fn generate(
        &self,
        zone: &Name,
        alg: Algorithm,
        ksk: bool,
    ) -> Result<Arc<dyn SigningKey>, HsmError>;
}

pub fn open(uri: &str) -> Result<Box<dyn Keystore>, HsmError> {
    if let Some(rest) = uri.strip_prefix("fault:") {
        let (every, inner) = rest
            .split_once(':')
            .ok_or_else(|| HsmError::BadUri(uri.into()))?;
        let every: u64 = every
            .strip_prefix("every=")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| HsmError::BadUri(uri.into()))?;
        return Ok(Box::new(fault::FaultKeystore::new(open(inner)?, every)));
    }
    if uri.starts_with("pkcs11:") {
        return Ok(Box::new(pkcs11::Pkcs11Keystore::open(uri)?));
    }
    let path = uri.strip_prefix("dir:").unwrap_or(uri);
    if path.is_empty() {
        return Err(HsmError::BadUri(uri.into()));
    }
    Ok(Box::new(soft::SoftKeystore::new(path.into())))
}

/// Refuses two keys with one key tag (validators may try only one of them).
pub fn check_key_tags(keys: &[Arc<dyn SigningKey>]) -> Result<(), String> {
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            let (ka, kb) = (a.dnskey(), b.dnskey());
            if ka.id() != kb.id() && ka.key_tag() == kb.key_tag() && ka.algorithm == kb.algorithm {
                return Err(format!(
                    "key tag collision: {} and {} both have tag {} (algorithm {}); remove or regenerate one",
                    a.handle(),
                    b.handle(),
                    ka.key_tag(),
                    ka.algorithm
                ));
            }
        }
    }
    Ok(())
}
