//! `POST/GET/DELETE /holds`: validated here, decided by the holds worker.

use chrono::Utc;
use mercato_core::clock::{now_ms, to_rfc3339};
use mercato_core::codec::encode;
use mercato_core::domain::commands::{HoldCommand, Outcome};
use mercato_core::domain::holds::{self, Hold, RequestProblem, SeatListProblem};
use mercato_core::domain::seats::{self, SeatId};
use mercato_core::names::topics;
use mercato_core::repo;
use mercato_crds::EventSpec;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;

use super::best_seats;
use super::events::load;
use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::idempotency::Keyed;
use crate::state::AppState;
use crate::waiting_room;

/// A hold names its seats, or asks for a `quantity` of the best left (optionally in one
/// `section` or `tier`, `together` in one row by default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHold {
    event_id: String,
    #[serde(default)]
    seat_ids: Option<Vec<String>>,
    #[serde(default)]
    quantity: Option<u32>,
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    together: Option<bool>,
    /// The admission out of the event's waiting room, when it has one.
    #[serde(default)]
    admission: Option<String>,
}

pub fn hold_view(h: &Hold) -> Value {
    json!({
        "id": h.id,
        "event_id": h.event_id,
        "seat_ids": h.seat_ids,
        "status": h.status(now_ms()),
        "created_at": to_rfc3339(h.created_ms),
        "expires_at": to_rfc3339(h.expires_at_ms),
    })
}

/// Sends a command and awaits its outcome from the worker.
pub(crate) async fn command(
    state: &AppState,
    topic: &str,
    key: &str,
    command_id: &str,
    payload: Vec<u8>,
) -> Result<Outcome, ApiError> {
    let waiting = state.waiters.register(command_id);
    state.ports.bus.send(topic, key.as_bytes(), payload).await?;
    waiting.outcome(state.config.command_timeout).await.ok_or_else(|| {
        ApiError::unavailable("command_timeout", "the request was accepted but not answered in time; retry with the same Idempotency-Key")
    })
}

/// Maps a worker's refusal to the API's error shape.
pub(super) async fn place(
    state: &AppState,
    caller: Caller,
    keyed: Option<Keyed>,
    body: &[u8],
) -> ApiResult {
    let req: NewHold = parse_json(body)?;
    let by_quantity = req.section.is_some() || req.tier.is_some() || req.together.is_some();
    let seat_ids = match (req.seat_ids, req.quantity) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name the seats (seat_ids) or ask for a quantity, not both",
            ))
        }
        (None, Some(quantity)) => {
            let spec = load(state, &req.event_id).await?;
            let user = caller.user_id.clone();
            let admission = req.admission.as_deref();
            waiting_room::check_admission(state, &spec, &req.event_id, &user, admission)?;
            let wanted = best_seats::Wanted {
                quantity,
                section: req.section,
                tier: req.tier,
                together: req.together.unwrap_or(true),
            };
            let placed =
                best_seats::place(state, caller, keyed, &spec, &req.event_id, wanted).await?;
            waiting_room::consumed(state, &spec, &req.event_id, &user, quantity).await;
            return Ok(placed);
        }
        (Some(_), None) if by_quantity => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "section, tier and together go with a quantity, not with seat_ids",
            ))
        }
        (Some(ids), None) => ids,
        (None, None) => Vec::new(),
    };
    if seat_ids.is_empty() {
        return Err(seat_list_error(SeatListProblem::Empty));
    }
    let spec = load(state, &req.event_id).await?;
    waiting_room::check_admission(
        state,
        &spec,
        &req.event_id,
        &caller.user_id,
        req.admission.as_deref(),
    )?;
    // The check the holds worker makes again: here for a fast, detailed answer.
    let seats = holds::check_request(&spec, &seat_ids, Utc::now()).map_err(request_error)?;
    if let Some(floor) = seats
        .iter()
        .filter_map(|s| seats::section(&spec, &s.section))
        .find(|s| s.is_general_admission())
    {
        return Err(ApiError::bad_request(
            "general_admission_by_quantity",
            format!(
                "section {:?} is general admission: ask for a quantity, not for places by id",
                floor.id
            ),
        )
        .with_details(json!({"section": floor.id})));
    }
    let unique = match keyed {
        Some(k) => k.derived_id("h"),
        None => uuid::Uuid::now_v7().simple().to_string(),
    };
    match send_place(state, &caller, &spec, &req.event_id, &seats, &unique).await? {
        Outcome::HoldPlaced(hold) => {
            let taken = u32::try_from(hold.seat_ids.len()).unwrap_or(u32::MAX);
            waiting_room::consumed(state, &spec, &req.event_id, &caller.user_id, taken).await;
            Ok(ApiReply::created(hold_view(&hold)))
        }
        Outcome::SeatsUnavailable { seat_ids } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "seats_unavailable",
            "some seats are already held or sold",
        )
        .with_details(json!({"unavailable": seat_ids}))),
        other => Err(other_outcome(other)),
    }
}

/// Sends the command placing a hold of `seats` (checked already) for the caller, its id
/// made of `unique`, and awaits the worker's outcome.
pub(super) async fn send_place(
    state: &AppState,
    caller: &Caller,
    spec: &EventSpec,
    event_id: &str,
    seats: &[SeatId],
    unique: &str,
) -> Result<Outcome, ApiError> {
    let ttl = state
        .config
        .hold_ttl_override
        .unwrap_or_else(|| spec.hold_duration());
    let first_section = seats.first().map(|s| s.section.clone()).unwrap_or_default();
    let hold_id = holds::new_id(event_id, &first_section, unique);
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = HoldCommand::Place {
        command_id: command_id.clone(),
        hold_id,
        user_id: caller.user_id.clone(),
        event_id: event_id.to_owned(),
        seat_ids: seats.iter().map(ToString::to_string).collect(),
        ttl_ms: ttl.as_millis() as u64,
    };
    let key = format!("{event_id}/{first_section}");
    command(state, topics::HOLDS, &key, &command_id, encode(&cmd)).await
}

/// The answer to a hold request that may not be placed as asked.
pub(super) fn request_error(problem: RequestProblem) -> ApiError {
    match problem {
        RequestProblem::Seats(problem) => seat_list_error(problem),
        RequestProblem::NotOnSale { on_sale_at } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_on_sale",
            "tickets are not on sale yet",
        )
        .with_details(json!({"on_sale_at": on_sale_at})),
        RequestProblem::SalesClosed => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "sales_closed",
            "the event has started",
        ),
    }
}

/// The answer to a hold's seat list that cannot be claimed as asked.
pub(super) fn seat_list_error(problem: SeatListProblem) -> ApiError {
    match problem {
        SeatListProblem::Empty => {
            ApiError::bad_request("empty_seat_list", "a hold needs at least one seat")
        }
        SeatListProblem::TooMany { max, requested } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
            format!("a hold may take at most {max} seats"),
        )
        .with_details(json!({"max_seats_per_hold": max, "requested": requested})),
        SeatListProblem::NotCanonical(spellings) => ApiError::bad_request(
            "invalid_seat_id",
            "seat ids are written <section>-<row>-<seat> with no leading zeros, e.g. stalls-3-7",
        )
        .with_details(json!({
            "invalid": spellings
                .iter()
                .map(|(given, canonical)| json!({"seat_id": given, "canonical": canonical}))
                .collect::<Vec<_>>()
        })),
        SeatListProblem::Duplicates(duplicates) => {
            ApiError::bad_request("duplicate_seats", "a seat appears more than once")
                .with_details(json!({"duplicates": duplicates}))
        }
        SeatListProblem::Unknown(unknown) => {
            ApiError::not_found("seat_not_found", "some seats do not exist in this event")
                .with_details(json!({"unknown": unknown}))
        }
    }
}

/// The answer to any outcome a route has no arm of its own for: a worker's refusal becomes the
/// API's error shape; anything else is a bug, logged and answered 503.
pub(crate) fn other_outcome(outcome: Outcome) -> ApiError {
    match outcome {
        Outcome::Refused(refusal) => refusal.into(),
        // The worker set the command aside as poison; an operator has it in the dead letters.
        Outcome::Failed { message } => ApiError::new(
            warp::http::StatusCode::INTERNAL_SERVER_ERROR,
            "command_failed",
            message,
        ),
        other => {
            tracing::error!(outcome = ?other, "a worker answered with an outcome this route does not expect");
            ApiError::unavailable("internal", "unexpected answer from a worker")
        }
    }
}

async fn owned_hold(state: &AppState, caller: &Caller, id: &str) -> Result<Hold, ApiError> {
    let hold = repo::holds::load(&*state.ports.store, id).await?;
    match hold {
        Some(h) if caller.can_see(&h.value.user_id) => Ok(h.value),
        _ => Err(ApiError::not_found(
            "hold_not_found",
            format!("no hold {id:?}"),
        )),
    }
}

pub async fn get(state: &AppState, auth: Option<&str>, id: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let hold = owned_hold(state, &caller, id).await?;
    Ok(ApiReply::ok(hold_view(&hold)))
}

pub async fn release(state: &AppState, auth: Option<&str>, id: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let hold = owned_hold(state, &caller, id).await?;
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let first_section = hold
        .seats()
        .first()
        .map(|s| s.section.clone())
        .unwrap_or_default();
    let cmd = HoldCommand::Release {
        command_id: command_id.clone(),
        hold_id: hold.id.clone(),
        user_id: hold.user_id.clone(),
    };
    let key = format!("{}/{first_section}", hold.event_id);
    match command(state, topics::HOLDS, &key, &command_id, encode(&cmd)).await? {
        Outcome::HoldReleased => {
            state.availability.lock().remove(&hold.event_id);
            Ok(ApiReply::no_content())
        }
        other => Err(other_outcome(other)),
    }
}
