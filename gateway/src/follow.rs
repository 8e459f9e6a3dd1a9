//! Following a topic without a consumer group: every partition read by a task of its own from
//! `start`, each record decoded and handed on, until shutdown. The gateway follows `results`
//! (from the end: answers to its own commands) and `seat-changes` (from the beginning: the
//! whole log, folded into the live seat streams).

use std::sync::Arc;
use std::time::Duration;

use mercato_core::bus::{Bus, BusResult, PartitionConsumer, StartAt};
use mercato_core::codec::{decode, Record};
use tokio::sync::watch;

/// Opens a reader on every partition of `topic` (all open before this returns, so nothing
/// published afterwards is missed), then hands each record that decodes as `T` to `handle`;
/// one that does not is logged and skipped.
pub async fn follow<T: Record + 'static>(
    bus: Arc<dyn Bus>,
    topic: &'static str,
    start: StartAt,
    consumer_id: &str,
    shutdown: watch::Receiver<bool>,
    handle: impl Fn(T) + Clone + Send + Sync + 'static,
) -> BusResult<()> {
    let partitions = bus.partitions(topic).await?;
    for p in 0..partitions {
        let mut consumer =
            PartitionConsumer::open(Arc::clone(&bus), consumer_id, topic, p, start).await?;
        let handle = handle.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = consumer.next_batch(4096, Duration::from_secs(1)) => b,
                    _ = shutdown.changed() => return,
                };
                match batch {
                    Ok(records) => {
                        for r in records {
                            match decode::<T>(&r.value) {
                                Ok(value) => handle(value),
                                Err(e) => {
                                    tracing::warn!(topic, error = %e, offset = r.offset, "an undecodable record; skipped")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic, error = %e, partition = p, "reading a topic failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }
    Ok(())
}
