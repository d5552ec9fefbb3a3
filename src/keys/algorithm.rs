//! DNSSEC algorithms quorumsign signs and validates with (RFC 8624 §3.1).

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    RsaSha256,
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    Ed25519,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlgorithmError {
    #[error("DNSSEC algorithm {0} is not supported (supported: 8, 13, 14, 15)")]
    Unsupported(u8),
    #[error("public key is malformed for algorithm {0}")]
    BadPublicKey(u8),
}

impl Algorithm {
    pub fn from_number(n: u8) -> Result<Algorithm, AlgorithmError> {
        Ok(match n {
            8 => Algorithm::RsaSha256,
            13 => Algorithm::EcdsaP256Sha256,
            14 => Algorithm::EcdsaP384Sha384,
            15 => Algorithm::Ed25519,
            _ => return Err(AlgorithmError::Unsupported(n)),
        })
    }

    pub fn number(self) -> u8 {
        match self {
            Algorithm::RsaSha256 => 8,
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::EcdsaP384Sha384 => 14,
            Algorithm::Ed25519 => 15,
        }
    }

    /// The mnemonic used by BIND's key files and dnssec-keygen.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "RSASHA256",
            Algorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Algorithm::EcdsaP384Sha384 => "ECDSAP384SHA384",
            Algorithm::Ed25519 => "ED25519",
        }
    }

    /// Accepts a number or a mnemonic, case-insensitively.
    pub fn parse(s: &str) -> Result<Algorithm, AlgorithmError> {
        if let Ok(n) = s.parse::<u8>() {
            return Algorithm::from_number(n);
        }
        for a in [
            Algorithm::RsaSha256,
            Algorithm::EcdsaP256Sha256,
            Algorithm::EcdsaP384Sha384,
            Algorithm::Ed25519,
        ] {
            if a.mnemonic().eq_ignore_ascii_case(s) {
                return Ok(a);
            }
        }
        Err(AlgorithmError::Unsupported(0))
    }
}

/// A parsed public key that checks signatures; cheap to share between threads.
pub struct Verifier {
    key: ParsedPublicKey,
}

impl Verifier {
    pub fn new(alg: u8, public_key: &[u8]) -> Result<Verifier, AlgorithmError> {
        let bad = || AlgorithmError::BadPublicKey(alg);
        let key = match Algorithm::from_number(alg)? {
            Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
                let (valg, len): (&'static dyn signature::VerificationAlgorithm, usize) =
                    if alg == 13 {
                        (&signature::ECDSA_P256_SHA256_FIXED, 64)
                    } else {
                        (&signature::ECDSA_P384_SHA384_FIXED, 96)
                    };
                if public_key.len() != len {
                    return Err(bad());
                }
                let mut point = Vec::with_capacity(len + 1);
                point.push(4);
                point.extend_from_slice(public_key);
                ParsedPublicKey::new(valg, point).map_err(|_| bad())?
            }
            Algorithm::Ed25519 => {
                ParsedPublicKey::new(&signature::ED25519, public_key).map_err(|_| bad())?
            }
            Algorithm::RsaSha256 => {
                let (e, n) = split_rsa_public_key(public_key).ok_or_else(bad)?;
                PublicKeyComponents { n, e }
                    .to_parsed_public_key(
                        &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                    )
                    .map_err(|_| bad())?
            }
        };
        Ok(Verifier { key })
    }

    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        self.key.verify_sig(data, sig).is_ok()
    }
}

/// RFC 3110 §2: exponent length (1 octet, or 0 then 2 octets), exponent, modulus.
pub fn split_rsa_public_key(pk: &[u8]) -> Option<(&[u8], &[u8])> {
    let (elen, off) = match *pk.first()? {
        0 => (u16::from_be_bytes([*pk.get(1)?, *pk.get(2)?]) as usize, 3),
        n => (n as usize, 1),
    };
    if pk.len() <= off + elen {
        return None;
    }
    Some((&pk[off..off + elen], &pk[off + elen..]))
}

pub fn join_rsa_public_key(e: &[u8], n: &[u8]) -> Vec<u8> {
    let e = strip_zeros(e);
    let n = strip_zeros(n);
    let mut v = Vec::with_capacity(3 + e.len() + n.len());
    if e.len() <= 255 {
        v.push(e.len() as u8);
    } else {
        v.push(0);
        v.extend_from_slice(&(e.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(e);
    v.extend_from_slice(n);
    v
}

pub fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}
