//! quorumsign: a DNSSEC signer that runs as a high-availability cluster.
//!
//! The offline engine: [`zone`] (model and parser), [`keys`] (DNSKEY material and key
//! files), [`hsm`] (keystores), [`signer`] (RRSIGs, NSEC/NSEC3, signature cache) and
//! [`validate`] (the independent checker every version passes before publication).

pub mod access;
pub mod admin;
pub mod cli;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod fence;
pub mod follower;
pub mod hsm;
pub mod ingest;
pub mod kasp;
pub mod keys;
pub mod leader;
pub mod node;
pub mod replica;
pub mod runtime;
pub mod serve;
pub mod signer;
pub mod store;
pub mod testkit;
pub mod transport;
pub mod validate;
pub mod zone;

/// FNV-1a (64-bit) of `bytes`: a fast, stable hash for what must come out the same on
/// every node and every run (signature jitter, where a file is cut, comparison buckets).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
