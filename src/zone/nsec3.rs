//! NSEC3 hashing (RFC 5155 §5) and hashed owner names: what the signer, the validator and
//! the answers all compute the same way.

use aws_lc_rs::digest;
use data_encoding::BASE32HEX_NOPAD;

use super::Name;

/// An NSEC3 chain's parameters (the hash is SHA-1, algorithm 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec3Params {
    pub iterations: u16,
    pub salt: Vec<u8>,
    pub opt_out: bool,
}

impl Nsec3Params {
    /// The parameters an NSEC3PARAM rdata names (hash algorithm 1 only).
    pub fn from_nsec3param(d: &[u8]) -> Option<Nsec3Params> {
        if d.len() < 5 || d[0] != 1 {
            return None;
        }
        let salt_len = d[4] as usize;
        Some(Nsec3Params {
            iterations: u16::from_be_bytes([d[2], d[3]]),
            salt: d.get(5..5 + salt_len)?.to_vec(),
            opt_out: false,
        })
    }
}

/// RFC 5155 §5: H(x) = SHA-1(x || salt), iterated.
pub fn hash(name: &Name, p: &Nsec3Params) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(name.as_wire());
    ctx.update(&p.salt);
    let mut h: [u8; 20] = ctx.finish().as_ref().try_into().expect("20 bytes");
    for _ in 0..p.iterations {
        let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&h);
        ctx.update(&p.salt);
        h = ctx.finish().as_ref().try_into().expect("20 bytes");
    }
    h
}

/// The owner name of hash `h` under `origin`: base32hex, lower case.
pub fn hashed_owner(h: &[u8; 20], origin: &Name) -> Name {
    origin
        .prepend(BASE32HEX_NOPAD.encode(h).to_ascii_lowercase().as_bytes())
        .expect("hashed owner fits")
}
