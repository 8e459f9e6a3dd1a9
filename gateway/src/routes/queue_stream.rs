//! `GET /api/v1/events/{id}/queue/{ticket}/stream`: a shopper's place in the waiting room as
//! Server-Sent Events. A `place` event now and whenever the place, the estimate or the room's
//! state changes; the stream ends with an `admitted` event carrying the admission, or an
//! `error` event with a code (the place lapsed, the engine is away).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use warp::reply::Response;
use warp::sse::Event;
use warp::Reply;

use super::events::load;
use crate::error::ApiError;
use crate::room_feed::Tick;
use crate::state::AppState;
use crate::waiting_room::{self, Place};
use mercato_crds::WaitingRoom;

/// The longest a stream goes without a full look at its place, however quiet the room: each
/// look keeps the place from being skipped as abandoned, and corrects what a missed tick
/// could not. A quarter of `abandonAfter`, within 2..15 seconds.
fn full_look_every(room: &WaitingRoom) -> Duration {
    (room.abandon_after() / 4).clamp(Duration::from_secs(2), Duration::from_secs(15))
}

/// The most often a stream tells its client of a new position.
const SHOW_EVERY: Duration = Duration::from_secs(1);

/// How often a stream looks at its place when the admitter's ticks cannot be heard.
const LOOK_WITHOUT_TICKS: Duration = Duration::from_millis(500);

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
    let Some(room) = waiting_room::enabled(&spec).cloned() else {
        return Err(ApiError::not_found(
            "no_waiting_room",
            format!("{event:?} has no waiting room: hold seats directly"),
        ));
    };
    let first = waiting_room::place(&state, &spec, &event, &user).await?;
    let opening = stream::iter([place_event(&first)]);
    // The following runs in a task of its own (the engines' futures are not Sync, which a
    // streamed body must be) and stops when the place is settled or the client has gone.
    let (tx, rx) = mpsc::channel::<Event>(4);
    if first.admission.is_none() {
        let ticks = state
            .room_feed
            .subscribe(&state.ports.coord, &event)
            .await
            .ok();
        let follower = Follower {
            state,
            spec,
            every: full_look_every(&room),
            event,
            user,
        };
        tokio::spawn(follower.follow(first, ticks, tx));
    }
    let updates = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let events = opening.chain(updates).map(Ok::<_, Infallible>);
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response())
}

/// Follows one place for its stream.
struct Follower {
    state: Arc<AppState>,
    spec: Arc<mercato_crds::EventSpec>,
    every: Duration,
    event: String,
    user: String,
}

/// What a stream does next.
enum Next {
    /// Sends this event and goes on.
    Send(Place),
    /// Sends this event and ends.
    End(Event),
}

impl Follower {
    /// Sends what changes of `last` until the admission (or an error), or until the client
    /// goes. With `ticks`, a place moves by the admitter's ticks and is looked at in full
    /// now and then; without them (the engine refused a subscription), it is looked at
    /// every half second.
    async fn follow(
        self,
        mut last: Place,
        mut ticks: Option<broadcast::Receiver<Tick>>,
        tx: mpsc::Sender<Event>,
    ) {
        let mut seq: Option<u64> = None;
        let mut next_look = Instant::now() + self.every;
        // What the client was last told, and when: a place moves on every tick of a busy
        // room, and is told at most once a second, unless its state changes.
        let mut shown = last.clone();
        let mut shown_at = Instant::now();
        loop {
            let heard = match ticks.as_mut() {
                Some(ticks) => tokio::select! {
                    tick = ticks.recv() => Some(tick),
                    () = tokio::time::sleep_until(next_look) => None,
                    () = tx.closed() => return,
                },
                None => tokio::select! {
                    () = tokio::time::sleep(LOOK_WITHOUT_TICKS) => None,
                    () = tx.closed() => return,
                },
            };
            let next = match heard {
                Some(Ok(tick)) => {
                    let in_turn = seq.is_some_and(|s| tick.seq == s + 1);
                    seq = Some(tick.seq);
                    match last.ahead {
                        // Moved up by arithmetic: nothing is read.
                        Some(ahead) if in_turn && ahead >= tick.removed => {
                            Next::Send(waiting_room::moved(&last, ahead - tick.removed, &tick))
                        }
                        // Among those who left the head: admitted, most likely.
                        Some(_) if in_turn => match self.admitted().await {
                            Some(next) => next,
                            None => self.look(&mut next_look).await,
                        },
                        // The first tick heard, or one after a gap.
                        _ => self.look(&mut next_look).await,
                    }
                }
                Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                    seq = None;
                    self.look(&mut next_look).await
                }
                Some(Err(broadcast::error::RecvError::Closed)) => {
                    ticks = None;
                    self.look(&mut next_look).await
                }
                None => self.look(&mut next_look).await,
            };
            let sent = match next {
                Next::Send(place) if place.admission.is_some() => {
                    let _ = tx.send(place_event(&place)).await;
                    return;
                }
                Next::Send(place)
                    if place.state != shown.state
                        || (shown_at.elapsed() >= SHOW_EVERY && place != shown) =>
                {
                    let sent = tx.send(place_event(&place)).await;
                    shown_at = Instant::now();
                    shown = place.clone();
                    last = place;
                    sent
                }
                Next::Send(place) => {
                    last = place;
                    Ok(())
                }
                Next::End(event) => {
                    let _ = tx.send(event).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// The place, read in full; the next full look is due `every` from now. (Ticks come
    /// every half second and never look in full: the full looks are what keep a streamed
    /// place from being skipped as abandoned.)
    async fn look(&self, next_look: &mut Instant) -> Next {
        *next_look = Instant::now() + self.every;
        match waiting_room::place(&self.state, &self.spec, &self.event, &self.user).await {
            Ok(place) => Next::Send(place),
            Err(e) => Next::End(error_event(&e)),
        }
    }

    /// The admission, if there is one; `None` to look in full instead.
    async fn admitted(&self) -> Option<Next> {
        match waiting_room::admitted(&self.state, &self.event, &self.user).await {
            Ok(Some(place)) => Some(Next::Send(place)),
            Ok(None) => None,
            Err(e) => Some(Next::End(error_event(&e))),
        }
    }
}
