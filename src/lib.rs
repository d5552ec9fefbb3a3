//! quorumsign: a DNSSEC signer that runs as a high-availability cluster.
//!
//! ```text
//!  input file ─┐                         leader                      every node
//!  primary ────┴─► ingest ─► leader::engine ─► signer ─► validate ─► replica (Raft)
//!  (AXFR/IXFR: dns)   what changed   what to do   sign    publish     │ Stage × n, Publish
//!                                                          gate       ▼
//!                                              follower: validate again (own chain walk)
//!                                                          │ only what passed
//!                                                          ▼
//!                                   serve (UDP/TCP, AXFR/IXFR out) · leader::publish
//!                                                              (file output, NOTIFY out)
//! ```
//!
//! The modules by layer, bottom first; each imports only from its own layer and those below
//! (`tests/layers.rs` checks it):
//!
//! | layer | modules |
//! |---|---|
//! | runtime | [`runtime`] (clock, thread pools, allocator, openraft's runtime), [`codec`] |
//! | the offline engine | [`zone`] (model, parser, serials, dates), [`dns`] (the DNS client, TSIG), [`keys`] and [`hsm`] (keys and keystores), [`kasp`] (key lifecycle), [`replica`] (the replicated state), [`validate`] (the independent checker, full and incremental), [`signer`] (RRSIGs, NSEC/NSEC3, the signature cache, incremental signing) |
//! | the parts a node wires | [`store`] (Raft log), [`access`] (roles), [`transport`] (node-to-node TLS), [`ingest`] (input → changes), [`serve`] (DNS answers and transfers out), [`config`], [`fence`] |
//! | the node | [`node`] (the shared handles), [`leader`] (the engine and its effects), [`follower`] (validation on apply, readiness) |
//! | the process | [`admin`] (API), [`daemon`] (starts and wires a node), [`testkit`], [`cli`] |

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
