//! Selling a hold's seats to the order that paid for it, decided per section from the claims:
//! pure, like placing and releasing.

use super::{ClaimedSeat, Hold, SeatHolder};
use crate::domain::seats::Claim;

/// One section's seats of a hold, sold to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSale {
    /// Claims already sold to the order (a replay).
    pub already_sold: Vec<ClaimedSeat>,
    /// Claims to change, and what to.
    pub to_sell: Vec<(ClaimedSeat, Claim)>,
}

/// How one section's seats of `hold` become sold to `order_id`, given who holds each; `None`
/// if any seat is no longer this hold's.
pub fn sale_of(hold: &Hold, order_id: &str, holders: &[Option<SeatHolder>]) -> Option<SectionSale> {
    let sold = Claim::Sold {
        order_id: order_id.to_owned(),
        hold_id: hold.id.clone(),
    };
    let mut done = Vec::new();
    let mut changes = Vec::new();
    for holder in holders {
        match holder {
            Some(h) if h.claim == sold => done.push(h.seat.clone()),
            Some(h) if matches!(&h.claim, Claim::Held { hold_id } if *hold_id == hold.id) => {
                changes.push((h.seat.clone(), sold.clone()))
            }
            _ => return None,
        }
    }
    Some(SectionSale {
        already_sold: done,
        to_sell: changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_are_sold_only_while_every_one_is_still_the_holds() {
        let hold = Hold {
            id: "hold-gig.pit.a".into(),
            user_id: "ada".into(),
            event_id: "gig".into(),
            seat_ids: vec!["pit-1-1".into(), "pit-1-2".into()],
            created_ms: 0,
            expires_at_ms: 1,
            state: super::super::HoldState::Active,
        };
        let at = |seat: &str, claim: Claim| {
            Some(SeatHolder {
                seat: ClaimedSeat {
                    seat: seat.into(),
                    version: 1,
                },
                claim,
            })
        };
        let held = Claim::Held {
            hold_id: hold.id.clone(),
        };
        let sold = Claim::Sold {
            order_id: "o1".into(),
            hold_id: hold.id.clone(),
        };
        let SectionSale {
            already_sold: done,
            to_sell: changes,
        } = sale_of(
            &hold,
            "o1",
            &[at("pit-1-1", sold.clone()), at("pit-1-2", held.clone())],
        )
        .unwrap();
        assert_eq!(done.len(), 1, "a replay finds one seat sold already");
        assert_eq!(
            changes,
            vec![(done[0].clone().with_seat("pit-1-2"), sold.clone())]
        );
        let lapsed = Claim::Held {
            hold_id: "hold-gig.pit.b".into(),
        };
        assert_eq!(
            sale_of(
                &hold,
                "o1",
                &[at("pit-1-1", held.clone()), at("pit-1-2", lapsed)]
            ),
            None
        );
        assert_eq!(sale_of(&hold, "o1", &[at("pit-1-1", held), None]), None);
        let other_order = Claim::Sold {
            order_id: "o2".into(),
            hold_id: hold.id.clone(),
        };
        assert_eq!(sale_of(&hold, "o1", &[at("pit-1-1", other_order)]), None);
    }

    impl ClaimedSeat {
        fn with_seat(mut self, seat: &str) -> Self {
            self.seat = seat.into();
            self
        }
    }
}
