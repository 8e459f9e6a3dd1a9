//! The cap on one shopper's seats in live holds at one event (`spec.maxSeatsPerUser`), so a
//! script with one account cannot hold a stadium. Decided here, pure; the holds worker keeps
//! the count in one row per (event, shopper) and changes it by compare-and-set, so holds of
//! the same shopper placed at once through different sections, partitions or processes are
//! counted one after the other, and never past the cap.
//!
//! The row lists the holds counted with their seats and expiry. A hold stops counting when it
//! expires, is released or is bought: expiry is read off the row itself; release and sale are
//! read off the hold's own row, and only when the cap would otherwise refuse (most shoppers are
//! far below it, and those reads cost the on-sale path nothing then). A hold is counted before
//! its seats are claimed, and uncounted when its placement fails; a worker that dies between
//! the two leaves a count that lapses with the hold it would have been.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Hold, HoldState};

/// The holds counted against one shopper's cap at one event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatQuota {
    pub holds: Vec<CountedHold>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountedHold {
    pub hold_id: String,
    pub seats: u32,
    pub expires_at_ms: u64,
}

crate::first_layout!(SeatQuota);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaDecision {
    /// The hold is counted already (a redelivered command): place it.
    Counted,
    /// Write this row in place of the one read, then place the hold.
    Count(SeatQuota),
    /// Placing the hold would take the shopper past the cap.
    Refuse { held: u32, cap: u32 },
}

/// Whether a counted hold still counts, given its own row when it was read: a hold with no
/// row yet is being placed, and counts until it would have expired.
pub fn still_counts(row: Option<&Hold>) -> bool {
    match row {
        None => true,
        Some(h) => matches!(h.state, HoldState::Active | HoldState::Purchasing { .. }),
    }
}

impl SeatQuota {
    /// Holds of the row that have not expired at `now_ms`: those whose own rows are worth
    /// reading when the cap would refuse.
    pub fn unexpired(&self, now_ms: u64) -> Vec<String> {
        self.holds
            .iter()
            .filter(|c| c.expires_at_ms > now_ms)
            .map(|c| c.hold_id.clone())
            .collect()
    }
}

/// Whether `hold` may be placed for its shopper under `cap`, counting the row read
/// (`current`) less the holds known to have `ended` (released or bought) and those expired at
/// `now_ms`. The row written keeps only holds that still count.
pub fn decide_count(
    current: Option<&SeatQuota>,
    ended: &HashSet<String>,
    hold: &Hold,
    cap: u32,
    now_ms: u64,
) -> QuotaDecision {
    let empty = SeatQuota::default();
    let current = current.unwrap_or(&empty);
    if current.holds.iter().any(|c| c.hold_id == hold.id) {
        return QuotaDecision::Counted;
    }
    let mut kept: Vec<CountedHold> = current
        .holds
        .iter()
        .filter(|c| c.expires_at_ms > now_ms && !ended.contains(&c.hold_id))
        .cloned()
        .collect();
    let held: u32 = kept.iter().map(|c| c.seats).sum();
    let wanted = hold.seat_ids.len() as u32;
    if held.saturating_add(wanted) > cap {
        return QuotaDecision::Refuse { held, cap };
    }
    kept.push(CountedHold {
        hold_id: hold.id.clone(),
        seats: wanted,
        expires_at_ms: hold.expires_at_ms,
    });
    QuotaDecision::Count(SeatQuota { holds: kept })
}

/// The row without `hold_id`, after its placement failed; `None` when it is not counted.
pub fn uncount(current: &SeatQuota, hold_id: &str) -> Option<SeatQuota> {
    let holds: Vec<CountedHold> = current
        .holds
        .iter()
        .filter(|c| c.hold_id != hold_id)
        .cloned()
        .collect();
    (holds.len() != current.holds.len()).then_some(SeatQuota { holds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(id: &str, seats: usize, expires_at_ms: u64) -> Hold {
        Hold {
            id: id.into(),
            user_id: "ada".into(),
            event_id: "gig".into(),
            seat_ids: (1..=seats).map(|n| format!("pit-1-{n}")).collect(),
            created_ms: 0,
            expires_at_ms,
            state: HoldState::Active,
        }
    }

    fn counted(id: &str, seats: u32, expires_at_ms: u64) -> CountedHold {
        CountedHold {
            hold_id: id.into(),
            seats,
            expires_at_ms,
        }
    }

    #[test]
    fn holds_are_counted_up_to_the_cap_and_no_further() {
        let none = HashSet::new();
        let QuotaDecision::Count(row) = decide_count(None, &none, &hold("a", 5, 100), 8, 0) else {
            panic!("the first hold fits");
        };
        assert_eq!(row.holds, [counted("a", 5, 100)]);
        let QuotaDecision::Count(row) = decide_count(Some(&row), &none, &hold("b", 3, 100), 8, 0)
        else {
            panic!("exactly the cap fits");
        };
        assert_eq!(
            decide_count(Some(&row), &none, &hold("c", 1, 100), 8, 0),
            QuotaDecision::Refuse { held: 8, cap: 8 }
        );
    }

    #[test]
    fn a_redelivered_hold_is_not_counted_twice() {
        let row = SeatQuota {
            holds: vec![counted("a", 8, 100)],
        };
        assert_eq!(
            decide_count(Some(&row), &HashSet::new(), &hold("a", 8, 100), 8, 0),
            QuotaDecision::Counted
        );
    }

    #[test]
    fn expired_and_ended_holds_stop_counting_and_leave_the_row() {
        let row = SeatQuota {
            holds: vec![
                counted("lapsed", 4, 50),
                counted("bought", 3, 500),
                counted("live", 2, 500),
            ],
        };
        let ended: HashSet<String> = ["bought".to_string()].into();
        assert_eq!(row.unexpired(100), ["bought", "live"]);
        let QuotaDecision::Count(next) =
            decide_count(Some(&row), &ended, &hold("new", 6, 900), 8, 100)
        else {
            panic!("2 live + 6 fits under 8");
        };
        assert_eq!(
            next.holds,
            [counted("live", 2, 500), counted("new", 6, 900)]
        );
        // The same request without knowing of the sale is refused: the worker reads the
        // counted holds' rows only then, and asks again.
        assert_eq!(
            decide_count(Some(&row), &HashSet::new(), &hold("new", 6, 900), 8, 100),
            QuotaDecision::Refuse { held: 5, cap: 8 }
        );
    }

    #[test]
    fn a_hold_too_big_for_an_empty_quota_is_refused() {
        assert_eq!(
            decide_count(None, &HashSet::new(), &hold("a", 9, 100), 8, 0),
            QuotaDecision::Refuse { held: 0, cap: 8 }
        );
    }

    #[test]
    fn a_failed_placement_is_uncounted_once() {
        let row = SeatQuota {
            holds: vec![counted("a", 2, 100), counted("b", 2, 100)],
        };
        let after = uncount(&row, "a").expect("a is counted");
        assert_eq!(after.holds, [counted("b", 2, 100)]);
        assert_eq!(uncount(&after, "a"), None);
    }

    #[test]
    fn only_released_and_bought_holds_have_ended() {
        let mut h = hold("a", 1, 100);
        assert!(still_counts(None), "a hold being placed counts");
        assert!(still_counts(Some(&h)));
        h.state = HoldState::Purchasing {
            order_id: "o".into(),
        };
        assert!(still_counts(Some(&h)), "its seats are not free yet");
        h.state = HoldState::Purchased {
            order_id: "o".into(),
        };
        assert!(!still_counts(Some(&h)));
        h.state = HoldState::Released;
        assert!(!still_counts(Some(&h)));
    }
}
