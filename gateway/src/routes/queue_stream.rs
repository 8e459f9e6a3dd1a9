//! `GET /api/v1/events/{id}/queue/{ticket}/stream`: a shopper's place in the waiting room as
//! Server-Sent Events. A `place` event now and whenever the place, the estimate or the room's
//! state changes; the stream ends with an `admitted` event carrying the admission, or an
//! `error` event with a code (the place lapsed, the engine is away).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use warp::reply::Response;
use warp::sse::Event;
use warp::Reply;

use super::events::load;
use crate::error::ApiError;
use crate::state::AppState;
use crate::waiting_room::{self, Place};

/// How often a stream looks at its place: every gateway answers from the Coord port, so a
/// stream hears of its admission within this (plus the admitter's tick).
const LOOK_EVERY: Duration = Duration::from_millis(500);

fn place_event(place: &Place) -> Event {
    let name = if place.admission.is_some() {
        "admitted"
    } else {
        "place"
    };
    Event::default().event(name).data(json!(place).to_string())
}

fn error_event(e: &ApiError) -> Event {
    Event::default().event("error").data(e.body().to_string())
}

pub async fn open(
    state: Arc<AppState>,
    event: String,
    ticket: String,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let caller = state.keys.caller(authorization.as_deref())?;
    let spec = load(&state, &event).await?;
    let user = caller.user_id;
    if ticket != waiting_room::ticket(&event, &user) {
        return Err(ApiError::not_found(
            "ticket_not_found",
            "no such ticket of yours in this queue",
        ));
    }
    let first = waiting_room::place(&state, &spec, &event, &user).await?;
    let opening = stream::iter([place_event(&first)]);
    // The looking runs in a task of its own (the engines' futures are not Sync, which a
    // streamed body must be) and stops when the place is settled or the client has gone.
    let (tx, rx) = mpsc::channel::<Event>(4);
    if first.admission.is_none() {
        let mut last = json!(first);
        tokio::spawn(async move {
            while !tx.is_closed() {
                tokio::time::sleep(LOOK_EVERY).await;
                let (next, end) = match waiting_room::place(&state, &spec, &event, &user).await {
                    Ok(place) if place.admission.is_some() => (place_event(&place), true),
                    Ok(place) if json!(place) != last => {
                        last = json!(place);
                        (place_event(&place), false)
                    }
                    Ok(_) => continue,
                    Err(e) => (error_event(&e), true),
                };
                if tx.send(next).await.is_err() || end {
                    return;
                }
            }
        });
    }
    let updates = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let events = opening.chain(updates).map(Ok::<_, Infallible>);
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response())
}
