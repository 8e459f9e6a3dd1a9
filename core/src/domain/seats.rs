//! Seat ids, seat maps and seat claims.
//!
//! A seat id is `<section>-<row>-<seat>`, rows and seats numbered from 1. Whether a seat is held
//! or sold is one row in the `seat_claims` table (partition `<event>/<section>`); no row means
//! available. A hold's claim carries the hold's TTL, so a lapsed hold frees its seats by itself.

use std::collections::BTreeMap;

use mercato_crds::{EventSpec, Section};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeatId {
    pub section: String,
    pub row: u32,
    pub seat: u32,
}

impl SeatId {
    pub fn parse(text: &str) -> Option<SeatId> {
        let mut parts = text.rsplitn(3, '-');
        let seat = parts.next()?.parse().ok()?;
        let row = parts.next()?.parse().ok()?;
        let section = parts.next()?.to_owned();
        Some(SeatId { section, row, seat })
    }
}

impl std::fmt::Display for SeatId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.section, self.row, self.seat)
    }
}

/// The partition of `seat_claims` holding a section's seats.
pub fn claims_partition(event_id: &str, section: &str) -> String {
    format!("{event_id}/{section}")
}

/// What a claim row says about its seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claim {
    Held { hold_id: String },
    Sold { order_id: String, hold_id: String },
}

impl Claim {
    pub fn hold_id(&self) -> &str {
        match self {
            Claim::Held { hold_id } | Claim::Sold { hold_id, .. } => hold_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

/// Looks seats up in an event's declared seat map.
pub fn section<'a>(spec: &'a EventSpec, id: &str) -> Option<&'a Section> {
    spec.sections.iter().find(|s| s.id == id)
}

pub fn exists(spec: &EventSpec, seat: &SeatId) -> bool {
    section(spec, &seat.section).is_some_and(|s| {
        (1..=s.rows).contains(&seat.row) && (1..=s.seats_per_row).contains(&seat.seat)
    })
}

/// Seats grouped by section, each group sorted: the order in which a hold claims partitions.
pub fn by_section(seats: &[SeatId]) -> BTreeMap<String, Vec<SeatId>> {
    let mut groups: BTreeMap<String, Vec<SeatId>> = BTreeMap::new();
    for s in seats {
        groups.entry(s.section.clone()).or_default().push(s.clone());
    }
    for g in groups.values_mut() {
        g.sort();
    }
    groups
}

/// Every seat of a section, in order.
pub fn all_seats(section: &Section) -> impl Iterator<Item = SeatId> + '_ {
    (1..=section.rows).flat_map(move |row| {
        (1..=section.seats_per_row).map(move |seat| SeatId {
            section: section.id.clone(),
            row,
            seat,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_ids_round_trip() {
        let s = SeatId::parse("upper_2-12-7").unwrap();
        assert_eq!((s.section.as_str(), s.row, s.seat), ("upper_2", 12, 7));
        assert_eq!(s.to_string(), "upper_2-12-7");
        for bad in ["", "a", "a-1", "a-x-1", "a-1-", "-1-2x", "a-1--2"] {
            assert_eq!(SeatId::parse(bad), None, "{bad:?}");
        }
    }
}
