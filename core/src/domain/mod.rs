//! The ticketing domain: pure data and decisions, no I/O. Workers and the gateway move these
//! values between the ports.

pub mod catalog;
pub mod commands;
pub mod commerce;
pub mod dead_letters;
pub mod events;
pub mod holds;
pub mod once;
pub mod orders;
pub mod payments;
pub mod purchase;
pub mod refusal;
pub mod seats;
pub mod users;
pub mod waiting_room;

pub use mercato_crds::Money;
