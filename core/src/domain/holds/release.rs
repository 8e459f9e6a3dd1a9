//! Releasing a hold by hand, decided from its row: pure, like placing one.

use super::{Hold, HoldState, HoldStatus, SeatHolder};
use crate::domain::refusal::Refusal;
use crate::domain::seats::Claim;

use super::ClaimedSeat;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseDecision {
    Refuse(Refusal),
    /// Released before: answer as if now.
    AlreadyReleased,
    /// Write `released` over the row's version `expected`, then give back its claims.
    Release {
        released: Hold,
        expected: u64,
    },
}

/// What releasing `hold` (its row and version, if it exists) for `user_id` at `now_ms` does.
pub fn decide_release(hold: Option<(&Hold, u64)>, user_id: &str, now_ms: u64) -> ReleaseDecision {
    let Some((hold, version)) = hold.filter(|(h, _)| h.user_id == user_id) else {
        return ReleaseDecision::Refuse(Refusal::HoldNotFound);
    };
    match hold.status(now_ms) {
        HoldStatus::Released => ReleaseDecision::AlreadyReleased,
        HoldStatus::Purchased => ReleaseDecision::Refuse(Refusal::HoldPurchased),
        HoldStatus::Purchasing => ReleaseDecision::Refuse(Refusal::HoldBeingPurchased),
        HoldStatus::Active | HoldStatus::Expired => ReleaseDecision::Release {
            released: Hold {
                state: HoldState::Released,
                ..hold.clone()
            },
            expected: version,
        },
    }
}

/// The claims among `holders` that `hold` still holds: those to delete when it is released.
/// Seats that lapsed and were claimed by someone else are left alone.
pub fn claims_to_release(hold: &Hold, holders: &[Option<SeatHolder>]) -> Vec<ClaimedSeat> {
    holders
        .iter()
        .flatten()
        .filter(|h| matches!(&h.claim, Claim::Held { hold_id } if *hold_id == hold.id))
        .map(|h| h.seat.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(state: HoldState, expires_at_ms: u64) -> Hold {
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

    #[test]
    fn only_its_owner_releases_a_hold_not_yet_bought() {
        let active = hold(HoldState::Active, 100);
        assert_eq!(
            decide_release(None, "ada", 50),
            ReleaseDecision::Refuse(Refusal::HoldNotFound)
        );
        assert_eq!(
            decide_release(Some((&active, 7)), "bob", 50),
            ReleaseDecision::Refuse(Refusal::HoldNotFound),
            "another user's hold is not found, not forbidden"
        );
        for now in [50, 150] {
            assert_eq!(
                decide_release(Some((&active, 7)), "ada", now),
                ReleaseDecision::Release {
                    released: hold(HoldState::Released, 100),
                    expected: 7
                },
                "active or expired, at {now}"
            );
        }
        let order = || "o1".to_owned();
        assert_eq!(
            decide_release(Some((&hold(HoldState::Released, 100), 7)), "ada", 50),
            ReleaseDecision::AlreadyReleased
        );
        assert_eq!(
            decide_release(
                Some((&hold(HoldState::Purchasing { order_id: order() }, 100), 7)),
                "ada",
                50
            ),
            ReleaseDecision::Refuse(Refusal::HoldBeingPurchased)
        );
        assert_eq!(
            decide_release(
                Some((&hold(HoldState::Purchased { order_id: order() }, 100), 7)),
                "ada",
                500
            ),
            ReleaseDecision::Refuse(Refusal::HoldPurchased)
        );
    }

    #[test]
    fn a_release_gives_back_only_the_claims_still_its_own() {
        let h = hold(HoldState::Released, 100);
        let holder = |seat: &str, claim: Claim| {
            Some(SeatHolder {
                seat: ClaimedSeat {
                    seat: seat.into(),
                    version: 3,
                },
                claim,
            })
        };
        let holders = [
            holder(
                "pit-1-1",
                Claim::Held {
                    hold_id: h.id.clone(),
                },
            ),
            holder(
                "pit-1-2",
                Claim::Held {
                    hold_id: "hold-gig.pit.b".into(),
                },
            ),
            holder(
                "pit-1-3",
                Claim::Sold {
                    order_id: "o".into(),
                    hold_id: h.id.clone(),
                },
            ),
            None,
        ];
        let seats: Vec<String> = claims_to_release(&h, &holders)
            .into_iter()
            .map(|c| c.seat)
            .collect();
        assert_eq!(seats, ["pit-1-1"]);
    }
}
