//! The signature cache: what a later run (or another node) needs to reuse signatures.
//!
//! Keyed by RRset identity (owner, type); each entry holds the SHA-256 digest of the RRset's
//! canonical content (owner, type, TTL, records) and the RRSIGs made over exactly that
//! content, each with its key, inception and expiration. An RRset whose digest matches and
//! whose signature by a still-selected key is not inside the refresh window is not signed
//! again. The cluster replicates exactly this type.

use std::collections::HashMap;
use std::path::Path;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use crate::keys::KeyId;
use crate::zone::Name;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedRrsig {
    pub key: KeyId,
    pub inception: u32,
    pub expiration: u32,
    /// The full RRSIG rdata, shared with the signed zone.
    pub rdata: std::sync::Arc<[u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub digest: [u8; 32],
    pub rrsigs: Vec<CachedRrsig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureCache {
    /// The zone this cache belongs to.
    pub origin: Option<Name>,
    pub entries: HashMap<(Name, u16), CacheEntry>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("signature cache {path}: {msg}")]
    Io { path: String, msg: String },
    #[error("signature cache {path} is for zone {found}, not {expected}")]
    WrongZone {
        path: String,
        found: String,
        expected: String,
    },
}

const MAGIC: &[u8; 8] = b"QSCACHE1";

impl SignatureCache {
    /// Digest of an RRset's canonical content.
    pub fn digest(owner: &Name, rtype: u16, ttl: u32, rdatas: &crate::zone::Rdatas) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(owner.as_wire());
        ctx.update(&rtype.to_be_bytes());
        ctx.update(&ttl.to_be_bytes());
        for d in rdatas {
            ctx.update(&(d.len() as u16).to_be_bytes());
            ctx.update(d);
        }
        ctx.finish().as_ref().try_into().expect("32 bytes")
    }

    /// A cached RRSIG by `key` over content `digest` still good at `now` for `refresh_s` more seconds.
    pub fn reusable(
        &self,
        owner: &Name,
        rtype: u16,
        digest: &[u8; 32],
        key: &KeyId,
        now: u32,
        refresh_s: u32,
    ) -> Option<&CachedRrsig> {
        let e = self.entries.get(&(owner.clone(), rtype))?;
        if &e.digest != digest {
            return None;
        }
        e.rrsigs.iter().find(|s| {
            &s.key == key
                && crate::zone::serial::le(s.inception, now)
                && crate::zone::serial::le(now.wrapping_add(refresh_s), s.expiration)
        })
    }

    pub fn len(&self) -> usize {
        self.entries.values().map(|e| e.rrsigs.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend(
            bincode::serde::encode_to_vec(self, bincode::config::standard())
                .expect("cache encodes"),
        );
        v
    }

    pub fn from_bytes(b: &[u8]) -> Result<SignatureCache, String> {
        if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
            return Err("not a quorumsign signature cache".into());
        }
        // Bounded like every other decode: a corrupt length must not allocate gigabytes.
        let (c, used) =
            crate::codec::decode_counted(&b[MAGIC.len()..]).map_err(|e| e.to_string())?;
        if used != b.len() - MAGIC.len() {
            return Err("trailing bytes after the cache".into());
        }
        Ok(c)
    }

    /// Loads a cache file; a missing file is an empty cache.
    pub fn load(path: &Path, origin: &Name) -> Result<SignatureCache, CacheError> {
        let p = path.display().to_string();
        let b = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SignatureCache::default());
            }
            Err(e) => {
                return Err(CacheError::Io {
                    path: p,
                    msg: e.to_string(),
                });
            }
        };
        let c = SignatureCache::from_bytes(&b).map_err(|msg| CacheError::Io {
            path: p.clone(),
            msg,
        })?;
        if let Some(o) = &c.origin
            && o != origin
        {
            return Err(CacheError::WrongZone {
                path: p,
                found: o.to_text(),
                expected: origin.to_text(),
            });
        }
        Ok(c)
    }

    /// Writes the cache atomically.
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        let mut f = crate::zone::write::AtomicFile::create(path).map_err(|e| CacheError::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        f.write_all(&self.to_bytes())
            .and_then(|_| f.commit())
            .map_err(|e| CacheError::Io {
                path: path.display().to_string(),
                msg: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A damaged cache file (cut short anywhere, a byte added, a length that claims far
    /// more than the file holds) is refused with an error, never read as a smaller cache.
    #[test]
    fn a_damaged_cache_file_is_refused() {
        let origin = Name::parse(b"example.", None).unwrap();
        let mut c = SignatureCache {
            origin: Some(origin.clone()),
            ..Default::default()
        };
        c.entries.insert(
            (origin, 6),
            CacheEntry {
                digest: [7; 32],
                rrsigs: vec![CachedRrsig {
                    key: KeyId([1; 32]),
                    inception: 1,
                    expiration: 2,
                    rdata: std::sync::Arc::from(&[1u8, 2, 3][..]),
                }],
            },
        );
        let good = c.to_bytes();
        assert_eq!(SignatureCache::from_bytes(&good).unwrap(), c);
        for cut in 0..good.len() {
            assert!(
                SignatureCache::from_bytes(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(SignatureCache::from_bytes(&trailing).is_err());
        // Some(origin), then a name length of 0xff000000 (varint tag 252: a u32 follows).
        let mut claims = MAGIC.to_vec();
        claims.extend([1, 252, 0, 0, 0, 0xff, 7, b'e']);
        assert!(SignatureCache::from_bytes(&claims).is_err());
    }
}
