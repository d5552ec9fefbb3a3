//! What tests, the chaos harness, the benchmarks and the demo build on: a local cluster of
//! real node processes (`lab`: the demo runs on it, so it is in every build), and, with the
//! `testkit` feature only, the deterministic simulation of a whole cluster in one thread
//! (`sim`), the invariant checkers it shares with the chaos harness (`checkers`), the bodies
//! of the fuzz targets (`fuzz`) and the signed example zones of the unit tests (`examples`). Above every part of the product; nothing in the product
//! imports it.

#[cfg(feature = "testkit")]
pub mod checkers;
#[cfg(any(test, feature = "testkit"))]
pub mod examples;
#[cfg(feature = "testkit")]
pub mod fuzz;
pub mod lab;
#[cfg(feature = "testkit")]
pub mod sim;
