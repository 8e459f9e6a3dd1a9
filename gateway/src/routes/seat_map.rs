//! Seat maps: the full listing (one object per seat, for a section or a small venue) and the
//! compact map (per section, the statuses of its seats as runs), both answered with an `ETag`
//! so a client polling an unchanged map gets 304 and no body.
//!
//! The compact status string lists a section's seats row by row, seat by seat (`all_seats`
//! order), as runs of `<count><status>`: `a` available, `h` held, `s` sold. `"18a2h5s"` is 18
//! available seats, then 2 held, then 5 sold. A 50,000-seat stadium is a few hundred bytes
//! when empty or sold out, and about two bytes a seat at worst.

use std::fmt::Write as _;

use mercato_core::domain::seats::{all_seats, SeatStatus};
use mercato_crds::{EventSpec, Section};
use serde_json::{json, Value};

use super::events::{load, section_claims};
use super::Query;
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::state::AppState;

/// The most seats the full listing answers at once: past it, ask for a section or the
/// compact map (one JSON object per seat of a stadium is megabytes per poll).
pub const FULL_LISTING_MAX_SEATS: u64 = 10_000;

/// Section `wanted` of event `id`, or 404 `section_not_found`.
pub(super) fn section<'a>(
    spec: &'a EventSpec,
    id: &str,
    wanted: &str,
) -> Result<&'a Section, ApiError> {
    spec.sections
        .iter()
        .find(|s| s.id == wanted)
        .ok_or_else(|| {
            ApiError::not_found(
                "section_not_found",
                format!("event {id:?} has no section {wanted:?}"),
            )
        })
}

/// The sections asked for: `section=` or all of them.
fn sections<'a>(spec: &'a EventSpec, id: &str, q: &Query) -> Result<Vec<&'a Section>, ApiError> {
    match q.get("section") {
        Some(wanted) => Ok(vec![section(spec, id, wanted)?]),
        None => Ok(spec.sections.iter().collect()),
    }
}

/// Every seat of `section` with its status, in `all_seats` order.
pub(super) async fn statuses(
    state: &AppState,
    event_id: &str,
    section: &Section,
) -> Result<Vec<SeatStatus>, ApiError> {
    let claims = section_claims(state, event_id, &section.id).await?;
    Ok(all_seats(section)
        .map(|seat| {
            claims
                .get(&seat.to_string())
                .copied()
                .unwrap_or(SeatStatus::Available)
        })
        .collect())
}

/// `GET /events/{id}/seats`: one object per seat.
pub async fn seats(
    state: &AppState,
    id: &str,
    q: &Query,
    if_none_match: Option<&str>,
) -> ApiResult {
    let spec = load(state, id).await?;
    let sections = sections(&spec, id, q)?;
    let count: u64 = sections.iter().map(|s| seats_in(s)).sum();
    if count > FULL_LISTING_MAX_SEATS {
        return Err(ApiError::new(
            warp::http::StatusCode::UNPROCESSABLE_ENTITY,
            "seat_map_too_large",
            format!(
                "event {id:?} has {count} seats, more than the {FULL_LISTING_MAX_SEATS} listed \
                 at once: ask for one section (?section=) or the compact map \
                 (/api/v1/events/{id}/seatmap)"
            ),
        ));
    }
    let mut seats = Vec::new();
    for section in sections {
        let statuses = statuses(state, id, section).await?;
        for (seat, status) in all_seats(section).zip(statuses) {
            seats.push(json!({
                "id": seat.to_string(),
                "section": seat.section,
                "row": seat.row,
                "number": seat.seat,
                "tier": section.tier,
                "status": status,
            }));
        }
    }
    Ok(ApiReply::revalidated(
        json!({"seats": seats}),
        if_none_match,
    ))
}

/// `GET /events/{id}/seatmap`: per section, its shape, counts and statuses as runs.
pub async fn compact(
    state: &AppState,
    id: &str,
    q: &Query,
    if_none_match: Option<&str>,
) -> ApiResult {
    let spec = load(state, id).await?;
    let mut out = Vec::new();
    for section in sections(&spec, id, q)? {
        let statuses = statuses(state, id, section).await?;
        out.push(compact_section(section, &statuses));
    }
    Ok(ApiReply::revalidated(
        json!({"event_id": id, "sections": out}),
        if_none_match,
    ))
}

fn seats_in(section: &Section) -> u64 {
    section.capacity()
}

/// A section's shape as every answer shows it: seated, or a general-admission floor whose
/// places are one row of `capacity` (`<section>-1-<n>`).
pub(super) fn section_shape(section: &Section) -> Value {
    json!({
        "id": section.id,
        "name": section.name.clone().unwrap_or_else(|| section.id.clone()),
        "tier": section.tier,
        "kind": if section.is_general_admission() { "general_admission" } else { "seated" },
        "rows": section.row_count(),
        "seats_per_row": section.row_length(),
        "capacity": section.capacity(),
    })
}

pub(super) fn compact_section(section: &Section, statuses: &[SeatStatus]) -> Value {
    let count = |wanted: SeatStatus| statuses.iter().filter(|s| **s == wanted).count();
    let mut shape = section_shape(section);
    shape["counts"] = json!({
        "available": count(SeatStatus::Available),
        "held": count(SeatStatus::Held),
        "sold": count(SeatStatus::Sold),
    });
    shape["status"] = json!(runs(statuses));
    shape
}

/// Statuses as runs of `<count><letter>`.
pub fn runs(statuses: &[SeatStatus]) -> String {
    let letter = |s: SeatStatus| match s {
        SeatStatus::Available => 'a',
        SeatStatus::Held => 'h',
        SeatStatus::Sold => 's',
    };
    let mut out = String::new();
    let mut rest = statuses;
    while let Some(&first) = rest.first() {
        let run = rest.iter().take_while(|s| **s == first).count();
        let _ = write!(out, "{run}{}", letter(first));
        rest = &rest[run..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeatStatus::{Available as A, Held as H, Sold as S};

    #[test]
    fn statuses_become_runs_in_seat_order() {
        assert_eq!(runs(&[]), "");
        assert_eq!(runs(&[A]), "1a");
        assert_eq!(runs(&[A, A, H, H, H, S, A]), "2a3h1s1a");
        assert_eq!(runs(&vec![A; 50_000]), "50000a");
    }
}
