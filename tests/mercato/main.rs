//! The `mercato` binary's tests in one binary: the engine flags, the Helm chart's render, the
//! platform split into processes on PostgreSQL and Redis, and the operator on a real
//! Kubernetes API server. The library has no
//! `#[cfg(test)]` tests, so a test build does not compile it a second time.

mod chart;
mod cluster;
mod data_dir;
mod engines;
mod gateway_tls;
mod kube_api;
mod multiprocess;
mod processes;
mod secrets;
