//! The operator's integration tests in one binary: the controllers against a scripted fake
//! and an in-memory API server, and the golden renders of the examples.

mod controller;
mod fake_api;
mod in_cluster;
mod render;
