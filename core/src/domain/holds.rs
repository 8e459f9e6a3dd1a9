//! Holds: a shopper's claim on seats for a while.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::seats::{SeatId, SeatIdError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    Active,
    Released,
    /// An order is paying for it; it can no longer be released by hand.
    Purchasing {
        order_id: String,
    },
    Purchased {
        order_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub user_id: String,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub created_ms: u64,
    pub expires_at_ms: u64,
    pub state: HoldState,
}

/// What a shopper sees: an active hold past its expiry is `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    Released,
    Expired,
    Purchasing,
    Purchased,
}

impl Hold {
    /// The hold's seats, each once, in canonical form and in the order the hold names them. A
    /// hold is written with canonical, distinct seat ids; rows written before seat ids were
    /// canonical may spell a seat another way or twice, and still price and ticket each seat
    /// once.
    pub fn seats(&self) -> Vec<SeatId> {
        let mut seen = BTreeSet::new();
        self.seat_ids
            .iter()
            .filter_map(|text| match SeatId::read(text) {
                Ok(seat) => Some(seat),
                Err(SeatIdError::NotCanonical { canonical, .. }) => SeatId::parse(&canonical),
                Err(SeatIdError::Malformed(_)) => None,
            })
            .filter(|seat| seen.insert(seat.clone()))
            .collect()
    }

    pub fn status(&self, now_ms: u64) -> HoldStatus {
        match self.state {
            HoldState::Released => HoldStatus::Released,
            HoldState::Purchased { .. } => HoldStatus::Purchased,
            _ if now_ms >= self.expires_at_ms => HoldStatus::Expired,
            HoldState::Active => HoldStatus::Active,
            HoldState::Purchasing { .. } => HoldStatus::Purchasing,
        }
    }
}

/// The most seats any hold may take, whatever its event says.
pub const MAX_SEATS: usize = mercato_crds::MAX_SEATS_PER_HOLD as usize;

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

/// The seats a hold asks for, read in their canonical spelling: at least one, at most `max`,
/// each named once, each a seat for which `exists` holds. The gateway and the holds worker both
/// check a hold's seats with this, so a hold that names one seat twice (in any spelling) is
/// refused wherever it arrives.
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

/// Hold rows outlive their seats' claims so a shopper can still see an expired hold.
pub const ROW_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Clustering keys of hold rows start with this; it sorts after every seat id, so a scan of a
/// section's seats can stop at the first hold row.
pub const ROW_PREFIX: &str = "~hold.";

/// A hold lives in the `seat_claims` partition of its first seat's section, beside the seats it
/// claims, so the hold and those claims are written by one conditional batch. Its id says where:
/// `hold-<event>.<section>.<unique>` (event names and section ids never contain '.').
pub fn new_id(event_id: &str, section: &str, unique: &str) -> String {
    format!("hold-{event_id}.{section}.{unique}")
}

/// Where a hold's row is: (partition, clustering key) of `seat_claims`.
pub fn locate(hold_id: &str) -> Option<(String, String)> {
    let rest = hold_id.strip_prefix("hold-")?;
    let mut parts = rest.split('.');
    let (event, section, unique) = (parts.next()?, parts.next()?, parts.next()?);
    // Only ids in the shape `new_id` makes locate a row, so no other spelling can reach one.
    let unique_ok = !unique.is_empty()
        && unique.len() <= 64
        && unique
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if parts.next().is_some()
        || !mercato_crds::validate_name(event).is_empty()
        || !mercato_crds::is_id(section)
        || !unique_ok
    {
        return None;
    }
    Some((
        crate::domain::seats::claims_partition(event, section),
        format!("{ROW_PREFIX}{hold_id}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_say_where_the_hold_is() {
        let id = new_id("big-show", "s01", "abc123");
        assert_eq!(
            locate(&id),
            Some((
                "big-show/s01".into(),
                "~hold.hold-big-show.s01.abc123".into()
            ))
        );
        for bad in [
            "",
            "hold-",
            "hold-a.b",
            "hold-a.b.c.d",
            "nope-a.b.c",
            "hold-.b.c",
            "hold-Big-show.s01.abc",
            "hold-big-show.S01.abc",
            "hold-big-show.s01.ABC",
            "hold-big-show.s-1.abc",
            "hold-big-show.s01.a/b",
        ] {
            assert_eq!(locate(bad), None, "{bad:?}");
        }
    }

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

    #[test]
    fn an_old_hold_prices_and_tickets_each_seat_once() {
        let hold = Hold {
            id: "hold-gig.stalls.abc".into(),
            user_id: "ada".into(),
            event_id: "gig".into(),
            seat_ids: [
                "stalls-1-1",
                "stalls-01-1",
                "stalls-1-01",
                "stalls-2-1",
                "💺",
            ]
            .map(String::from)
            .to_vec(),
            created_ms: 0,
            expires_at_ms: 1,
            state: HoldState::Active,
        };
        let seats: Vec<String> = hold.seats().iter().map(ToString::to_string).collect();
        assert_eq!(seats, ["stalls-1-1", "stalls-2-1"]);
    }
}
