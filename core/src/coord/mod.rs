//! The Coord port, shaped like Redis: short-lived shared state.
//!
//! Ranked-set scores are integers below 2^53, so Redis's double scores hold them exactly.
//!
//! Rate-limit windows, waiting-room queues, keys with a TTL, and fan-out of change notices to
//! every gateway replica. Losing it must never lose an order or a sale: nothing durable is kept
//! here, it only buys speed and fairness.

mod embedded;
mod ranked;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub use embedded::EmbeddedCoord;

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("coordination service unavailable: {0}")]
    Unavailable(String),
}

pub type CoordResult<T> = Result<T, CoordError>;

/// What [`Coord::take_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Yes,
    /// The bucket is empty: the next token is there after this.
    No {
        retry_after: Duration,
    },
}

/// GCRA on microsecond times: from the bucket's theoretical arrival time `tat` (None: a full
/// bucket) at `now`, whether a token is taken, and the new `tat` to keep (and for how long).
pub fn gcra(tat: Option<u64>, now: u64, burst: u32, every_us: u64) -> (Taken, Option<u64>) {
    let every_us = every_us.max(1);
    let tolerance = every_us.saturating_mul(u64::from(burst.max(1)) - 1);
    let start = tat.unwrap_or(now).max(now);
    if start - now > tolerance {
        let wait = start - now - tolerance;
        return (
            Taken::No {
                retry_after: Duration::from_micros(wait),
            },
            None,
        );
    }
    (Taken::Yes, Some(start + every_us))
}

#[async_trait]
pub trait Coord: Send + Sync + 'static {
    /// SET key value NX PX ttl: true if the key was set.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CoordResult<bool>;
    /// SET key value PX ttl: sets it whether or not it was there, with a fresh TTL.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CoordResult<()>;
    async fn get(&self, key: &str) -> CoordResult<Option<Vec<u8>>>;
    async fn delete(&self, key: &str) -> CoordResult<bool>;
    /// INCR on a counter that expires `window` after its first increment: a fixed-window rate
    /// limit. Returns the count including this call.
    async fn incr_window(&self, key: &str, window: Duration) -> CoordResult<u64>;
    /// A token bucket of `burst` tokens refilled one per `every` (GCRA: one key holding the
    /// bucket's theoretical arrival time): takes a token, or says how long until one is there.
    /// Timed by the engine's own clock (Redis's TIME), so every gateway counts alike.
    async fn take_token(&self, key: &str, burst: u32, every: Duration) -> CoordResult<Taken>;
    /// RPUSH; returns the queue's new length.
    async fn push(&self, queue: &str, item: &[u8]) -> CoordResult<u64>;
    /// LPOP.
    async fn pop(&self, queue: &str) -> CoordResult<Option<Vec<u8>>>;
    async fn len(&self, queue: &str) -> CoordResult<u64>;
    /// ZADD NX: puts `member` in the ranked set with `score` unless it is there already (its
    /// first score stays); true if it was added. Members are ordered by score, then by member.
    async fn rank_insert(&self, set: &str, member: &str, score: u64) -> CoordResult<bool>;
    /// ZRANK: how many members come before `member`; `None` when it is not in the set.
    async fn rank_of(&self, set: &str, member: &str) -> CoordResult<Option<u64>>;
    /// ZRANGE 0 count-1: up to `count` members at the front, front first, left in the set.
    async fn rank_head(&self, set: &str, count: u64) -> CoordResult<Vec<String>>;
    /// ZCARD.
    async fn rank_len(&self, set: &str) -> CoordResult<u64>;
    /// ZREM: true if `member` was in the set.
    async fn rank_remove(&self, set: &str, member: &str) -> CoordResult<bool>;
    /// ZREMRANGEBYSCORE set -inf (below: removes every member scored below `below`; how many.
    async fn rank_trim(&self, set: &str, below: u64) -> CoordResult<u64>;
    /// PUBLISH; returns how many subscribers received it.
    async fn publish(&self, channel: &str, message: &[u8]) -> CoordResult<usize>;
    /// SUBSCRIBE: messages published from now on. A slow subscriber may miss messages (it sees
    /// a lag error), as with Redis pub/sub; fan-out is a hint, never the source of truth.
    async fn subscribe(&self, channel: &str) -> CoordResult<broadcast::Receiver<Vec<u8>>>;
}
