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

/// Why a text is not a seat id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatIdError {
    #[error("{0:?} is not a seat id: seat ids are <section>-<row>-<seat>, e.g. stalls-3-7")]
    Malformed(String),
    /// Another spelling of a real seat id (`stalls-03-7`, `STALLS-3-7`). Refused rather than
    /// collapsed: a seat has one spelling everywhere, so no comparison of two spellings can
    /// ever count one seat twice.
    #[error("{given:?} is written {canonical:?}: no leading zeros, lowercase section")]
    NotCanonical { given: String, canonical: String },
}

impl SeatId {
    /// Reads a seat id in its one canonical spelling: `<section>-<row>-<seat>`, the section a
    /// declared section id (lowercase letters, digits, '_'), row and seat decimal numbers from 1
    /// without sign or leading zeros. A text that names a seat in another spelling is
    /// `NotCanonical`, with the spelling to use.
    pub fn read(text: &str) -> Result<SeatId, SeatIdError> {
        let malformed = || SeatIdError::Malformed(text.to_owned());
        let mut parts = text.rsplitn(3, '-');
        let seat = parts.next().and_then(number).ok_or_else(malformed)?;
        let row = parts.next().and_then(number).ok_or_else(malformed)?;
        let section = parts.next().ok_or_else(malformed)?.to_ascii_lowercase();
        if !mercato_crds::is_id(&section) {
            return Err(malformed());
        }
        let id = SeatId { section, row, seat };
        let canonical = id.to_string();
        if canonical != text {
            return Err(SeatIdError::NotCanonical {
                given: text.to_owned(),
                canonical,
            });
        }
        Ok(id)
    }

    /// The seat a canonical seat id names; `None` for anything else, other spellings included.
    pub fn parse(text: &str) -> Option<SeatId> {
        Self::read(text).ok()
    }
}

/// The seats a row names, each once, in canonical spelling and in the row's order; and the ids
/// it holds that name no seat in any spelling. Rows written before seat ids were canonical may
/// spell a seat another way or twice; the unreadable ones are the caller's to report, never to
/// drop in silence.
pub fn canonical_seats<'a>(
    written: impl IntoIterator<Item = &'a String>,
) -> (Vec<SeatId>, Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut seats = Vec::new();
    let mut unreadable = Vec::new();
    for text in written {
        let seat = match SeatId::read(text) {
            Ok(seat) => Some(seat),
            Err(SeatIdError::NotCanonical { canonical, .. }) => SeatId::parse(&canonical),
            Err(SeatIdError::Malformed(_)) => None,
        };
        match seat {
            Some(seat) if seen.insert(seat.clone()) => seats.push(seat),
            Some(_) => {}
            None => unreadable.push(text.clone()),
        }
    }
    (seats, unreadable)
}

/// A row or seat number: ASCII digits only (no sign, no spaces), at least 1. Leading zeros are
/// read here and refused by the canonical check, so the caller can say how to write it.
fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n > 0)
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
        (1..=s.row_count()).contains(&seat.row) && (1..=s.row_length()).contains(&seat.seat)
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
    (1..=section.row_count()).flat_map(move |row| {
        (1..=section.row_length()).map(move |seat| SeatId {
            section: section.id.clone(),
            row,
            seat,
        })
    })
}

crate::first_layout!(Claim);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_ids_round_trip() {
        let s = SeatId::parse("upper_2-12-7").unwrap();
        assert_eq!((s.section.as_str(), s.row, s.seat), ("upper_2", 12, 7));
        assert_eq!(s.to_string(), "upper_2-12-7");
        for bad in [
            "",
            "a",
            "a-1",
            "a-x-1",
            "a-1-",
            "-1-2x",
            "a-1--2",
            "a-0-1",
            "a-1-0",
            "a-+1-1",
            "a- 1-1",
            "a-1-1 ",
            "a-1-4294967296",
            "a.b-1-1",
            "a-b-1-1",
            "💺-1-1",
        ] {
            assert_eq!(SeatId::parse(bad), None, "{bad:?}");
            assert!(
                matches!(SeatId::read(bad), Err(SeatIdError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_seat_has_one_spelling() {
        for (given, canonical) in [
            ("stalls-01-1", "stalls-1-1"),
            ("stalls-1-01", "stalls-1-1"),
            ("stalls-001-0007", "stalls-1-7"),
            ("Stalls-1-1", "stalls-1-1"),
            ("s01-01-1", "s01-1-1"),
        ] {
            assert_eq!(SeatId::parse(given), None, "{given:?}");
            assert_eq!(
                SeatId::read(given),
                Err(SeatIdError::NotCanonical {
                    given: given.into(),
                    canonical: canonical.into()
                })
            );
            assert_eq!(SeatId::read(canonical).unwrap().to_string(), canonical);
        }
    }
}
