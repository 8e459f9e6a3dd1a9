//! Placing a hold, decided step by step: a pure state machine the holds worker drives. Each
//! step names one conditional batch (one section's seats, with the hold's own row in its
//! first section, which goes last); the worker writes it and hands back what the store did,
//! and the machine decides the next step or the answer. Nothing here does I/O, so every race
//! the store can report is a value a test can hand in.
//!
//! A hold gets all its seats or none: when a section is refused, the sections already claimed
//! are given back. Seats this hold claimed before a crash count as claimed, and a hold whose
//! row already exists is a redelivered command, answered as the first time.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mercato_crds::EventSpec;

use super::{
    check_request, parse_id, ClaimedSeat, Hold, HoldState, RequestProblem, SectionClaimed,
};
use crate::domain::commands::{Outcome, SeatChange, SeatChangeKind};
use crate::domain::refusal::Refusal;
use crate::domain::seats::by_section;

/// Tries of one section that find only this hold's own claims in the way (claims lapsing
/// mid-replay) before the seats are reported taken rather than tried forever.
const TRIES_PER_SECTION: usize = 3;

/// The next thing to do for a placement.
// A step lives for one call and is moved once; boxing the answer would cost an allocation
// per hold on the on-sale path instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Claim `seats` of `section` in one conditional batch, writing the hold's row
    /// ([`Placement::hold`]) too when `with_hold`; hand what the store did to
    /// [`Placement::claimed`].
    Claim {
        section: String,
        seats: Vec<String>,
        with_hold: bool,
    },
    /// Give back `release` (each claim only if unchanged), then answer.
    Done(Placed),
}

/// How a placement ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub outcome: Outcome,
    /// What read caches must hear: the seats held, when the hold was placed now.
    pub change: Option<SeatChange>,
    /// Claims to give back before answering: (section, claims).
    pub release: Vec<(String, Vec<ClaimedSeat>)>,
}

pub struct Placement {
    hold: Hold,
    /// Sections still to claim with the seats still wanted in each: every other section
    /// first, the hold's own (where its row goes) last.
    sections: VecDeque<(String, Vec<String>)>,
    /// Seats of the front section found already this hold's.
    mine: Vec<ClaimedSeat>,
    tries: usize,
    /// Sections claimed whole.
    claimed: Vec<(String, Vec<ClaimedSeat>)>,
}

impl Placement {
    /// Checks a place command against its event at `now` and plans its claims: the
    /// placement and its first step, or why it is refused (nothing claimed).
    pub fn start(
        hold_id: &str,
        user_id: &str,
        spec: &EventSpec,
        event_id: &str,
        seat_ids: &[String],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(Placement, Step), Refusal> {
        let seats = check_request(spec, seat_ids, now).map_err(|problem| match problem {
            RequestProblem::Seats(_) => Refusal::InvalidSeatIds,
            RequestProblem::NotOnSale { .. } => Refusal::NotOnSale,
            RequestProblem::SalesClosed => Refusal::SalesClosed,
        })?;
        // The hold's id names the event and its first seat's section: where its row goes.
        let primary = seats[0].section.clone();
        if parse_id(hold_id) != Some((event_id, primary.as_str())) {
            return Err(Refusal::InvalidSeatIds);
        }
        let now_ms = now.timestamp_millis().max(0) as u64;
        let hold = Hold {
            id: hold_id.to_owned(),
            user_id: user_id.to_owned(),
            event_id: event_id.to_owned(),
            seat_ids: seats.iter().map(ToString::to_string).collect(),
            created_ms: now_ms,
            // The claims' own expiry (set by the store) is a moment later: the hold never shows
            // active while its seats are already free.
            expires_at_ms: now_ms + ttl.as_millis() as u64,
            state: HoldState::Active,
        };
        let mut groups = by_section(&seats);
        let own = groups.remove(&primary).unwrap_or_default();
        let mut sections: VecDeque<(String, Vec<String>)> = groups
            .into_iter()
            .map(|(section, group)| (section, group.iter().map(ToString::to_string).collect()))
            .collect();
        sections.push_back((primary, own.iter().map(ToString::to_string).collect()));
        let placement = Placement {
            hold,
            sections,
            mine: Vec::new(),
            tries: 0,
            claimed: Vec::new(),
        };
        let first = placement.next_claim();
        Ok((placement, first))
    }

    fn next_claim(&self) -> Step {
        match self.sections.front() {
            Some((section, seats)) => Step::Claim {
                section: section.clone(),
                seats: seats.clone(),
                with_hold: self.sections.len() == 1,
            },
            None => self.placed(),
        }
    }

    /// The hold being placed: its row, written with its first section's seats.
    pub fn hold(&self) -> &Hold {
        &self.hold
    }

    fn placed(&self) -> Step {
        Step::Done(Placed {
            outcome: Outcome::HoldPlaced(self.hold.clone()),
            change: Some(SeatChange {
                event_id: self.hold.event_id.clone(),
                seat_ids: self.hold.seat_ids.clone(),
                change: SeatChangeKind::Held {
                    expires_at_ms: self.hold.expires_at_ms,
                },
                hold_id: Some(self.hold.id.clone()),
            }),
            release: Vec::new(),
        })
    }

    /// Gives back everything claimed so far and answers `outcome`.
    fn give_up(&mut self, outcome: Outcome) -> Step {
        let mut release = std::mem::take(&mut self.claimed);
        if let Some((section, _)) = self.sections.front() {
            let mine = std::mem::take(&mut self.mine);
            if !mine.is_empty() {
                release.push((section.clone(), mine));
            }
        }
        Step::Done(Placed {
            outcome,
            change: None,
            release,
        })
    }

    /// What the store did with the last [`Step::Claim`]; the next step.
    pub fn claimed(&mut self, result: SectionClaimed) -> Step {
        let with_hold = self.sections.len() == 1;
        let Some((section, wanted)) = self.sections.front_mut() else {
            return self.placed();
        };
        let section = section.clone();
        match result {
            SectionClaimed::Applied(claims) => {
                let mut all = std::mem::take(&mut self.mine);
                all.extend(claims);
                self.claimed.push((section, all));
                self.sections.pop_front();
                self.tries = 0;
                self.next_claim()
            }
            // A redelivered command (or a batch handled again after a failure): the hold is
            // there, with the claims it made then. While it stands, its seats are said to be
            // held again: the first answer's change may never have been sent.
            SectionClaimed::Refused {
                hold: Some(existing),
                ..
            } if with_hold => Step::Done(Placed {
                change: (existing.state == HoldState::Active).then(|| SeatChange {
                    event_id: existing.event_id.clone(),
                    seat_ids: existing.seat_ids.clone(),
                    change: SeatChangeKind::Held {
                        expires_at_ms: existing.expires_at_ms,
                    },
                    hold_id: Some(existing.id.clone()),
                }),
                outcome: Outcome::HoldPlaced(existing),
                release: Vec::new(),
            }),
            SectionClaimed::Refused { holders, .. } => {
                let (mine, taken): (Vec<_>, Vec<_>) = holders
                    .into_iter()
                    .partition(|h| h.claim.hold_id() == self.hold.id);
                wanted.retain(|seat| !mine.iter().any(|m| m.seat.seat == *seat));
                let remaining = wanted.clone();
                self.mine.extend(mine.into_iter().map(|m| m.seat));
                if !taken.is_empty() {
                    let seat_ids = taken.into_iter().map(|h| h.seat.seat).collect();
                    return self.give_up(Outcome::SeatsUnavailable { seat_ids });
                }
                if remaining.is_empty() && !with_hold {
                    return self.claimed(SectionClaimed::Applied(Vec::new()));
                }
                self.tries += 1;
                if self.tries >= TRIES_PER_SECTION {
                    // Seats kept changing under us: report them as taken rather than loop; the
                    // shopper can try again.
                    return self.give_up(Outcome::SeatsUnavailable {
                        seat_ids: remaining,
                    });
                }
                self.next_claim()
            }
        }
    }
}

#[cfg(test)]
mod tests;
