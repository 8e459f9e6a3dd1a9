//! The `mercato` binary's library: the command line and the one-process platform of
//! `mercato up`, also used by the end-to-end tests.

pub mod admin;
pub mod cli;
pub mod data_dir;
pub mod engines;
pub mod operator;
pub mod platform;
pub mod repair;
pub mod secrets;
pub mod serve;
pub mod trust;
