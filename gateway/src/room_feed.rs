//! The admitter's ticks, heard once per gateway and handed to every stream of a place: a
//! stream then learns its new position by arithmetic instead of asking the Coord port, and
//! only the streams the tick reached ask for their admission.
//!
//! After each batch of a round the admitter publishes a [`Tick`] on the event's channel: how
//! many places left the head of the queue (admitted or skipped), and the room's state and
//! rate. (When an admission was decided is in the admission itself.) Places only ever leave a queue at its head and join at its tail, so a place `r`
//! ahead of the head before a tick is `r - removed` ahead after it, or was among those who
//! left. Pub/sub may drop a message (a slow subscriber lags, as with Redis): a stream that
//! sees a gap in the ticks' numbers, and every stream from time to time, looks at its place
//! in full.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use mercato_core::coord::{Coord, CoordResult};
use mercato_core::names::rooms;

/// Ticks kept for a stream that is slow to take them; past it, it looks in full.
const TICKS_KEPT: usize = 16;

/// One round of an event's admitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// The round's number, one more than the last: a stream that sees a gap missed a tick.
    pub seq: u64,
    /// Places that left the head of the queue in this round.
    pub removed: u64,
    /// The room's state after it: `admitting`, `paused` or `sold_out`.
    pub state: String,
    /// Shoppers admitted per second lately.
    pub rate: f64,
}

/// Every event's ticks this gateway hears, by event; a subscription to the Coord port is
/// opened for an event when its first stream opens, and closed after its last one goes.
#[derive(Default)]
pub struct RoomFeed {
    events: Mutex<HashMap<String, broadcast::Sender<Tick>>>,
}

impl RoomFeed {
    /// The ticks of `event` from now on.
    pub async fn subscribe(
        self: &Arc<Self>,
        coord: &Arc<dyn Coord>,
        event: &str,
    ) -> CoordResult<broadcast::Receiver<Tick>> {
        if let Some(tx) = self.events.lock().get(event) {
            return Ok(tx.subscribe());
        }
        let mut heard = coord.subscribe(&rooms::ticks(event)).await?;
        let mut events = self.events.lock();
        // Another stream of the same event may have subscribed meanwhile: use its channel.
        if let Some(tx) = events.get(event) {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(TICKS_KEPT);
        events.insert(event.to_owned(), tx.clone());
        drop(events);
        let (feed, event) = (Arc::clone(self), event.to_owned());
        tokio::spawn(async move {
            loop {
                let message = heard.recv().await;
                if tx.receiver_count() == 0 {
                    break;
                }
                match message {
                    Ok(bytes) => match serde_json::from_slice::<Tick>(&bytes) {
                        Ok(tick) => {
                            let _ = tx.send(tick);
                        }
                        Err(e) => tracing::warn!(event, error = %e, "an unreadable admitter tick"),
                    },
                    // The streams see the gap in the ticks' numbers and look in full.
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(event, missed, "admitter ticks missed");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            // The last stream went (or the engine closed the channel): the next stream of
            // this event subscribes afresh.
            let mut events = feed.events.lock();
            if events.get(&event).is_some_and(|t| t.same_channel(&tx)) {
                events.remove(&event);
            }
        });
        Ok(rx)
    }
}
