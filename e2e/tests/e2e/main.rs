//! The whole platform over HTTP: one test binary for the crate (one link of the platform
//! instead of one per file), one module per scenario.

mod bad_input;
mod best_available;
mod catalog;
mod commerce;
mod commerce_crash;
mod crash;
mod dead_letters;
mod disk_full;
mod holds_race;
mod manifest_sources;
mod once;
mod purchase;
mod queue_crowd;
mod rate_limits;
mod room_sale;
mod seat_cap;
mod seat_map;
mod seat_stream;
mod standing;
mod url_sources;
mod waiting_room;
