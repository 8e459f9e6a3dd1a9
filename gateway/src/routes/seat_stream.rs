//! `GET /api/v1/events/{id}/seats/stream?section=`: a section's seats, live, as Server-Sent
//! Events. The first event is a `snapshot` (the compact map of the section, at least as new as
//! its `id`), or, for a client resuming with `Last-Event-ID`, the deltas it missed; then every
//! delta as it happens: `held`, `released`, `lapsed`, `sold`, each with the seats it changed
//! and its version as the event id (1, 2, 3, … per section, no gaps). A client that falls too
//! far behind gets `reset` and the stream ends: it reconnects with its last id.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use warp::reply::Response;
use warp::Reply;

use super::events::load;
use super::seat_map::{self, compact_section, statuses};
use crate::error::ApiError;
use crate::seat_feed::{sse_frame, Pushed};
use crate::state::AppState;

/// The most deltas written to one client at once. A client behind by several deltas gets them
/// in one write (one syscall, one chunk to parse) instead of one each: under an on-sale's load
/// that is what lets one gateway keep thousands of clients current.
const BATCH: usize = 256;

const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

fn reset_frame() -> Bytes {
    sse_frame("reset", None, "reconnect")
}

/// The next write for a client: every delta waiting for it (up to [`BATCH`]), newer than
/// `version`; `None` with the last write when the stream must end (too far behind: `reset`).
async fn next_write(rx: &mut Receiver<Pushed>, version: u64) -> Option<(Bytes, bool)> {
    let first = loop {
        match rx.recv().await {
            Ok(Pushed::KeepAlive) => return Some((Bytes::from_static(KEEP_ALIVE_FRAME), true)),
            Ok(Pushed::Delta(d)) if d.version <= version => continue,
            Ok(Pushed::Delta(d)) => break d,
            Err(RecvError::Lagged(_)) => return Some((reset_frame(), false)),
            Err(RecvError::Closed) => return None,
        }
    };
    let mut batch: Option<BytesMut> = None;
    for _ in 1..BATCH {
        match rx.try_recv() {
            Ok(Pushed::Delta(d)) if d.version > version => batch
                .get_or_insert_with(|| BytesMut::from(&first.frame[..]))
                .extend_from_slice(&d.frame),
            Ok(_) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            Err(TryRecvError::Lagged(_)) => return Some((reset_frame(), false)),
        }
    }
    // One delta (the common case when idle): the shared frame itself, not a copy.
    Some(match batch {
        Some(batch) => (batch.freeze(), true),
        None => (first.frame.clone(), true),
    })
}

pub async fn open(
    state: Arc<AppState>,
    event_id: &str,
    section: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Response, ApiError> {
    let spec = load(&state, event_id).await?;
    let Some(wanted) = section else {
        return Err(ApiError::bad_request(
            "section_required",
            "watch one section: ?section=<id>",
        ));
    };
    let section = seat_map::section(&spec, event_id, wanted)?;
    let last = match last_event_id {
        None => None,
        Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID is the id of a seat stream event: a number",
            )
        })?),
    };
    let watch = state.seat_feed.watch(event_id, &section.id, last);
    let version = watch.version;
    let first: Vec<Bytes> = match watch.missed {
        Some(missed) => missed.iter().map(|d| d.frame.clone()).collect(),
        None => {
            // Read after the version: at least as new as it; a delta after it that the
            // snapshot already shows changes nothing when applied again.
            let statuses = statuses(&state, event_id, section).await?;
            let snapshot =
                json!({"version": version, "section": compact_section(section, &statuses)});
            vec![sse_frame("snapshot", Some(version), &snapshot.to_string())]
        }
    };
    let live = stream::unfold(Some(watch.next), move |next| async move {
        let mut rx = next?;
        let (write, more) = next_write(&mut rx, version).await?;
        Some((write, more.then_some(rx)))
    });
    let body = stream::iter(first).chain(live).map(Ok::<_, Infallible>);
    let mut response = warp::reply::stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) would hold deltas back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;
    use crate::seat_feed::Delta;

    fn delta(version: u64) -> Pushed {
        Pushed::Delta(Arc::new(Delta {
            version,
            change: "held",
            seat_ids: vec![format!("a-1-{version}")],
            expires_at_ms: None,
            frame: sse_frame("held", Some(version), &format!("{{\"version\":{version}}}")),
        }))
    }

    #[tokio::test]
    async fn a_client_behind_gets_what_waits_in_one_write_and_a_reset_when_too_far() {
        let (tx, mut rx) = broadcast::channel(4);
        for v in 1..=3 {
            tx.send(delta(v)).unwrap();
        }
        // Version 1 is in the snapshot already: 2 and 3, in one write.
        let (write, more) = next_write(&mut rx, 1).await.unwrap();
        assert!(more);
        assert_eq!(
            &write[..],
            b"event:held\nid:2\ndata:{\"version\":2}\n\nevent:held\nid:3\ndata:{\"version\":3}\n\n"
        );
        tx.send(Pushed::KeepAlive).unwrap();
        assert_eq!(&next_write(&mut rx, 1).await.unwrap().0[..], b":\n\n");
        for v in 4..=9 {
            tx.send(delta(v)).unwrap();
        }
        let (write, more) = next_write(&mut rx, 1).await.unwrap();
        assert!(!more, "too far behind: the stream ends");
        assert_eq!(&write[..], b"event:reset\ndata:reconnect\n\n");
        // The feed gone (the gateway shutting down): the stream ends.
        let (tx, mut rx) = broadcast::channel::<Pushed>(4);
        drop(tx);
        assert!(next_write(&mut rx, 0).await.is_none());
    }
}
