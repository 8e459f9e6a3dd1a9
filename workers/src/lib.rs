//! Stream workers. Each is a loop over the partitions it owns: consume a batch, decide it,
//! write the effects to the store, emit the results, and only then commit the offset. A crash
//! anywhere in that loop replays the batch, and every handler is idempotent, so at-least-once
//! delivery gives exactly-once effects.

pub mod after_sale;
pub mod allocator;
pub mod checkout;
pub mod goods;
pub mod holds;
pub mod ingest;
pub mod lapses;
pub mod payments;
mod purchase;
pub mod runtime;
pub mod sandbox;
pub mod seat_changes;

pub use runtime::{run_worker, BatchHandler, Emit, WorkerSpec};
