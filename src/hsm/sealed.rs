//! The embedded keystore of a cluster: private keys sealed with the cluster passphrase and
//! kept in the replicated state, so every node holds the same keys (labs and the demo).
//!
//! Sealing: PBKDF2-HMAC-SHA256 (600 000 rounds, 16-byte random salt) derives an AES-256-GCM
//! key; the sealed blob is `QSSEAL1 ‖ salt ‖ nonce ‖ ciphertext+tag` over the key's BIND
//! `.private` text. Derived keys are remembered per salt, so a node derives once per key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::soft::SoftKey;
use super::{HsmError, SigningKey};
use crate::keys::{Algorithm, DnsKey, keyfile};

const MAGIC: &[u8; 7] = b"QSSEAL1";
const ROUNDS: u32 = 600_000;

/// Seals and unseals private keys with one passphrase.
pub struct Sealer {
    passphrase: Vec<u8>,
    derived: Mutex<HashMap<[u8; 16], [u8; 32]>>,
}

fn err(msg: impl Into<String>) -> HsmError {
    HsmError::Store {
        store: "embedded".into(),
        msg: msg.into(),
    }
}

impl Sealer {
    pub fn new(passphrase: &[u8]) -> Result<Sealer, HsmError> {
        let p = passphrase.trim_ascii();
        if p.len() < 12 {
            return Err(err("the cluster passphrase must be at least 12 characters"));
        }
        Ok(Sealer {
            passphrase: p.to_vec(),
            derived: Mutex::new(HashMap::new()),
        })
    }

    pub fn from_file(path: &std::path::Path) -> Result<Sealer, HsmError> {
        let b = std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        Sealer::new(&b)
    }

    fn key(&self, salt: &[u8; 16]) -> LessSafeKey {
        let mut map = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        let k = *map.entry(*salt).or_insert_with(|| {
            let mut k = [0u8; 32];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                NonZeroU32::new(ROUNDS).expect("nonzero"),
                salt,
                &self.passphrase,
                &mut k,
            );
            k
        });
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).expect("32-byte key"))
    }

    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, HsmError> {
        let rng = SystemRandom::new();
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rng.fill(&mut salt).map_err(|_| err("no randomness"))?;
        rng.fill(&mut nonce).map_err(|_| err("no randomness"))?;
        let mut buf = plain.to_vec();
        self.key(&salt)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut buf,
            )
            .map_err(|_| err("sealing failed"))?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, HsmError> {
        if sealed.len() < 7 + 16 + 12 + 16 || &sealed[..7] != MAGIC {
            return Err(err("sealed key is malformed"));
        }
        let salt: [u8; 16] = sealed[7..23].try_into().expect("16 bytes");
        let nonce: [u8; 12] = sealed[23..35].try_into().expect("12 bytes");
        let mut buf = sealed[35..].to_vec();
        let plain = self
            .key(&salt)
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(MAGIC),
                &mut buf,
            )
            .map_err(|_| err("cannot unseal key: wrong cluster passphrase or damaged key"))?;
        Ok(plain.to_vec())
    }

    /// Makes a new key: returns it and its sealed `.private` text.
    pub fn generate(
        &self,
        alg: Algorithm,
        ksk: bool,
        handle: &str,
    ) -> Result<(Arc<dyn SigningKey>, Vec<u8>), HsmError> {
        let (key, fields) = SoftKey::generate(alg, ksk).map_err(err)?;
        let created = crate::zone::rdata::format_rrsig_time(super::soft::now_u32());
        let refs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let text = keyfile::format_private(alg.number(), alg.mnemonic(), &refs, &created);
        let sealed = self.seal(text.as_bytes())?;
        let key = self.open(key.dnskey().clone(), &sealed, handle)?;
        Ok((key, sealed))
    }

    /// The signing key sealed in `sealed` for `dnskey`.
    pub fn open(
        &self,
        dnskey: DnsKey,
        sealed: &[u8],
        handle: &str,
    ) -> Result<Arc<dyn SigningKey>, HsmError> {
        let text = self.unseal(sealed)?;
        let text = String::from_utf8(text).map_err(|_| err("sealed key is not text"))?;
        let fields = keyfile::parse_private(&text).map_err(err)?;
        let key = SoftKey::from_fields(dnskey, &fields, handle.into()).map_err(err)?;
        Ok(Arc::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_wrong_passphrase() {
        let s = Sealer::new(b"correct horse battery staple").unwrap();
        let (key, sealed) = s.generate(Algorithm::EcdsaP256Sha256, true, "k").unwrap();
        let again = s.open(key.dnskey().clone(), &sealed, "k").unwrap();
        assert_eq!(again.dnskey(), key.dnskey());
        let other = Sealer::new(b"another long passphrase").unwrap();
        let e = other
            .open(key.dnskey().clone(), &sealed, "k")
            .err()
            .unwrap();
        assert!(e.to_string().contains("wrong cluster passphrase"), "{e}");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(s.unseal(&bad).is_err());
        assert!(Sealer::new(b"short").is_err());
    }
}
