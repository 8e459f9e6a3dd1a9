//! `GET /api/v1/events/{id}/seats/stream?section=`: a section's seats, live, as Server-Sent
//! Events. The first event is a `snapshot` (the compact map of the section, at least as new as
//! its `id`), or, for a client resuming with `Last-Event-ID`, the deltas it missed; then every
//! delta as it happens: `held`, `released`, `lapsed`, `sold`, each with the seats it changed
//! and its version as the event id (1, 2, 3, … per section, no gaps). A client that falls too
//! far behind gets `reset` and the stream ends: it reconnects with its last id.

use std::convert::Infallible;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde_json::json;
use warp::reply::Response;
use warp::sse::Event;
use warp::Reply;

use super::events::load;
use super::seat_map::{self, compact_section, statuses};
use crate::error::ApiError;
use crate::seat_feed::Delta;
use crate::state::AppState;

fn delta_event(delta: &Delta) -> Event {
    Event::default()
        .event(delta.change)
        .id(delta.version.to_string())
        .data(delta.json.as_str())
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
    let first: Vec<Event> = match watch.missed {
        Some(missed) => missed.iter().map(|d| delta_event(d)).collect(),
        None => {
            // Read after the version: at least as new as it; a delta after it that the
            // snapshot already shows changes nothing when applied again.
            let statuses = statuses(&state, event_id, section).await?;
            let snapshot =
                json!({"version": version, "section": compact_section(section, &statuses)});
            vec![Event::default()
                .event("snapshot")
                .id(version.to_string())
                .json_data(snapshot)
                .map_err(|e| ApiError::unavailable("internal", e.to_string()))?]
        }
    };
    let live = stream::unfold(Some(watch.next), move |next| async move {
        let mut rx = next?;
        loop {
            match rx.recv().await {
                Ok(delta) if delta.version <= version => continue,
                Ok(delta) => return Some((delta_event(&delta), Some(rx))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    return Some((Event::default().event("reset").data("reconnect"), None))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events = stream::iter(first).chain(live).map(Ok::<_, Infallible>);
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response())
}
