//! `POST /holds` with a `quantity` instead of `seat_ids`: the best seats left (the rule is in
//! [`mercato_core::domain::holds::best`]), placed like any hold, all or nothing. A shopper who
//! loses a race for an offer gets the next: the seats lost are counted as taken, the claims
//! read again, and another offer tried, a few times before answering 409.
//!
//! A general-admission section (named, or all the sections of a tier asked for) is asked for
//! by quantity only: the places are taken at random among the free ones, `together` has no
//! meaning there, and a floor that has fewer free places than asked answers 409
//! `not_enough_places`. Where seated and standing sections are both in reach (a tier, or no
//! filter), only the seated ones are offered.

use std::collections::HashSet;

use chrono::Utc;
use mercato_core::domain::commands::Outcome;
use mercato_core::domain::holds::best::{best_available, free_places};
use mercato_core::domain::holds::{self, SeatListProblem};
use mercato_core::domain::seats::SeatId;
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
/// Offers of places tried before answering 409. Places are all alike, so a shopper who loses
/// a race tries again while enough are free: every loss means another hold took places, so
/// the floor fills (or the shopper is told it cannot) well before this many.
const PLACE_TRIES: usize = 64;
/// The first try picks at random among this many of the best offers, so shoppers racing for
/// the same seats spread over the best few instead of all losing the same one. Each lost try
/// widens the choice fourfold (4, 16, 64, … 4,096 offers): at an on-sale's opening hundreds of
/// shoppers ask at the same moment, and a fixed few would have most of them lose every try
/// while thousands of seats are free.
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

/// One of the best `spread` seated offers, at random.
fn seats_offer(
    sections: &[&Section],
    taken: &HashSet<String>,
    wanted: &Wanted,
    spread: usize,
) -> Option<Vec<SeatId>> {
    let mut offers = best_available(sections, taken, wanted.quantity, wanted.together, spread);
    if offers.is_empty() {
        return None;
    }
    Some(offers.swap_remove(rand::thread_rng().gen_range(0..offers.len())))
}

/// `quantity` free places of a floor, at random.
fn places_offer(
    sections: &[&Section],
    taken: &HashSet<String>,
    quantity: u32,
) -> Option<Vec<SeatId>> {
    let free = free_places(sections, taken);
    let quantity = quantity as usize;
    if free.len() < quantity {
        return None;
    }
    let mut picked: Vec<SeatId> =
        rand::seq::index::sample(&mut rand::thread_rng(), free.len(), quantity)
            .into_iter()
            .map(|i| free[i].clone())
            .collect();
    picked.sort();
    Some(picked)
}

fn not_enough(wanted: &Wanted, standing: bool) -> ApiError {
    if standing {
        return ApiError::new(
            StatusCode::CONFLICT,
            "not_enough_places",
            format!(
                "fewer than {} places are left on the floor",
                wanted.quantity
            ),
        )
        .with_details(json!({"quantity": wanted.quantity}));
    }
    let how = if wanted.together { " together" } else { "" };
    ApiError::new(
        StatusCode::CONFLICT,
        "not_enough_seats",
        format!("no {} seats{how} are left where asked", wanted.quantity),
    )
    .with_details(json!({"quantity": wanted.quantity, "together": wanted.together}))
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
    let mut sections = sections(spec, event_id, &wanted)?;
    let standing = sections.iter().all(|s| s.is_general_admission());
    if !standing {
        sections.retain(|s| !s.is_general_admission());
    }
    let unique = match keyed {
        Some(k) => k.derived_id("h"),
        None => uuid::Uuid::now_v7().simple().to_string(),
    };
    let mut lost: HashSet<String> = HashSet::new();
    let tries = if standing { PLACE_TRIES } else { TRIES };
    for attempt in 0..tries {
        let mut taken = lost.clone();
        for s in &sections {
            taken.extend(section_claims(state, event_id, &s.id).await?.into_keys());
        }
        let offer = if standing {
            places_offer(&sections, &taken, wanted.quantity)
        } else {
            seats_offer(&sections, &taken, &wanted, SPREAD << (2 * attempt.min(5)))
        };
        let Some(offer) = offer else {
            return Err(not_enough(&wanted, standing));
        };
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
        format!("the seats offered were taken by others at each of {tries} tries; try again"),
    ))
}
