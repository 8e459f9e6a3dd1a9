//! The placement machine against a model of `seat_claims`: each section a map of seat ->
//! (hold, version), a batch applied all or nothing, as the store's conditions do.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::domain::holds::HoldState;
use crate::domain::holds::SeatHolder;
use crate::domain::seats::Claim;

const HOLD: &str = "hold-gig.a.me";
const TTL: Duration = Duration::from_secs(60);

fn spec() -> EventSpec {
    serde_json::from_value(serde_json::json!({
        "title": "Gig",
        "venue": {"name": "Hall", "city": "Town", "lat": 1.0, "lon": 2.0},
        "startsAt": "2099-01-01T20:00:00Z",
        "onSaleAt": "2020-01-01T10:00:00Z",
        "maxSeatsPerHold": 20,
        "tiers": [{"id": "std", "name": "Standard", "price": {"amount": 100, "currency": "EUR"}}],
        "sections": [
            {"id": "a", "tier": "std", "rows": 1, "seatsPerRow": 6},
            {"id": "b", "tier": "std", "rows": 1, "seatsPerRow": 6},
            {"id": "c", "tier": "std", "rows": 1, "seatsPerRow": 6}
        ]
    }))
    .unwrap()
}

fn now() -> DateTime<Utc> {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

/// `seat_claims` as the store keeps it.
#[derive(Default, Clone, Debug)]
struct Model {
    /// section -> seat -> (holder, version)
    claims: BTreeMap<String, BTreeMap<String, (String, u64)>>,
    holds: BTreeMap<String, Hold>,
    version: u64,
}

impl Model {
    fn holder(&self, section: &str, seat: &str) -> Option<&str> {
        self.claims
            .get(section)
            .and_then(|s| s.get(seat))
            .map(|(h, _)| h.as_str())
    }

    /// One conditional batch: insert-if-absent of every seat (and the hold's row).
    fn claim(&mut self, section: &str, seats: &[String], hold: Option<&Hold>) -> SectionClaimed {
        let rows = self.claims.entry(section.to_owned()).or_default();
        let existing_hold = hold.and_then(|h| self.holds.get(&h.id).cloned());
        let holders: Vec<SeatHolder> = seats
            .iter()
            .filter_map(|s| {
                rows.get(s).map(|(h, v)| SeatHolder {
                    seat: ClaimedSeat {
                        seat: s.clone(),
                        version: *v,
                    },
                    claim: Claim::Held { hold_id: h.clone() },
                })
            })
            .collect();
        if existing_hold.is_some() || !holders.is_empty() {
            return SectionClaimed::Refused {
                hold: existing_hold,
                holders,
            };
        }
        let mut written = Vec::new();
        for s in seats {
            self.version += 1;
            rows.insert(s.clone(), (HOLD.to_owned(), self.version));
            written.push(ClaimedSeat {
                seat: s.clone(),
                version: self.version,
            });
        }
        if let Some(h) = hold {
            self.holds.insert(h.id.clone(), h.clone());
        }
        SectionClaimed::Applied(written)
    }

    fn release(&mut self, section: &str, claims: &[ClaimedSeat]) {
        let rows = self.claims.entry(section.to_owned()).or_default();
        for c in claims {
            if rows.get(&c.seat).is_some_and(|(_, v)| *v == c.version) {
                rows.remove(&c.seat);
            }
        }
    }

    /// Drives a placement to its end as the holds worker does.
    fn place(&mut self, seat_ids: &[String]) -> Result<Placed, Refusal> {
        let (mut placement, mut step) =
            Placement::start(HOLD, "ada", &spec(), "gig", seat_ids, TTL, now())?;
        for _ in 0..100 {
            match step {
                Step::Claim {
                    section,
                    seats,
                    with_hold,
                } => {
                    let hold = with_hold.then(|| placement.hold().clone());
                    step = placement.claimed(self.claim(&section, &seats, hold.as_ref()));
                }
                Step::Done(placed) => {
                    for (section, claims) in &placed.release {
                        self.release(section, claims);
                    }
                    return Ok(placed);
                }
            }
        }
        panic!("a placement ends within 100 steps");
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_free_hold_claims_every_section_with_its_row_in_the_first_seats_section() {
    let mut model = Model::default();
    let placed = model.place(&ids(&["a-1-2", "c-1-1", "b-1-3"])).unwrap();
    let Outcome::HoldPlaced(hold) = &placed.outcome else {
        panic!("{placed:?}")
    };
    assert_eq!(hold.seat_ids, ["a-1-2", "c-1-1", "b-1-3"]);
    assert_eq!(hold.expires_at_ms, now().timestamp_millis() as u64 + 60_000);
    assert!(placed.release.is_empty());
    assert_eq!(
        placed.change.map(|c| c.seat_ids),
        Some(ids(&["a-1-2", "c-1-1", "b-1-3"]))
    );
    for (section, seat) in [("a", "a-1-2"), ("b", "b-1-3"), ("c", "c-1-1")] {
        assert_eq!(model.holder(section, seat), Some(HOLD));
    }
    assert!(model.holds.contains_key(HOLD));
}

#[test]
fn a_taken_seat_gives_back_the_sections_already_claimed() {
    let mut model = Model::default();
    model
        .claims
        .entry("c".into())
        .or_default()
        .insert("c-1-1".into(), ("hold-gig.c.other".into(), 1));
    model.version = 1;
    let placed = model.place(&ids(&["a-1-1", "b-1-1", "c-1-1"])).unwrap();
    assert_eq!(
        placed.outcome,
        Outcome::SeatsUnavailable {
            seat_ids: ids(&["c-1-1"])
        }
    );
    assert_eq!(model.holder("b", "b-1-1"), None, "section b given back");
    assert_eq!(model.holder("a", "a-1-1"), None);
    assert!(!model.holds.contains_key(HOLD));
}

#[test]
fn a_redelivered_command_is_answered_with_the_hold_it_placed() {
    let mut model = Model::default();
    let first = model.place(&ids(&["a-1-1", "b-1-1"])).unwrap();
    let again = model.place(&ids(&["a-1-1", "b-1-1"])).unwrap();
    assert_eq!(again.outcome, first.outcome);
    // Said again: the first change may never have been sent (a batch handled twice).
    assert!(first.change.is_some());
    assert_eq!(
        again.change, first.change,
        "the seats are heard as held again"
    );
    assert!(again.release.is_empty());
    assert_eq!(model.holder("b", "b-1-1"), Some(HOLD));
    // A hold released since is not said to be held again.
    if let Some(hold) = model.holds.get_mut(HOLD) {
        hold.state = HoldState::Released;
    }
    let late = model.place(&ids(&["a-1-1", "b-1-1"])).unwrap();
    assert_eq!(late.change, None);
}

#[test]
fn a_command_the_gateway_would_refuse_is_refused_here_too() {
    let mut model = Model::default();
    for (seats, refusal) in [
        (ids(&["a-1-1", "a-01-1"]), Refusal::InvalidSeatIds),
        (ids(&["a-1-1", "a-1-1"]), Refusal::InvalidSeatIds),
        (ids(&["a-1-9"]), Refusal::InvalidSeatIds),
        (ids(&[]), Refusal::InvalidSeatIds),
        // The hold id names section a: its first seat must be in a.
        (ids(&["b-1-1"]), Refusal::InvalidSeatIds),
    ] {
        assert_eq!(model.place(&seats).unwrap_err(), refusal, "{seats:?}");
    }
    let early: DateTime<Utc> = "2019-01-01T00:00:00Z".parse().unwrap();
    let late: DateTime<Utc> = "2099-01-02T00:00:00Z".parse().unwrap();
    let start =
        |at| Placement::start(HOLD, "ada", &spec(), "gig", &ids(&["a-1-1"]), TTL, at).map(|_| ());
    assert_eq!(start(early), Err(Refusal::NotOnSale));
    assert_eq!(start(late), Err(Refusal::SalesClosed));
    assert!(model.claims.values().all(BTreeMap::is_empty));
}

/// A seat of the event: section a, b or c, seat 1..=6.
fn seat() -> impl Strategy<Value = (usize, u32)> {
    (0usize..3, 1u32..=6)
}

fn seat_name((section, n): (usize, u32)) -> (String, String) {
    let section = ["a", "b", "c"][section].to_owned();
    let id = format!("{section}-1-{n}");
    (section, id)
}

proptest! {
    /// Whatever the table holds beforehand (other holds' claims, this hold's own claims left
    /// by a crash), a placement ends with every seat this hold's, or with the seats another
    /// hold has named and nothing this run claimed left behind.
    #[test]
    fn a_hold_gets_all_its_seats_or_none(
        wanted in proptest::collection::btree_set(seat(), 1..8),
        others in proptest::collection::btree_set(seat(), 0..6),
        leftovers in proptest::collection::btree_set(seat(), 0..4),
    ) {
        let mut model = Model::default();
        for s in &others {
            let (section, id) = seat_name(*s);
            model.version += 1;
            let v = model.version;
            model.claims.entry(section).or_default().insert(id, ("hold-gig.a.other".into(), v));
        }
        for s in leftovers.difference(&others) {
            let (section, id) = seat_name(*s);
            model.version += 1;
            let v = model.version;
            model.claims.entry(section).or_default().insert(id, (HOLD.to_owned(), v));
        }
        let before = model.clone();
        // The hold is kept in section a: its first seat is in a.
        let mut seats: Vec<String> = wanted.iter().map(|s| seat_name(*s).1).collect();
        if !seats[0].starts_with("a-") {
            seats.insert(0, "a-1-6".into());
            seats.dedup();
        }
        let unique: std::collections::BTreeSet<&String> = seats.iter().collect();
        prop_assume!(unique.len() == seats.len());
        let placed = model.place(&seats).unwrap();
        match &placed.outcome {
            Outcome::HoldPlaced(hold) => {
                for id in &seats {
                    let section = &id[..1];
                    prop_assert_eq!(model.holder(section, id), Some(HOLD));
                }
                prop_assert_eq!(&hold.seat_ids, &seats);
                prop_assert!(model.holds.contains_key(HOLD));
                for id in &seats {
                    let section = &id[..1];
                    prop_assert_ne!(before.holder(section, id), Some("hold-gig.a.other"));
                }
            }
            Outcome::SeatsUnavailable { seat_ids } => {
                prop_assert!(!seat_ids.is_empty());
                for id in seat_ids {
                    prop_assert_eq!(before.holder(&id[..1], id), Some("hold-gig.a.other"));
                }
                prop_assert!(!model.holds.contains_key(HOLD));
                // Nothing this run claimed is left: this hold's claims now are at most those a
                // crash left before.
                for (section, rows) in &model.claims {
                    for (id, (holder, _)) in rows {
                        if holder == HOLD {
                            prop_assert_eq!(before.holder(section, id), Some(HOLD));
                        }
                    }
                }
            }
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }
}
