//! Releasing a hold by hand, decided from its row (as a checkout is given up, by
//! [`crate::domain::purchase::withdraw`]): pure, like placing one.

use super::{Hold, SeatHolder};
use crate::domain::purchase::{withdraw, Withdraw};
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

/// What releasing `hold` (its row and version, if it exists) for `user_id` does; an expired
/// hold is released all the same.
pub fn decide_release(hold: Option<(&Hold, u64)>, user_id: &str) -> ReleaseDecision {
    let Some((hold, expected)) = hold else {
        return ReleaseDecision::Refuse(Refusal::HoldNotFound);
    };
    match withdraw(Some(hold), user_id) {
        Withdraw::Refuse(refusal) => ReleaseDecision::Refuse(refusal),
        Withdraw::Already => ReleaseDecision::AlreadyReleased,
        Withdraw::Write(released) => ReleaseDecision::Release { released, expected },
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
    use crate::domain::holds::{example as hold, HoldState};

    #[test]
    fn only_its_owner_releases_a_hold_not_yet_bought() {
        let active = hold(HoldState::Active, 100);
        assert_eq!(
            decide_release(None, "ada"),
            ReleaseDecision::Refuse(Refusal::HoldNotFound)
        );
        assert_eq!(
            decide_release(Some((&active, 7)), "bob"),
            ReleaseDecision::Refuse(Refusal::HoldNotFound),
            "another user's hold is not found, not forbidden"
        );
        assert_eq!(
            decide_release(Some((&active, 7)), "ada"),
            ReleaseDecision::Release {
                released: hold(HoldState::Released, 100),
                expected: 7
            },
            "active or expired alike"
        );
        let order = || "o1".to_owned();
        assert_eq!(
            decide_release(Some((&hold(HoldState::Released, 100), 7)), "ada"),
            ReleaseDecision::AlreadyReleased
        );
        assert_eq!(
            decide_release(
                Some((&hold(HoldState::Purchasing { order_id: order() }, 100), 7)),
                "ada"
            ),
            ReleaseDecision::Refuse(Refusal::HoldBeingPurchased)
        );
        assert_eq!(
            decide_release(
                Some((&hold(HoldState::Purchased { order_id: order() }, 100), 7)),
                "ada"
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
