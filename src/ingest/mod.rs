//! Ingest: from a zone's input to "what changed" since the version the cluster holds.
//!
//! ```text
//!  zone file ──► scan   digest of the whole file and of each piece (cut at owner boundaries)
//!            ──► index  the pieces' sums and where they start: a re-read parses only
//!                       the pieces whose sum moved
//!            ──► delta  the changed pieces against the replicated content → RRset changes
//!  primary   ──► held   AXFR/IXFR records held until a version built from them is published
//!                       (the transfers themselves are crate::dns::client)
//! ```
//!
//! Everything here is plain data in, plain data out: the leader hands in what it holds of a
//! zone and the replicated content, and gets back the changes to sign.

pub mod delta;
pub mod held;
pub mod index;
pub mod scan;
