//! The soft keystore: BIND key files in a directory, private keys in process memory.

use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::{HsmError, Keystore, SigningKey};
use crate::keys::algorithm::{join_rsa_public_key, split_rsa_public_key, strip_zeros};
use crate::keys::ecdsa_sign::P256Signer;
use crate::keys::{Algorithm, DnsKey, FLAG_SEP, FLAG_ZONE, keyfile};
use crate::zone::Name;

/// The fields of a BIND `.private` file for a new key: (name, value) pairs.
pub type KeyFields = Vec<(&'static str, Vec<u8>)>;

enum Private {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private key held in memory.
pub struct SoftKey {
    dnskey: DnsKey,
    handle: String,
    private: Private,
    rng: SystemRandom,
}

impl SoftKey {
    pub fn generate(alg: Algorithm, ksk: bool) -> Result<(SoftKey, KeyFields), String> {
        let flags = FLAG_ZONE | if ksk { FLAG_SEP } else { 0 };
        let e = |_| "key generation failed".to_string();
        let (private, public_key, fields): (Private, Vec<u8>, KeyFields) = match alg {
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
                let salg = ecdsa_alg(alg);
                let kp = EcdsaKeyPair::generate(salg).map_err(e)?;
                let public = kp.public_key().as_ref()[1..].to_vec();
                let d = kp.private_key().as_be_bytes().map_err(e)?.as_ref().to_vec();
                (Private::Ecdsa(kp), public, vec![("PrivateKey", d)])
            }
            Algorithm::Ed25519 => {
                let kp = Ed25519KeyPair::generate().map_err(e)?;
                let public = kp.public_key().as_ref().to_vec();
                let seed = kp
                    .seed()
                    .map_err(e)?
                    .as_be_bytes()
                    .map_err(e)?
                    .as_ref()
                    .to_vec();
                (Private::Ed25519(kp), public, vec![("PrivateKey", seed)])
            }
            Algorithm::RsaSha256 => {
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(e)?;
                let der = kp.as_der().map_err(e)?;
                let c = rsa_components_from_pkcs8(der.as_ref())
                    .ok_or("cannot read generated RSA key")?;
                let public = join_rsa_public_key(&c[1], &c[0]);
                let names = [
                    "Modulus",
                    "PublicExponent",
                    "PrivateExponent",
                    "Prime1",
                    "Prime2",
                    "Exponent1",
                    "Exponent2",
                    "Coefficient",
                ];
                let fields = names.iter().zip(c).map(|(n, v)| (*n, v)).collect();
                (Private::Rsa(kp), public, fields)
            }
        };
        let dnskey = DnsKey {
            flags,
            algorithm: alg.number(),
            public_key,
        };
        Ok((
            SoftKey {
                dnskey,
                handle: String::new(),
                private,
                rng: SystemRandom::new(),
            },
            fields,
        ))
    }

    /// Builds a key from a `.private` file's fields and the `.key` file's DNSKEY.
    pub fn from_fields(
        dnskey: DnsKey,
        f: &keyfile::PrivateFields,
        handle: String,
    ) -> Result<SoftKey, String> {
        let alg = Algorithm::from_number(f.algorithm).map_err(|e| e.to_string())?;
        if dnskey.algorithm != f.algorithm {
            return Err(format!(
                "algorithm {} in .private differs from {} in .key",
                f.algorithm, dnskey.algorithm
            ));
        }
        let get = |k: &str| {
            f.fields
                .get(k)
                .map(Vec::as_slice)
                .ok_or(format!("missing field {k}"))
        };
        let private = match alg {
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
                let (curve, len) = if alg == Algorithm::EcdsaP256Sha256 {
                    (&agreement::ECDH_P256, 32)
                } else {
                    (&agreement::ECDH_P384, 48)
                };
                // Key files may drop the scalar's leading zero octets (BIND's do, about
                // one key in 256): padded back to the curve's size.
                let short = get("PrivateKey")?;
                if short.len() > len {
                    return Err("bad ECDSA private key: longer than the curve's".into());
                }
                let mut d = vec![0u8; len - short.len()];
                d.extend_from_slice(short);
                let d = d.as_slice();
                let pk = agreement::PrivateKey::from_private_key(curve, d)
                    .map_err(|_| "bad ECDSA private key")?;
                let point = pk
                    .compute_public_key()
                    .map_err(|_| "bad ECDSA private key")?;
                if point.as_ref()[1..] != dnskey.public_key[..] {
                    return Err("private key does not match the DNSKEY public key".into());
                }
                let kp = EcdsaKeyPair::from_private_key_and_public_key(
                    ecdsa_alg(alg),
                    d,
                    point.as_ref(),
                )
                .map_err(|e| format!("bad ECDSA key: {e}"))?;
                Private::Ecdsa(kp)
            }
            Algorithm::Ed25519 => {
                let kp = Ed25519KeyPair::from_seed_unchecked(get("PrivateKey")?)
                    .map_err(|e| format!("bad Ed25519 key: {e}"))?;
                if kp.public_key().as_ref() != &dnskey.public_key[..] {
                    return Err("private key does not match the DNSKEY public key".into());
                }
                Private::Ed25519(kp)
            }
            Algorithm::RsaSha256 => {
                let c = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: strip_zeros(get("Modulus")?),
                        e: strip_zeros(get("PublicExponent")?),
                    },
                    d: get("PrivateExponent")?,
                    p: get("Prime1")?,
                    q: get("Prime2")?,
                    dP: get("Exponent1")?,
                    dQ: get("Exponent2")?,
                    qInv: get("Coefficient")?,
                };
                let (e, n) = split_rsa_public_key(&dnskey.public_key).ok_or("bad RSA DNSKEY")?;
                if e != c.public_key.e || n != c.public_key.n {
                    return Err("private key does not match the DNSKEY public key".into());
                }
                Private::Rsa(
                    RsaKeyPair::from_components(&c).map_err(|e| format!("bad RSA key: {e}"))?,
                )
            }
        };
        Ok(SoftKey {
            dnskey,
            handle,
            private,
            rng: SystemRandom::new(),
        })
    }
}

fn ecdsa_alg(alg: Algorithm) -> &'static signature::EcdsaSigningAlgorithm {
    if alg == Algorithm::EcdsaP256Sha256 {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    } else {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    }
}

impl SigningKey for SoftKey {
    fn dnskey(&self) -> &DnsKey {
        &self.dnskey
    }

    fn handle(&self) -> &str {
        &self.handle
    }

    fn private_scalar(&self) -> Option<Vec<u8>> {
        match &self.private {
            Private::Ecdsa(kp) => kp
                .private_key()
                .as_be_bytes()
                .ok()
                .map(|b| b.as_ref().to_vec()),
            _ => None,
        }
    }

    fn sign_batch(&self, items: &[&[u8]]) -> Result<Vec<Vec<u8>>, HsmError> {
        let p256 = self.dnskey.algorithm == Algorithm::EcdsaP256Sha256.number();
        let kp = match &self.private {
            Private::Ecdsa(kp) if p256 && items.len() > 1 => kp,
            _ => return super::sign_each(self, items),
        };
        let fail = |msg: String| HsmError::Sign {
            key: self.handle.clone(),
            msg,
        };
        let d = kp
            .private_key()
            .as_be_bytes()
            .map_err(|_| fail("crypto library refused".into()))?;
        let signer = P256Signer::new(d.as_ref()).ok_or_else(|| fail("bad P-256 scalar".into()))?;
        let sigs = signer.sign_batch(items).map_err(fail)?;
        // The signer checks each signature through the private scalar with the same `k·G`
        // arithmetic that made `r`; one per batch also goes through the public key, so a
        // fault in that shared arithmetic cannot pass both (about 0.1 % of the work).
        if let Some((s, d)) = sigs.iter().zip(items).find_map(|(s, d)| Some(((*s)?, d))) {
            let v = self.dnskey.verifier().map_err(|e| fail(e.to_string()))?;
            if !v.verify(d, &s) {
                return Err(fail("a batch signature failed the public-key check".into()));
            }
        }
        // An item the batch could not sign (a zero nonce, r or s) is signed on its own.
        sigs.into_iter()
            .zip(items)
            .map(|(s, d)| s.map_or_else(|| self.sign(d), |s| Ok(s.to_vec())))
            .collect()
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let fail = |_| HsmError::Sign {
            key: self.handle.clone(),
            msg: "crypto library refused".into(),
        };
        Ok(match &self.private {
            Private::Ecdsa(kp) => kp.sign(&self.rng, data).map_err(fail)?.as_ref().to_vec(),
            Private::Ed25519(kp) => kp.sign(data).as_ref().to_vec(),
            Private::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &self.rng, data, &mut sig)
                    .map_err(fail)?;
                sig
            }
        })
    }
}

/// Reads the eight integers of an RSA key out of PKCS#8 DER: n, e, d, p, q, dP, dQ, qInv.
fn rsa_components_from_pkcs8(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, hdr) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        Some((tag, b.get(hdr..hdr + len)?, &b[hdr + len..]))
    }
    let (_, outer, _) = tlv(der)?; // PrivateKeyInfo SEQUENCE
    let (_, _, rest) = tlv(outer)?; // version
    let (_, _, rest) = tlv(rest)?; // AlgorithmIdentifier
    let (tag, octets, _) = tlv(rest)?;
    if tag != 0x04 {
        return None;
    }
    let (_, mut seq, _) = tlv(octets)?; // RSAPrivateKey SEQUENCE
    let (_, _, r) = tlv(seq)?; // version
    seq = r;
    let mut out = Vec::with_capacity(8);
    for _ in 0..8 {
        let (tag, v, r) = tlv(seq)?;
        if tag != 0x02 {
            return None;
        }
        out.push(strip_zeros(v).to_vec());
        seq = r;
    }
    Some(out)
}

/// BIND key files in one directory.
pub struct SoftKeystore {
    dir: PathBuf,
}

impl SoftKeystore {
    pub fn new(dir: PathBuf) -> SoftKeystore {
        SoftKeystore { dir }
    }

    fn err(&self, msg: impl Into<String>) -> HsmError {
        HsmError::Store {
            store: self.describe(),
            msg: msg.into(),
        }
    }
}

impl SoftKeystore {
    /// The key in `p` (a `.key` file) with its `.private`, if it belongs to `zone`.
    fn load_one(
        &self,
        p: &std::path::Path,
        zone: &Name,
    ) -> Result<Option<Arc<dyn SigningKey>>, HsmError> {
        let text =
            std::fs::read_to_string(p).map_err(|e| self.err(format!("{}: {e}", p.display())))?;
        let (owner, dnskey) =
            keyfile::parse_public(&text).map_err(|e| self.err(format!("{}: {e}", p.display())))?;
        if &owner != zone {
            return Ok(None);
        }
        let priv_path = p.with_extension("private");
        let ptext = std::fs::read_to_string(&priv_path).map_err(|e| {
            self.err(format!(
                "{}: {e} (a .key without its .private cannot sign)",
                priv_path.display()
            ))
        })?;
        let fields = keyfile::parse_private(&ptext)
            .map_err(|e| self.err(format!("{}: {e}", priv_path.display())))?;
        let handle = p.with_extension("").display().to_string();
        let key = SoftKey::from_fields(dnskey, &fields, handle)
            .map_err(|e| self.err(format!("{}: {e}", priv_path.display())))?;
        Ok(Some(Arc::new(key)))
    }
}

impl Keystore for SoftKeystore {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    fn load(&self, zone: &Name) -> Result<Vec<Arc<dyn SigningKey>>, HsmError> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| self.err(format!("cannot read directory: {e}")))?;
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "key")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('K'))
            })
            .collect();
        paths.sort();
        // Keys are read and parsed on all cores (a keystore may hold thousands), and
        // kept in file-name order.
        use rayon::prelude::*;
        let loaded: Vec<Option<Arc<dyn SigningKey>>> = paths
            .par_iter()
            .map(|p| self.load_one(p, zone))
            .collect::<Result<_, _>>()?;
        Ok(loaded.into_iter().flatten().collect())
    }

    fn generate(
        &self,
        zone: &Name,
        alg: Algorithm,
        ksk: bool,
    ) -> Result<Arc<dyn SigningKey>, HsmError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| self.err(format!("cannot create directory: {e}")))?;
        // A key whose tag another key of the zone has (same file name) is discarded and
        // made again: validators may try only one key per tag.
        let mut tries = 0;
        let (mut key, fields, base) = loop {
            let (key, fields) = SoftKey::generate(alg, ksk).map_err(|e| self.err(e))?;
            let base = self.dir.join(keyfile::basename(zone, &key.dnskey));
            let taken = ["key", "private"]
                .iter()
                .any(|ext| PathBuf::from(format!("{}.{ext}", base.display())).exists());
            if !taken {
                break (key, fields, base);
            }
            tries += 1;
            if tries >= 16 {
                return Err(self.err(format!(
                    "{} keys in a row collided with existing key tags of {}",
                    tries,
                    zone.to_text()
                )));
            }
        };
        key.handle = base.display().to_string();
        let created = crate::zone::rdata::format_rrsig_time(now_u32());
        let field_refs: Vec<(&str, &[u8])> =
            fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let private = keyfile::format_private(alg.number(), alg.mnemonic(), &field_refs, &created);
        let public = keyfile::format_public(zone, &key.dnskey, &created);
        let with_ext = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
        write_new(&with_ext("private"), private.as_bytes(), 0o600).map_err(|e| self.err(e))?;
        write_new(&with_ext("key"), public.as_bytes(), 0o644).map_err(|e| self.err(e))?;
        Ok(Arc::new(key))
    }
}

fn write_new(path: &std::path::Path, data: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn now_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
