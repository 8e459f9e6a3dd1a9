//! A bound on CPU-heavy work (password hashing, search): at most `slots` run at once, at most
//! `queue` more wait for a slot, and none waits longer than `max_wait`. A flood of sign-ups or
//! broad queries is then answered 503 `overloaded` with `Retry-After`, instead of starting a
//! blocking thread per request (tokio allows 512), each holding argon2's 19 MiB, until memory
//! or threads run out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// How many jobs may wait per slot by default. A waiting job is a parked future holding its
/// request, cheap beside a running one; `max_wait` is what sheds a long backlog.
pub const DEFAULT_QUEUE_PER_SLOT: usize = 512;
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

/// The machine's cores, the default number of slots.
pub fn default_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadSize {
    pub slots: usize,
    pub queue: usize,
    pub max_wait: Duration,
}

impl BulkheadSize {
    /// Sized to the machine: one slot per core.
    pub fn for_machine() -> Self {
        let slots = default_slots();
        Self {
            slots,
            queue: slots * DEFAULT_QUEUE_PER_SLOT,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

#[derive(Debug)]
pub struct Bulkhead {
    /// Named in the 503's message, so an operator can tell which bound was hit.
    name: &'static str,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    size: BulkheadSize,
}

/// Leaves the queue however the wait ends (a slot, a timeout, or the request dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    pub fn new(name: &'static str, size: BulkheadSize) -> Self {
        let size = BulkheadSize {
            slots: size.slots.max(1),
            ..size
        };
        Self {
            name,
            slots: Arc::new(Semaphore::new(size.slots)),
            waiting: AtomicUsize::new(0),
            size,
        }
    }

    pub fn size(&self) -> BulkheadSize {
        self.size
    }

    /// Runs `work` on a blocking thread once a slot is free. The slot is held by that thread,
    /// not by the request: a client that gives up does not free a slot its work still uses.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.size.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(self.overloaded("its queue is full"));
                }
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout(
                    self.size.max_wait,
                    Arc::clone(&self.slots).acquire_owned(),
                )
                .await
                {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_closed)) => return Err(self.overloaded("it is closed")),
                    Err(_elapsed) => return Err(self.overloaded("no slot freed in time")),
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await
        .map_err(|e| ApiError::unavailable("internal", format!("worker thread failed: {e}")))
    }

    fn overloaded(&self, why: &str) -> ApiError {
        ApiError::unavailable(
            "overloaded",
            format!(
                "too much {} work at once ({why}); try again shortly",
                self.name
            ),
        )
    }
}
