//! One conformance suite per port. Every implementation runs the same suite unchanged: the
//! embedded engines always, the real engines' adapters when an address is given. The suites
//! panic on the first violation (they are test code), and use fresh names so they can run
//! against a shared, long-lived engine.

pub mod bus;
pub mod coord;
pub mod store;

/// A name no earlier run used.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}
