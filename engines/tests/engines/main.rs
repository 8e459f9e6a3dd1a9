//! The ports' conformance suites on the real engines, one module per engine; each runs when
//! its `MERCATO_TEST_*` variable names a server and says it is skipped otherwise.

mod fluvio;
mod postgres;
mod redis;
mod scylla;
