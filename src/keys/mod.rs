//! DNSKEY material: algorithms, key tags, identities, DS records and signature checks.
//!
//! # Background
//! A key's identity is the SHA-256 of its DNSKEY public key field ([`KeyId`]), never its key
//! tag: tags are 16-bit checksums and collide (RFC 4034 Appendix B). Two keys of one zone
//! with the same tag are refused, because validators try them in turn and some give up.

pub mod algorithm;
pub mod ecdsa_check;
pub mod ecdsa_sign;
pub mod ecdsa_table;
pub mod keyfile;

use std::fmt;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

pub use algorithm::{Algorithm, Verifier};

/// A key whose signatures are checked many at a time (one modular inversion per batch):
/// through its private scalar ([`ecdsa_check::ScalarVerifier`]) or a table of its public
/// key's multiples ([`ecdsa_table::TableVerifier`]).
pub trait BatchCheck: Send + Sync {
    /// Whether each (signed data, signature) pair verifies.
    fn verify_batch(&self, items: &[(&[u8], &[u8])]) -> Vec<bool>;
}

impl BatchCheck for ecdsa_check::ScalarVerifier {
    fn verify_batch(&self, items: &[(&[u8], &[u8])]) -> Vec<bool> {
        ecdsa_check::ScalarVerifier::verify_batch(self, items)
    }
}

impl BatchCheck for ecdsa_table::TableVerifier {
    fn verify_batch(&self, items: &[(&[u8], &[u8])]) -> Vec<bool> {
        ecdsa_table::TableVerifier::verify_batch(self, items)
    }
}

use crate::zone::Name;

/// DNSKEY flags (RFC 4034 §2.1.1).
pub const FLAG_ZONE: u16 = 0x0100;
pub const FLAG_SEP: u16 = 0x0001;

/// SHA-256 of a key's public key field: the key's identity everywhere in quorumsign.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 32]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0[..8]))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The public half of a zone key, as published in the DNSKEY RRset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsKey {
    pub flags: u16,
    pub algorithm: u8,
    pub public_key: Vec<u8>,
}

impl DnsKey {
    pub fn from_rdata(d: &[u8]) -> Option<DnsKey> {
        if d.len() < 5 || d[2] != 3 {
            return None;
        }
        Some(DnsKey {
            flags: u16::from_be_bytes([d[0], d[1]]),
            algorithm: d[3],
            public_key: d[4..].to_vec(),
        })
    }

    pub fn rdata(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.public_key.len());
        v.extend_from_slice(&self.flags.to_be_bytes());
        v.push(3);
        v.push(self.algorithm);
        v.extend_from_slice(&self.public_key);
        v
    }

    /// RFC 4034 Appendix B key tag.
    pub fn key_tag(&self) -> u16 {
        key_tag_of_rdata(&self.rdata())
    }

    pub fn is_sep(&self) -> bool {
        self.flags & FLAG_SEP != 0
    }

    pub fn id(&self) -> KeyId {
        KeyId(
            digest::digest(&digest::SHA256, &self.public_key)
                .as_ref()
                .try_into()
                .expect("32 bytes"),
        )
    }

    /// DS rdata for this key at `owner` (RFC 4034 §5.1.4): digest type 2 (SHA-256) or 4 (SHA-384).
    pub fn ds_rdata(&self, owner: &Name, digest_type: u8) -> Option<Vec<u8>> {
        let alg = match digest_type {
            1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            2 => &digest::SHA256,
            4 => &digest::SHA384,
            _ => return None,
        };
        let mut ctx = digest::Context::new(alg);
        ctx.update(owner.as_wire());
        ctx.update(&self.rdata());
        let d = ctx.finish();
        let mut v = Vec::with_capacity(4 + d.as_ref().len());
        v.extend_from_slice(&self.key_tag().to_be_bytes());
        v.push(self.algorithm);
        v.push(digest_type);
        v.extend_from_slice(d.as_ref());
        Some(v)
    }

    pub fn verifier(&self) -> Result<Verifier, algorithm::AlgorithmError> {
        Verifier::new(self.algorithm, &self.public_key)
    }

    pub fn role(&self) -> &'static str {
        if self.is_sep() { "KSK" } else { "ZSK" }
    }
}

pub fn key_tag_of_rdata(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            *b as u32
        } else {
            (*b as u32) << 8
        };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

/// The RRSIG rdata fields before the signature (RFC 4034 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsigHeader {
    pub type_covered: u16,
    pub algorithm: u8,
    pub labels: u8,
    pub original_ttl: u32,
    pub expiration: u32,
    pub inception: u32,
    pub key_tag: u16,
    pub signer: Name,
}

impl RrsigHeader {
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.type_covered.to_be_bytes());
        out.push(self.algorithm);
        out.push(self.labels);
        out.extend_from_slice(&self.original_ttl.to_be_bytes());
        out.extend_from_slice(&self.expiration.to_be_bytes());
        out.extend_from_slice(&self.inception.to_be_bytes());
        out.extend_from_slice(&self.key_tag.to_be_bytes());
        out.extend_from_slice(self.signer.as_wire());
    }

    /// Splits RRSIG rdata into its header and signature.
    pub fn parse(rdata: &[u8]) -> Option<(RrsigHeader, &[u8])> {
        if rdata.len() < 19 {
            return None;
        }
        let signer_len = crate::zone::name::wire_name_len(&rdata[18..]).ok()?;
        let signer = Name::from_wire(&rdata[18..18 + signer_len]).ok()?;
        let h = RrsigHeader {
            type_covered: u16::from_be_bytes([rdata[0], rdata[1]]),
            algorithm: rdata[2],
            labels: rdata[3],
            original_ttl: u32::from_be_bytes(rdata[4..8].try_into().ok()?),
            expiration: u32::from_be_bytes(rdata[8..12].try_into().ok()?),
            inception: u32::from_be_bytes(rdata[12..16].try_into().ok()?),
            key_tag: u16::from_be_bytes([rdata[16], rdata[17]]),
            signer,
        };
        Some((h, &rdata[18 + signer_len..]))
    }
}

/// The data an RRSIG signs (RFC 4034 §3.1.8.1): the RRSIG header, then each record of the
/// RRset in canonical form and order. `rdatas` must already be in canonical order. When the
/// header's label count is below the owner's (a wildcard expansion, RFC 4035 §5.3.2) the
/// owner is rewritten to `*.` and the rightmost `labels` labels.
pub fn signed_data(
    header: &RrsigHeader,
    owner: &Name,
    rtype: u16,
    rdatas: &crate::zone::Rdatas,
    out: &mut Vec<u8>,
) {
    out.clear();
    header.write(out);
    let mut owner_wire: Vec<u8>;
    let owner_bytes: &[u8] = if (header.labels as usize) < owner.label_count() {
        let mut n = owner.clone();
        while n.label_count() > header.labels as usize {
            n = n.parent().expect("labels");
        }
        owner_wire = vec![1, b'*'];
        owner_wire.extend_from_slice(n.as_wire());
        &owner_wire
    } else {
        owner.as_wire()
    };
    for d in rdatas {
        out.extend_from_slice(owner_bytes);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&header.original_ttl.to_be_bytes());
        out.extend_from_slice(&(d.len() as u16).to_be_bytes());
        out.extend_from_slice(d);
    }
}

/// RRSIG Labels field for an owner: its label count, less one for a leading `*`.
pub fn rrsig_labels(owner: &Name) -> u8 {
    let n = owner.label_count();
    (if owner.is_wildcard() { n - 1 } else { n }) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_and_ds_match_bind() {
        // Made by dnssec-keygen; tag and DS from its file name and dnssec-dsfromkey -2.
        let b64 = "xZw9F1TeTGuPJVu6vg5mYAl06xg6qYgzTmB9j+veOOBEKiYcYpPYbaAMXuuMgghp0Lw2lEJrGhMvLCXW47U7Og==";
        let pk = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
        let k = DnsKey {
            flags: 257,
            algorithm: 13,
            public_key: pk,
        };
        assert_eq!(k.key_tag(), 28768);
        let owner = Name::parse(b"example.", None).unwrap();
        let ds = k.ds_rdata(&owner, 2).unwrap();
        assert_eq!(
            data_encoding::HEXUPPER.encode(&ds[4..]),
            "8CBD9D5F15A18DBF34AA3660A5B342B529A16B15D1C086DF501420CF29B359FA"
        );
        assert!(k.verifier().is_ok());
    }
}
