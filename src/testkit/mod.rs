//! What tests, the chaos harness, the benchmarks and the demo build on: a local cluster of
//! real node processes ([`lab`]), the deterministic simulation of a whole cluster in one
//! thread ([`sim`]), and the bodies of the fuzz targets ([`fuzz`]). Above every part of the
//! product; nothing in the product imports it.

pub mod examples;
pub mod fuzz;
pub mod lab;
pub mod sim;
