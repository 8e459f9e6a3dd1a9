//! The `mercato` binary's tests in one binary: the engine flags, the Helm chart's render, and
//! the platform split into processes on PostgreSQL and Redis. The library has no
//! `#[cfg(test)]` tests, so a test build does not compile it a second time.

mod chart;
mod engines;
mod multiprocess;
mod processes;
