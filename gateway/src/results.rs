//! Awaiting command results without polling: a command's id is registered before it is sent,
//! and the results consumer completes it when the worker's answer arrives on the bus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mercato_core::bus::{Bus, BusResult, StartAt};
use mercato_core::domain::commands::{CommandResult, Outcome};
use mercato_core::names::topics;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
}

/// Unregisters on drop, so an abandoned wait (timeout, client gone) leaves nothing behind.
pub struct Waiting<'a> {
    waiters: &'a Waiters,
    id: String,
    rx: Option<oneshot::Receiver<Outcome>>,
}

impl Waiting<'_> {
    pub async fn outcome(mut self, timeout: Duration) -> Option<Outcome> {
        let rx = self.rx.take()?;
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.pending.lock().remove(&self.id);
    }
}

impl Waiters {
    pub fn register(&self, id: &str) -> Waiting<'_> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.to_owned(), tx);
        Waiting {
            waiters: self,
            id: id.to_owned(),
            rx: Some(rx),
        }
    }

    fn complete(&self, result: CommandResult) {
        if let Some(tx) = self.pending.lock().remove(&result.command_id) {
            let _ = tx.send(result.outcome);
        }
    }
}

/// Opens a consumer at the end of every results partition (before any command is sent), then
/// delivers results until shutdown.
pub async fn start_consumer(
    bus: Arc<dyn Bus>,
    waiters: Arc<Waiters>,
    consumer_id: &str,
    shutdown: watch::Receiver<bool>,
) -> BusResult<()> {
    crate::follow::follow(
        bus,
        topics::RESULTS,
        StartAt::End,
        consumer_id,
        shutdown,
        move |result: CommandResult| waiters.complete(result),
    )
    .await
}
