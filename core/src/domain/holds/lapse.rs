//! A hold's lapse, decided from its row and its seats' claims: pure, like releasing one. The
//! holds worker reads them when the claims should have expired and announces what this says.

use super::{Hold, HoldState};
use crate::domain::seats::Claim;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LapseDecision {
    /// Bought or released first (its seats went another way, announced by whoever did it), or
    /// bought as it lapsed: nothing to announce.
    Over,
    /// A claim of it is still there: the store has not expired it yet; look again shortly.
    NotYet,
    /// These seats came free from it (possibly none: all taken by other holds since, which
    /// announced them held).
    Lapsed(Vec<String>),
}

/// What `hold`'s lapse is, given each of its seats with the claim on it now.
pub fn decide_lapse(hold: &Hold, claims: &[(String, Option<Claim>)]) -> LapseDecision {
    if !matches!(hold.state, HoldState::Active | HoldState::Purchasing { .. }) {
        return LapseDecision::Over;
    }
    let mut free = Vec::new();
    for (seat, claim) in claims {
        match claim {
            Some(Claim::Held { hold_id }) if *hold_id == hold.id => return LapseDecision::NotYet,
            Some(Claim::Sold { hold_id, .. }) if *hold_id == hold.id => return LapseDecision::Over,
            None => free.push(seat.clone()),
            // Taken by another hold since it came free: held, not free.
            Some(_) => {}
        }
    }
    LapseDecision::Lapsed(free)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::holds::example as hold;

    fn held(by: &str) -> Option<Claim> {
        Some(Claim::Held { hold_id: by.into() })
    }

    #[test]
    fn only_seats_no_one_claims_lapse_and_only_from_a_standing_hold() {
        let h = hold(HoldState::Active, 100);
        let claims = |c: Vec<Option<Claim>>| -> Vec<(String, Option<Claim>)> {
            c.into_iter()
                .enumerate()
                .map(|(i, c)| (format!("a-1-{}", i + 1), c))
                .collect()
        };
        assert_eq!(
            decide_lapse(&h, &claims(vec![None, held("other"), None])),
            LapseDecision::Lapsed(vec!["a-1-1".into(), "a-1-3".into()])
        );
        assert_eq!(
            decide_lapse(&h, &claims(vec![None, held(&h.id)])),
            LapseDecision::NotYet
        );
        let sold = Some(Claim::Sold {
            order_id: "o1".into(),
            hold_id: h.id.clone(),
        });
        assert_eq!(
            decide_lapse(&h, &claims(vec![None, sold])),
            LapseDecision::Over
        );
        for over in [
            HoldState::Released,
            HoldState::Purchased {
                order_id: "o1".into(),
            },
        ] {
            assert_eq!(
                decide_lapse(&hold(over, 100), &claims(vec![None])),
                LapseDecision::Over
            );
        }
    }
}
