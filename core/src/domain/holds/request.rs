//! Whether a hold may be placed as asked: its seats against its event, and the time against
//! the event's sale. The gateway checks a request with this for a fast, detailed 4xx; the
//! holds worker checks every command with it again, so a command from anywhere (an old
//! gateway, a replay) is held to the same rules.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mercato_crds::EventSpec;

use crate::domain::seats::{exists, SeatId, SeatIdError};

/// Why the seats a hold asks for are refused before any is claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatListProblem {
    Empty,
    TooMany {
        max: usize,
        requested: usize,
    },
    /// Seats named in another spelling than their own: (given, canonical).
    NotCanonical(Vec<(String, String)>),
    /// Seats named more than once.
    Duplicates(Vec<String>),
    /// Texts that name no seat of the event.
    Unknown(Vec<String>),
}

/// Why a hold request is refused before any seat is claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestProblem {
    Seats(SeatListProblem),
    NotOnSale {
        on_sale_at: DateTime<Utc>,
    },
    /// The event has started.
    SalesClosed,
}

/// The seats a hold asks of `spec` at `now`, in their canonical spelling, or why it may not
/// be placed.
pub fn check_request(
    spec: &EventSpec,
    seat_ids: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<SeatId>, RequestProblem> {
    let max = spec.max_seats_per_hold() as usize;
    let seats = requested_seats(seat_ids, max.min(super::MAX_SEATS), |seat| {
        exists(spec, seat)
    })
    .map_err(RequestProblem::Seats)?;
    if now < spec.on_sale_at {
        return Err(RequestProblem::NotOnSale {
            on_sale_at: spec.on_sale_at,
        });
    }
    if now >= spec.starts_at {
        return Err(RequestProblem::SalesClosed);
    }
    Ok(seats)
}

/// The seats a hold asks for, read in their canonical spelling: at least one, at most `max`,
/// each named once, each a seat for which `exists` holds.
pub fn requested_seats(
    seat_ids: &[String],
    max: usize,
    exists: impl Fn(&SeatId) -> bool,
) -> Result<Vec<SeatId>, SeatListProblem> {
    if seat_ids.is_empty() {
        return Err(SeatListProblem::Empty);
    }
    if seat_ids.len() > max {
        return Err(SeatListProblem::TooMany {
            max,
            requested: seat_ids.len(),
        });
    }
    let mut seats = Vec::with_capacity(seat_ids.len());
    let mut not_canonical = Vec::new();
    let mut unknown = Vec::new();
    for text in seat_ids {
        match SeatId::read(text) {
            Ok(seat) if exists(&seat) => seats.push(seat),
            Ok(_) | Err(SeatIdError::Malformed(_)) => unknown.push(text.clone()),
            Err(SeatIdError::NotCanonical { given, canonical }) => {
                not_canonical.push((given, canonical))
            }
        }
    }
    if !not_canonical.is_empty() {
        return Err(SeatListProblem::NotCanonical(not_canonical));
    }
    let mut seen = BTreeSet::new();
    let duplicates: Vec<String> = seats
        .iter()
        .filter(|s| !seen.insert(*s))
        .map(ToString::to_string)
        .collect();
    if !duplicates.is_empty() {
        return Err(SeatListProblem::Duplicates(duplicates));
    }
    if !unknown.is_empty() {
        return Err(SeatListProblem::Unknown(unknown));
    }
    Ok(seats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_list_names_each_seat_once_in_its_own_spelling() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let real = |s: &SeatId| s.section == "stalls" && s.row <= 10 && s.seat <= 10;
        let seats = requested_seats(&ids(&["stalls-1-2", "stalls-1-1"]), 10, real).unwrap();
        let names: Vec<String> = seats.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["stalls-1-2", "stalls-1-1"],
            "the order asked for is kept"
        );

        // The report of a new user: one seat in three spellings, priced and ticketed thrice.
        assert_eq!(
            requested_seats(
                &ids(&["stalls-1-1", "stalls-01-1", "stalls-1-01"]),
                10,
                real
            ),
            Err(SeatListProblem::NotCanonical(vec![
                ("stalls-01-1".into(), "stalls-1-1".into()),
                ("stalls-1-01".into(), "stalls-1-1".into()),
            ]))
        );
        assert_eq!(
            requested_seats(&ids(&["stalls-1-1", "stalls-2-2", "stalls-1-1"]), 10, real),
            Err(SeatListProblem::Duplicates(vec!["stalls-1-1".into()]))
        );
        assert_eq!(
            requested_seats(&ids(&["stalls-1-1", "stalls-11-1", "+1"]), 10, real),
            Err(SeatListProblem::Unknown(vec![
                "stalls-11-1".into(),
                "+1".into()
            ]))
        );
        assert_eq!(requested_seats(&[], 10, real), Err(SeatListProblem::Empty));
        assert_eq!(
            requested_seats(&ids(&["stalls-1-1", "stalls-1-2"]), 1, real),
            Err(SeatListProblem::TooMany {
                max: 1,
                requested: 2
            })
        );
    }
}
