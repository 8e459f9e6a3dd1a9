//! Holds: a shopper's claim on seats for a while.

use serde::{Deserialize, Serialize};

use super::seats::{canonical_seats, Claim, SeatId};

pub mod best;
mod lapse;
mod place;
pub mod quota;
mod release;
mod request;
mod sale;

pub use lapse::{decide_lapse, LapseDecision};
pub use place::{Placed, Placement, Step};
pub use release::{claims_to_release, decide_release, ReleaseDecision};
pub use request::{check_request, requested_seats, RequestProblem, SeatListProblem};
pub use sale::{sale_of, SectionSale};

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
    /// once (see [`canonical_seats`] for ids that name no seat at all).
    pub fn seats(&self) -> Vec<SeatId> {
        canonical_seats(&self.seat_ids).0
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

super::purchase::purchasable!(
    Hold,
    HoldState { Active, Released },
    refusals: [HoldNotFound, HoldExpired, HoldReleased, HoldPurchased, HoldBeingPurchased]
);

/// The most seats any hold may take, whatever its event says.
pub const MAX_SEATS: usize = mercato_crds::MAX_SEATS_PER_HOLD as usize;

/// A hold's id says where it is kept: `hold-<event>.<section>.<unique>`, the event and the
/// section of its first seat (event names and section ids never contain '.').
pub fn new_id(event_id: &str, section: &str, unique: &str) -> String {
    format!("hold-{event_id}.{section}.{unique}")
}

/// The event and section a hold id names; `None` for any id not in the shape [`new_id`]
/// makes, so no other spelling can reach a hold.
pub fn parse_id(hold_id: &str) -> Option<(&str, &str)> {
    let rest = hold_id.strip_prefix("hold-")?;
    let mut parts = rest.split('.');
    let (event, section, unique) = (parts.next()?, parts.next()?, parts.next()?);
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
    Some((event, section))
}

/// A seat's claim row as written: the seat and the version to change it against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedSeat {
    pub seat: String,
    pub version: u64,
}

/// Who holds a seat: its claim row and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatHolder {
    pub seat: ClaimedSeat,
    pub claim: Claim,
}

/// What the store did with one section's claim batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionClaimed {
    /// Every seat is claimed: the claims as written.
    Applied(Vec<ClaimedSeat>),
    /// Nothing was written: the hold's row if it already exists, and who holds each seat
    /// that was claimed (by this hold too, after a crash mid-placement).
    Refused {
        hold: Option<Hold>,
        holders: Vec<SeatHolder>,
    },
}

/// Ada's hold on one seat at the gig, for tests.
#[cfg(test)]
pub(crate) fn example(state: HoldState, expires_at_ms: u64) -> Hold {
    Hold {
        id: "hold-gig.pit.a".into(),
        user_id: "ada".into(),
        event_id: "gig".into(),
        seat_ids: vec!["pit-1-1".into()],
        created_ms: 0,
        expires_at_ms,
        state,
    }
}

crate::first_layout!(Hold);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_say_where_the_hold_is() {
        let id = new_id("big-show", "s01", "abc123");
        assert_eq!(parse_id(&id), Some(("big-show", "s01")));
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
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
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
