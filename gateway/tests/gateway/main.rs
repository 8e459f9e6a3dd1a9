//! The gateway's own tests, in one binary: the crate's unit tests live here rather than in
//! `#[cfg(test)]` modules, so that a test build does not compile the whole gateway (its warp
//! filters are the slowest code in the workspace to compile) a second time.

mod auth;
mod bulkhead;
mod error;
mod rate_limit;
