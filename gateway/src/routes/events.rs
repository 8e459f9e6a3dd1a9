//! Events and their availability. Their seat maps are in [`super::seat_map`].

use std::collections::HashMap;
use std::time::Instant;

use mercato_core::domain::seats::SeatStatus;
use mercato_core::repo;
use mercato_crds::EventSpec;
use serde_json::{json, Value};

use super::{decode_cursor, encode_cursor, limit, Query};
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::state::{AppState, Availability};

pub(crate) async fn load(
    state: &AppState,
    id: &str,
) -> Result<std::sync::Arc<EventSpec>, ApiError> {
    state
        .events
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("event_not_found", format!("no event {id:?}")))
}

/// Claims of one section: seat id -> held or sold.
pub(super) async fn section_claims(
    state: &AppState,
    event_id: &str,
    section: &str,
) -> Result<HashMap<String, SeatStatus>, ApiError> {
    Ok(
        mercato_core::repo::holds::section_claims(&*state.ports.store, event_id, section)
            .await?
            .into_iter()
            .collect(),
    )
}

async fn availability(
    state: &AppState,
    id: &str,
    spec: &EventSpec,
) -> Result<Availability, ApiError> {
    if let Some((at, a)) = state.availability.lock().get(id) {
        if at.elapsed() < state.config.availability_max_age {
            return Ok(*a);
        }
    }
    fresh_availability(state, id, spec).await
}

/// Seats available, held and sold as the store says now (and kept for [`availability`]).
pub(crate) async fn fresh_availability(
    state: &AppState,
    id: &str,
    spec: &EventSpec,
) -> Result<Availability, ApiError> {
    let mut a = Availability {
        available: spec.capacity(),
        ..Availability::default()
    };
    for section in &spec.sections {
        for status in section_claims(state, id, &section.id).await?.values() {
            match status {
                SeatStatus::Held => a.held += 1,
                SeatStatus::Sold => a.sold += 1,
                SeatStatus::Available => {}
            }
        }
    }
    a.available = a.available.saturating_sub(a.held + a.sold);
    state
        .availability
        .lock()
        .insert(id.to_owned(), (Instant::now(), a));
    Ok(a)
}

fn summary(id: &str, spec: &EventSpec, a: Availability) -> Value {
    json!({
        "id": id,
        "name": spec.title,
        "starts_at": spec.starts_at,
        "venue": {"name": spec.venue.name, "city": spec.venue.city, "lat": spec.venue.lat, "lon": spec.venue.lon},
        "availability": a,
    })
}

pub async fn list(state: &AppState, q: &Query) -> ApiResult {
    let limit = limit(q)?;
    let after = decode_cursor(q)?;
    let (ids, next) =
        repo::events::listing_page(&*state.ports.store, after.as_deref(), limit).await?;
    let mut events = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(spec) = state.events.get(id).await? {
            let a = availability(state, id, &spec).await?;
            events.push(summary(id, &spec, a));
        }
    }
    Ok(ApiReply::ok(
        json!({"events": events, "next_cursor": next.as_deref().map(encode_cursor)}),
    ))
}

pub async fn get(state: &AppState, id: &str) -> ApiResult {
    let spec = load(state, id).await?;
    let a = availability(state, id, &spec).await?;
    let mut body = summary(id, &spec, a);
    body["performers"] = json!(spec.performers);
    body["on_sale_at"] = json!(spec.on_sale_at);
    body["hold_duration_secs"] = json!(spec.hold_duration().as_secs());
    body["max_seats_per_hold"] = json!(spec.max_seats_per_hold());
    body["max_seats_per_user"] = json!(spec.max_seats_per_user());
    body["tiers"] = json!(spec
        .tiers
        .iter()
        .map(|t| json!({"id": t.id, "name": t.name, "price": t.price}))
        .collect::<Vec<_>>());
    body["sections"] = json!(spec
        .sections
        .iter()
        .map(super::seat_map::section_shape)
        .collect::<Vec<_>>());
    Ok(ApiReply::ok(body))
}
