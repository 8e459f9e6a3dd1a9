//! Mercato's domain and ports.
//!
//! The ports are shaped like the engines Mercato runs on in a cluster, and the embedded engines
//! offer exactly those semantics, no more, so code that works on a laptop works on the cluster:
//! - [`bus::Bus`]: Fluvio-shaped topics, partitions, offsets per consumer id, at-least-once.
//! - [`store::Store`]: ScyllaDB-shaped rows with versions, TTLs and lightweight transactions.
//! - [`coord::Coord`]: Redis-shaped short-lived shared state.
//!
//! [`conformance`] holds one test suite per port; every implementation must pass it unchanged.

pub mod bus;
pub mod clock;
pub mod codec;
pub mod coord;
pub mod domain;
pub mod geo;
pub mod log_file;
pub mod names;
pub mod store;

pub mod repo;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod record_layouts;

use std::sync::Arc;

/// The three ports a role needs, whichever engines stand behind them.
#[derive(Clone)]
pub struct Ports {
    pub bus: Arc<dyn bus::Bus>,
    pub store: Arc<dyn store::Store>,
    pub coord: Arc<dyn coord::Coord>,
}
