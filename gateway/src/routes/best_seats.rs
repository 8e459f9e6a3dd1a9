//! `POST /holds` with a `quantity` instead of `seat_ids`: the best seats left (the rule is in
//! [`mercato_core::domain::holds::best`]), placed like any hold, all or nothing. A shopper who
//! loses a race for an offer gets the next: the seats lost are counted as taken, the claims
//! read again, and another offer tried, a few times before answering 409.

use std::collections::HashSet;

use chrono::Utc;
use mercato_core::domain::commands::Outcome;
use mercato_core::domain::holds::{self, best::best_available, SeatListProblem};
use mercato_crds::{EventSpec, Section};
use rand::Rng;
use serde_json::json;
use warp::http::StatusCode;

use super::events::section_claims;
use super::holds::{hold_view, other_outcome, request_error, seat_list_error, send_place};
use super::seat_map::section;
use crate::auth::Caller;
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::idempotency::Keyed;
use crate::state::AppState;

/// Offers tried before answering 409.
const TRIES: usize = 6;
/// Each try picks at random among this many of the best offers, so shoppers racing for the
/// same seats spread over the best few instead of all losing the same one.
const SPREAD: usize = 4;

/// What a shopper asked for.
pub(super) struct Wanted {
    pub quantity: u32,
    pub section: Option<String>,
    pub tier: Option<String>,
    pub together: bool,
}

/// The sections the offer may come from, in declared order.
fn sections<'a>(
    spec: &'a EventSpec,
    event_id: &str,
    wanted: &Wanted,
) -> Result<Vec<&'a Section>, ApiError> {
    if let Some(tier) = &wanted.tier {
        if !spec.tiers.iter().any(|t| &t.id == tier) {
            return Err(ApiError::not_found(
                "tier_not_found",
                format!("event {event_id:?} has no tier {tier:?}"),
            ));
        }
    }
    if let Some(wanted) = &wanted.section {
        section(spec, event_id, wanted)?;
    }
    Ok(spec
        .sections
        .iter()
        .filter(|s| wanted.section.as_ref().is_none_or(|id| &s.id == id))
        .filter(|s| wanted.tier.as_ref().is_none_or(|tier| &s.tier == tier))
        .collect())
}

pub(super) async fn place(
    state: &AppState,
    caller: Caller,
    keyed: Option<Keyed>,
    spec: &EventSpec,
    event_id: &str,
    wanted: Wanted,
) -> ApiResult {
    let max = spec.max_seats_per_hold();
    if wanted.quantity == 0 {
        return Err(seat_list_error(SeatListProblem::Empty));
    }
    if wanted.quantity > max {
        return Err(seat_list_error(SeatListProblem::TooMany {
            max: max as usize,
            requested: wanted.quantity as usize,
        }));
    }
    let sections = sections(spec, event_id, &wanted)?;
    let unique = match keyed {
        Some(k) => k.derived_id("h"),
        None => uuid::Uuid::now_v7().simple().to_string(),
    };
    let mut lost: HashSet<String> = HashSet::new();
    for _ in 0..TRIES {
        let mut taken = lost.clone();
        for s in &sections {
            taken.extend(section_claims(state, event_id, &s.id).await?.into_keys());
        }
        let offers = best_available(&sections, &taken, wanted.quantity, wanted.together, SPREAD);
        if offers.is_empty() {
            let how = if wanted.together { " together" } else { "" };
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_enough_seats",
                format!("no {} seats{how} are left where asked", wanted.quantity),
            )
            .with_details(json!({"quantity": wanted.quantity, "together": wanted.together})));
        }
        let offer = &offers[rand::thread_rng().gen_range(0..offers.len())];
        let seat_ids: Vec<String> = offer.iter().map(ToString::to_string).collect();
        // The worker checks again; here for the same answers as a hold that names its seats.
        let seats = holds::check_request(spec, &seat_ids, Utc::now()).map_err(request_error)?;
        match send_place(state, &caller, spec, event_id, &seats, &unique).await? {
            Outcome::HoldPlaced(hold) => return Ok(ApiReply::created(hold_view(&hold))),
            Outcome::SeatsUnavailable { seat_ids } => lost.extend(seat_ids),
            other => return Err(other_outcome(other)),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "seats_unavailable",
        format!("the best seats were taken by others at each of {TRIES} tries; try again"),
    ))
}
