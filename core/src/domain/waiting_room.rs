//! The waiting room's decisions, pure: where a shopper joining now is placed, and how many
//! shoppers the admitter lets in now. The gateway keeps the queue on the Coord port (a ranked
//! set per event) and acts on these decisions.
//!
//! **Order.** A shopper who joins during the pre-queue draws a random number below 2^32; one
//! who joins after the on-sale gets 2^32 plus the count of joins so far. The queue is ordered
//! by that score, so at the on-sale the pre-queue is already in a random order (arriving early,
//! or with a fast connection or a bot, gains nothing) and later joiners follow, first come,
//! first served. Nothing is reshuffled at the opening: the order exists from the first join.
//!
//! **Admission.** A closed loop on the seats left: the admitter keeps as many live admissions
//! (admitted shoppers who have not held seats yet) as the seats left can serve, and never more
//! than `maxActive`. What one admission takes is measured: each shopper who holds seats with a
//! live admission moves the estimate of seats per admission towards the seats they held
//! ([`next_seats_per_admission`]). Before anything is measured the estimate is the most one
//! shopper may hold (`maxSeatsPerUser`, counted as at most [`PRIOR_SEATS_CAP`]), so the first
//! round at the on-sale cannot let in more shoppers than the seats can serve, and the room
//! opens up as the real figure comes in. A shopper who holds seats consumes their admission,
//! which frees room for the next; a hold that lapses puts its seats back, which lets more in.
//!
//! The margin: live admissions times the estimate never exceeds the seats left, except that
//! one shopper is always let in while any seat is left (so a room whose estimate is above the
//! seats left still sells them). Shoppers who take more seats than the estimate can find the
//! seats gone (409 `seats_unavailable`), as can shoppers of an estimate still coming down.
//! When nothing is left to sell the room says why it waits: `sold_out` when every seat is
//! sold, `paused` while seats are only held (they may lapse).

use chrono::{DateTime, Utc};
use mercato_crds::WaitingRoom;
use serde::Serialize;

/// Scores from here on are joins after the on-sale, first come, first served.
pub const AFTER_OPENING: u64 = 1 << 32;

/// Where a room stands by the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the pre-queue opens: nobody may join.
    Closed,
    /// Shoppers join and are placed at random at the on-sale.
    PreQueue,
    /// The on-sale has started: the head of the queue is admitted.
    Open,
}

pub fn phase(room: &WaitingRoom, on_sale_at: DateTime<Utc>, now: DateTime<Utc>) -> Phase {
    if now < room.opens(on_sale_at) {
        Phase::Closed
    } else if now < on_sale_at {
        Phase::PreQueue
    } else {
        Phase::Open
    }
}

/// The score of a shopper joining in `phase`: `draw` is a fresh random number, `joined` the
/// count of joins after the opening, this one included. `None` while the room is closed.
pub fn join_score(phase: Phase, draw: u32, joined: u64) -> Option<u64> {
    match phase {
        Phase::Closed => None,
        Phase::PreQueue => Some(u64::from(draw)),
        Phase::Open => Some(AFTER_OPENING + joined),
    }
}

/// What the admitter sees at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Seats (or places) neither held nor sold.
    pub available: u64,
    /// Seats held now (they may lapse back).
    pub held: u64,
    /// Admitted shoppers who have not held seats yet, their admission still live.
    pub live_admissions: u64,
    pub max_active: u64,
    pub queued: u64,
    /// Seats an admitted shopper goes on to hold, as measured (at least 1).
    pub seats_per_admission: f64,
}

/// The most the estimate of seats per admission starts at, whatever `maxSeatsPerUser` says:
/// a cap of thousands (limits off) must not make the room admit one shopper at a time until
/// the estimate comes down.
pub const PRIOR_SEATS_CAP: u32 = 8;

/// How much each measured admission moves the estimate: about the last ten count.
const SEATS_WEIGHT: f64 = 0.2;

/// The estimate of seats per admission before any is measured: the most one shopper may hold.
pub fn prior_seats_per_admission(max_seats_per_user: u32) -> f64 {
    f64::from(max_seats_per_user.clamp(1, PRIOR_SEATS_CAP))
}

/// The estimate once a shopper has held `seats` with their admission.
pub fn next_seats_per_admission(estimate: f64, seats: u32) -> f64 {
    let estimate = if estimate.is_finite() {
        estimate.max(1.0)
    } else {
        1.0
    };
    estimate + SEATS_WEIGHT * (f64::from(seats.max(1)) - estimate)
}

/// What the admitter is doing once the on-sale has started, as shoppers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomState {
    Admitting,
    /// Nothing is available, but seats are held and may lapse back.
    Paused,
    SoldOut,
}

/// How many shoppers to admit now from the head of the queue, and the room's state.
pub fn admit(seen: Seen) -> (u64, RoomState) {
    if seen.available == 0 {
        let state = if seen.held == 0 {
            RoomState::SoldOut
        } else {
            RoomState::Paused
        };
        return (0, state);
    }
    let per_admission = if seen.seats_per_admission.is_finite() {
        seen.seats_per_admission.max(1.0)
    } else {
        1.0
    };
    // Truncated: shoppers the seats can serve, and always one while a seat is left.
    let served = ((seen.available as f64 / per_admission) as u64).max(1);
    let room = served.min(seen.max_active);
    let admit = room.saturating_sub(seen.live_admissions).min(seen.queued);
    // Seats are left: the room admits as admitted shoppers hold or their admissions lapse.
    (admit, RoomState::Admitting)
}

/// A shopper's estimated wait: those `ahead` of them, at the rate shoppers were admitted
/// lately (`rate_per_sec`); `None` while nobody has been admitted for a while.
pub fn eta_secs(ahead: u64, rate_per_sec: f64) -> Option<u64> {
    (rate_per_sec > 0.0).then(|| (ahead as f64 / rate_per_sec).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> WaitingRoom {
        WaitingRoom {
            enabled: true,
            opens_at: Some("1h".into()),
            admission_window: None,
            max_active: None,
            abandon_after: None,
        }
    }

    #[test]
    fn the_pre_queue_draws_and_later_joiners_queue_in_order() {
        let on_sale: DateTime<Utc> = "2027-01-01T10:00:00Z".parse().expect("a time");
        let at = |t: &str| t.parse::<DateTime<Utc>>().expect("a time");
        assert_eq!(
            phase(&room(), on_sale, at("2027-01-01T08:59:59Z")),
            Phase::Closed
        );
        assert_eq!(
            phase(&room(), on_sale, at("2027-01-01T09:00:00Z")),
            Phase::PreQueue
        );
        assert_eq!(phase(&room(), on_sale, on_sale), Phase::Open);
        assert_eq!(join_score(Phase::Closed, 7, 0), None);
        let drawn = join_score(Phase::PreQueue, u32::MAX, 0).expect("a score");
        let first_after = join_score(Phase::Open, 0, 1).expect("a score");
        let second_after = join_score(Phase::Open, 0, 2).expect("a score");
        assert!(drawn < first_after && first_after < second_after);
        assert!(second_after < 1 << 53, "exact in Redis's doubles");
    }

    #[test]
    fn never_more_live_admissions_than_seats_left_and_says_why_it_waits() {
        let seen = |available, held, live, queued| Seen {
            available,
            held,
            live_admissions: live,
            max_active: 100,
            queued,
            seats_per_admission: 1.0,
        };
        assert_eq!(admit(seen(10, 0, 0, 50)), (10, RoomState::Admitting));
        assert_eq!(admit(seen(10, 0, 4, 50)), (6, RoomState::Admitting));
        assert_eq!(admit(seen(10, 0, 0, 3)), (3, RoomState::Admitting));
        assert_eq!(
            admit(seen(10, 0, 10, 50)),
            (0, RoomState::Admitting),
            "seats left, all admitted for: the next goes in as one holds"
        );
        assert_eq!(
            admit(seen(1000, 0, 30, 5000)),
            (70, RoomState::Admitting),
            "maxActive"
        );
        assert_eq!(
            admit(seen(0, 4, 0, 50)),
            (0, RoomState::Paused),
            "holds may lapse"
        );
        assert_eq!(admit(seen(0, 0, 0, 50)), (0, RoomState::SoldOut));
        assert_eq!(admit(seen(5, 0, 0, 0)), (0, RoomState::Admitting));
        assert_eq!(eta_secs(30, 10.0), Some(3));
        assert_eq!(eta_secs(30, 0.0), None);
    }

    #[test]
    fn admits_as_many_as_the_seats_can_serve_by_the_measured_seats_per_admission() {
        let seen = |available, live, per| Seen {
            available,
            held: 0,
            live_admissions: live,
            max_active: 10_000,
            queued: 50_000,
            seats_per_admission: per,
        };
        assert_eq!(admit(seen(2000, 0, 8.0)).0, 250, "the cautious start");
        assert_eq!(admit(seen(2000, 0, 2.0)).0, 1000);
        assert_eq!(admit(seen(2000, 900, 2.0)).0, 100);
        assert_eq!(admit(seen(2001, 0, 2.0)).0, 1000, "truncated");
        assert_eq!(admit(seen(3, 0, 8.0)).0, 1, "one while a seat is left");
        assert_eq!(admit(seen(3, 1, 8.0)).0, 0);
        assert_eq!(admit(seen(10, 0, 0.2)).0, 10, "never below a seat each");
        assert_eq!(admit(seen(10, 0, f64::NAN)).0, 10);

        assert_eq!(prior_seats_per_admission(10_000), 8.0);
        assert_eq!(prior_seats_per_admission(2), 2.0);
        assert_eq!(prior_seats_per_admission(0), 1.0);
        let mut estimate = prior_seats_per_admission(8);
        for _ in 0..20 {
            estimate = next_seats_per_admission(estimate, 2);
        }
        assert!((estimate - 2.0).abs() < 0.1, "{estimate}");
        assert_eq!(next_seats_per_admission(f64::NAN, 3), 1.4);
    }
}
