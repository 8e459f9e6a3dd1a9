//! The waiting room on the Coord port: each event's queue is a ranked set (the order is
//! decided in [`mercato_core::domain::waiting_room`]), its live admissions another ranked set
//! scored by expiry, and each admission a key holding its token. Embedded in `mercato up`, on
//! Redis when gateways are separate processes: any gateway answers for any shopper, and a
//! gateway restart loses no place.
//!
//! One admitter runs per event at a time: every gateway ticks, and the one that takes the
//! tick's lock admits. An admission is consumed when its shopper holds seats.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mercato_core::coord::{Coord, CoordResult};
use mercato_core::domain::waiting_room::{self as room, Phase, RoomState, Seen};
use mercato_crds::{EventSpec, WaitingRoom};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::admission;
use crate::error::ApiError;
use crate::room_feed::Tick;
use crate::state::AppState;

/// How often the admitter looks at each event.
pub const TICK: Duration = Duration::from_millis(500);
/// How long the join counter and the room's published state live without being refreshed.
const COUNTER_LIFE: Duration = Duration::from_secs(30 * 24 * 3600);
const STATE_LIFE: Duration = Duration::from_secs(10);
/// Admissions written before the streams hear of them: a round of thousands is heard batch
/// by batch.
const TICK_BATCH: usize = 1024;
/// Events looked at per tick: rooms are on a few events at a time.
const EVENTS_PER_TICK: usize = 1000;

use mercato_core::names::rooms::{
    active as active_key, admission as admission_key, key as room_key, queue as queue_key,
    seen as seen_key,
};

/// How much of the admission rate each tick's count makes: an average over about the last
/// five seconds of ticks.
const RATE_WEIGHT: f64 = 0.1;

/// The room of an event, when it has one in use.
pub fn enabled(spec: &EventSpec) -> Option<&WaitingRoom> {
    spec.waiting_room.as_ref().filter(|r| r.enabled)
}

/// A shopper's ticket for an event: derived from both, so it names one place and proves
/// nothing by itself (the caller's session does).
pub fn ticket(event: &str, user: &str) -> String {
    let digest = Sha256::digest(format!("{event}\n{user}").as_bytes());
    format!("tk_{}", hex::encode(&digest[..12]))
}

/// Where a shopper stands, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    pub ticket: String,
    pub state: String,
    /// 1 for the head of the queue; unknown during the pre-queue (drawn at the on-sale).
    pub position: Option<u64>,
    pub ahead: Option<u64>,
    pub eta_seconds: Option<u64>,
    /// Once admitted: the token `POST /holds` asks for, when the admitter decided it, and
    /// when it lapses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_expires_at: Option<String>,
}

/// An admission as kept on the Coord port (`admission/<user>`).
#[derive(Serialize, Deserialize)]
struct Admitted {
    token: String,
    /// When the admitter decided it: the start of its tick.
    at_ms: u64,
    expires_ms: u64,
}

impl Admitted {
    /// Reads an admission; one kept by a release before admissions were JSON is its bare
    /// token, with no times.
    fn read(bytes: &[u8]) -> Admitted {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Admitted {
            token: String::from_utf8_lossy(bytes).into_owned(),
            at_ms: 0,
            expires_ms: 0,
        })
    }
}

/// A time of an admission for the API; none for an admission that did not keep it.
fn admission_time(ms: u64) -> Option<String> {
    (ms > 0).then(|| mercato_core::clock::to_rfc3339(ms))
}

/// Joins `user` to the queue of `event` (joining again keeps the place) and says where they
/// stand.
pub async fn join(
    state: &AppState,
    spec: &EventSpec,
    event: &str,
    user: &str,
) -> Result<Place, ApiError> {
    let room_spec = enabled(spec).ok_or_else(|| no_room(event))?;
    let now = Utc::now();
    let phase = room::phase(room_spec, spec.on_sale_at, now);
    let coord = &*state.ports.coord;
    if coord.get(&admission_key(event, user)).await?.is_none() {
        let joined = match phase {
            Phase::Open => {
                coord
                    .incr_window(&room_key(event, "joined"), COUNTER_LIFE)
                    .await?
            }
            _ => 0,
        };
        let draw: u32 = rand::thread_rng().gen();
        let Some(score) = room::join_score(phase, draw, joined) else {
            return Err(ApiError::new(
                warp::http::StatusCode::CONFLICT,
                "queue_not_open",
                format!(
                    "the queue for {event:?} opens at {}",
                    room_spec.opens(spec.on_sale_at).to_rfc3339()
                ),
            )
            .with_details(serde_json::json!({"opens_at": room_spec.opens(spec.on_sale_at)})));
        };
        coord.rank_insert(&queue_key(event), user, score).await?;
    }
    place(state, spec, event, user).await
}

/// Where `user` stands in the queue of `event`.
pub async fn place(
    state: &AppState,
    spec: &EventSpec,
    event: &str,
    user: &str,
) -> Result<Place, ApiError> {
    let room_spec = enabled(spec).ok_or_else(|| no_room(event))?;
    let coord = &*state.ports.coord;
    let ticket = ticket(event, user);
    // The queue first, then the admission: the admitter writes an admission before it takes
    // the place out of the queue, so a look between the two finds the place.
    let Some(rank) = coord.rank_of(&queue_key(event), user).await? else {
        if let Some(place) = admitted(state, event, user).await? {
            return Ok(place);
        }
        return Err(ApiError::not_found(
            "ticket_not_found",
            format!(
                "you are not in the queue for {event:?}: join it (POST); a place is given up \
                 when its shopper stops looking at it for {} s, and an admission lapses",
                room_spec.abandon_after().as_secs()
            ),
        ));
    };
    // Looking at the place keeps it: one not looked at for abandonAfter is skipped.
    coord
        .set(&seen_key(event, user), b"1", room_spec.abandon_after())
        .await?;
    let phase = room::phase(room_spec, spec.on_sale_at, Utc::now());
    let room_state = match phase {
        Phase::Closed => "closed".to_owned(),
        Phase::PreQueue => "pre_queue".to_owned(),
        Phase::Open => coord
            .get(&room_key(event, "state"))
            .await?
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_else(|| "admitting".into()),
    };
    let open = phase == Phase::Open;
    let eta_seconds = match open {
        true => room::eta_secs(rank + 1, read_rate(coord, event).await?),
        false => None,
    };
    Ok(Place {
        ticket,
        state: room_state,
        position: open.then_some(rank + 1),
        ahead: open.then_some(rank),
        eta_seconds,
        admission: None,
        admitted_at: None,
        admission_expires_at: None,
    })
}

/// The place of `user` once admitted to `event`; `None` while they are not.
pub async fn admitted(
    state: &AppState,
    event: &str,
    user: &str,
) -> Result<Option<Place>, ApiError> {
    let Some(kept) = state.ports.coord.get(&admission_key(event, user)).await? else {
        return Ok(None);
    };
    let admitted = Admitted::read(&kept);
    Ok(Some(Place {
        ticket: ticket(event, user),
        state: "admitted".into(),
        position: None,
        ahead: None,
        eta_seconds: Some(0),
        admission: Some(admitted.token),
        admitted_at: admission_time(admitted.at_ms),
        admission_expires_at: admission_time(admitted.expires_ms),
    }))
}

/// The place `ahead` of the head after `tick`, for a shopper who was at `last`.
pub fn moved(last: &Place, ahead: u64, tick: &Tick) -> Place {
    Place {
        ticket: last.ticket.clone(),
        state: tick.state.clone(),
        position: Some(ahead + 1),
        ahead: Some(ahead),
        eta_seconds: room::eta_secs(ahead + 1, tick.rate),
        admission: None,
        admitted_at: None,
        admission_expires_at: None,
    }
}

/// Checks the admission a hold for `event` carries, when the event has a room in use.
pub fn check_admission(
    state: &AppState,
    spec: &EventSpec,
    event: &str,
    user: &str,
    token: Option<&str>,
) -> Result<(), ApiError> {
    if enabled(spec).is_none() {
        return Ok(());
    }
    admission::check(state.keys.ring(), token, user, event).map_err(ApiError::from)
}

/// A shopper who held `seats` has used their admission: it no longer counts against the seats
/// left, and what it took moves the room's estimate of seats per admission. (The token stays
/// valid until it expires, for the rest of their purchase; later holds with it change
/// nothing here.)
pub async fn consumed(state: &AppState, spec: &EventSpec, event: &str, user: &str, seats: u32) {
    if enabled(spec).is_none() {
        return;
    }
    let coord = &*state.ports.coord;
    let used = async {
        if !coord.rank_remove(&active_key(event), user).await? {
            return Ok(());
        }
        // Read, then written: two gateways at once lose one sample of an estimate, no more.
        let estimate = read_seats_per_admission(coord, spec, event).await?;
        let next = room::next_seats_per_admission(estimate, seats);
        coord
            .set(
                &room_key(event, "seats_per_admission"),
                format!("{next:.4}").as_bytes(),
                COUNTER_LIFE,
            )
            .await
    };
    if let Err(e) = used.await {
        tracing::warn!(event, error = %e, "could not mark an admission used");
    }
}

/// Seats an admitted shopper goes on to hold, as measured; the most one may hold until then.
async fn read_seats_per_admission(
    coord: &dyn Coord,
    spec: &EventSpec,
    event: &str,
) -> CoordResult<f64> {
    Ok(coord
        .get(&room_key(event, "seats_per_admission"))
        .await?
        .and_then(|v| String::from_utf8_lossy(&v).parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r >= 1.0)
        .unwrap_or_else(|| room::prior_seats_per_admission(spec.max_seats_per_user())))
}

fn no_room(event: &str) -> ApiError {
    ApiError::not_found(
        "no_waiting_room",
        format!("{event:?} has no waiting room: hold seats directly"),
    )
}

/// Admits every event's queue head at each [`TICK`] until shutdown.
pub fn start_admitter(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = tick(&state).await {
                        tracing::warn!(error = %e.message, "the waiting room's admitter could not tick");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    });
}

async fn tick(state: &AppState) -> Result<(), ApiError> {
    let (ids, _) =
        mercato_core::repo::events::listing_page(&*state.ports.store, None, EVENTS_PER_TICK)
            .await?;
    let now = Utc::now();
    for id in ids {
        let Some(spec) = state.events.get(&id).await? else {
            continue;
        };
        let Some(room_spec) = enabled(&spec) else {
            continue;
        };
        if room::phase(room_spec, spec.on_sale_at, now) != Phase::Open {
            continue;
        }
        // One admitter per event per tick, whichever gateway takes the lock.
        let lock = state
            .ports
            .coord
            .set_if_absent(&room_key(&id, "admitter"), b"1", TICK.mul_f32(0.8))
            .await?;
        if lock {
            admit_event(state, &spec, room_spec, &id, now).await?;
        }
    }
    Ok(())
}

async fn admit_event(
    state: &AppState,
    spec: &EventSpec,
    room_spec: &WaitingRoom,
    event: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let coord = &*state.ports.coord;
    let now_ms = now.timestamp_millis().max(0) as u64;
    coord.rank_trim(&active_key(event), now_ms).await?;
    let seats = crate::routes::fresh_availability(state, event, spec).await?;
    let seen = Seen {
        available: seats.available,
        held: seats.held,
        live_admissions: coord.rank_len(&active_key(event)).await?,
        max_active: u64::from(room_spec.max_active()),
        queued: coord.rank_len(&queue_key(event)).await?,
        seats_per_admission: read_seats_per_admission(coord, spec, event).await?,
    };
    let (count, room_state) = room::admit(seen);
    let state_text = publish_state(coord, event, room_state).await?;
    let rate = count as f64 / TICK.as_secs_f64();
    let smoothed = RATE_WEIGHT * rate + (1.0 - RATE_WEIGHT) * read_rate(coord, event).await?;
    coord
        .set(
            &room_key(event, "rate"),
            format!("{smoothed:.4}").as_bytes(),
            STATE_LIFE,
        )
        .await?;
    let tick = |removed| Tick {
        seq: 0,
        removed,
        state: state_text.to_owned(),
        rate: smoothed,
    };
    // The head leaves the queue only once its admission is written: a shopper looking at
    // their place in between finds one or the other, never neither. The streams hear of
    // each batch as soon as it is written, not after the whole round.
    let head = coord.rank_head(&queue_key(event), count).await?;
    if head.is_empty() {
        return publish_tick(coord, event, tick(0)).await;
    }
    for batch in head.chunks(TICK_BATCH) {
        for user in batch {
            admit_one(state, room_spec, event, user, now).await?;
        }
        publish_tick(coord, event, tick(batch.len() as u64)).await?;
    }
    Ok(())
}

/// Admits the shopper at the head of the queue, or skips their place if it was abandoned;
/// either way it leaves the queue, last.
async fn admit_one(
    state: &AppState,
    room_spec: &WaitingRoom,
    event: &str,
    user: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let coord = &*state.ports.coord;
    if coord.get(&seen_key(event, user)).await?.is_none() {
        // Nobody has looked at this place for abandonAfter: skipped, and counted.
        coord.rank_remove(&queue_key(event), user).await?;
        coord
            .incr_window(&room_key(event, "abandoned"), COUNTER_LIFE)
            .await?;
        tracing::info!(event, user, "a waiting room place was abandoned");
        return Ok(());
    }
    let window = room_spec.admission_window();
    let (token, expires) = admission::admit(
        state.keys.ring(),
        user,
        event,
        now.timestamp(),
        window.as_secs() as i64,
    )?;
    let expires_ms = u64::try_from(expires).unwrap_or(0).saturating_mul(1000);
    let kept = Admitted {
        token,
        at_ms: now.timestamp_millis().max(0) as u64,
        expires_ms,
    };
    coord
        .set_if_absent(&admission_key(event, user), &json_bytes(&kept), window)
        .await?;
    coord
        .rank_insert(&active_key(event), user, expires_ms)
        .await?;
    coord.rank_remove(&queue_key(event), user).await?;
    Ok(())
}

/// Numbers `tick` and tells every gateway's streams of it.
async fn publish_tick(coord: &dyn Coord, event: &str, mut tick: Tick) -> Result<(), ApiError> {
    tick.seq = coord
        .incr_window(&room_key(event, "ticks_seq"), COUNTER_LIFE)
        .await?;
    coord
        .publish(
            &mercato_core::names::rooms::ticks(event),
            &json_bytes(&tick),
        )
        .await?;
    Ok(())
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Shoppers admitted per second lately (0 when the admitter has not run for a while).
async fn read_rate(coord: &dyn Coord, event: &str) -> CoordResult<f64> {
    Ok(coord
        .get(&room_key(event, "rate"))
        .await?
        .and_then(|v| String::from_utf8_lossy(&v).parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r >= 0.0)
        .unwrap_or(0.0))
}

async fn publish_state(
    coord: &dyn Coord,
    event: &str,
    room_state: RoomState,
) -> CoordResult<&'static str> {
    let text = match room_state {
        RoomState::Admitting => "admitting",
        RoomState::Paused => "paused",
        RoomState::SoldOut => "sold_out",
    };
    coord
        .set(&room_key(event, "state"), text.as_bytes(), STATE_LIFE)
        .await?;
    Ok(text)
}
