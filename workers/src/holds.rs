//! The holds worker: claims seats for holds and releases them.
//!
//! Each seat is one row of `seat_claims`; a hold claims its seats with insert-if-absent carrying
//! the hold's TTL, one conditional batch per section (atomic inside the partition). If any
//! section refuses, the sections already claimed are released, so a hold gets all its seats or
//! none. Commands of a batch are decided concurrently: the store's group commit turns them into
//! one write transaction, and its conditions decide every race.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use mercato_core::bus::Record;
use mercato_core::clock::now_ms;
use mercato_core::codec::{decode, encode};
use mercato_core::domain::commands::{
    CommandResult, HoldCommand, Outcome, SeatChange, SeatChangeKind,
};
use mercato_core::domain::holds::{self, Hold, HoldState, HoldStatus};
use mercato_core::domain::refusal::Refusal;
use mercato_core::domain::seats::{by_section, claims_partition, Claim, SeatId};
use mercato_core::names::{tables, topics};
use mercato_core::repo::{self, RepoError, RepoResult};
use mercato_core::store::{Store, Write};

use crate::runtime::{BatchHandler, Emit};

/// How claiming one section went.
enum Claimed {
    All(Vec<(String, u64)>),
    /// Seats held by others.
    Taken(Vec<String>),
    /// The hold already exists: this command is a replay.
    Replayed(Hold),
}

pub struct HoldsWorker {
    store: Arc<dyn Store>,
}

impl HoldsWorker {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn decide(&self, record: &Record) -> RepoResult<Vec<Emit>> {
        let command: HoldCommand = match decode(&record.value) {
            Ok(c) => c,
            Err(e) => {
                return Ok(vec![Emit::dead_letter(
                    record,
                    topics::HOLDS,
                    &e.to_string(),
                )])
            }
        };
        let (outcome, change) = match &command {
            HoldCommand::Place {
                hold_id,
                user_id,
                event_id,
                seat_ids,
                ttl_ms,
                ..
            } => {
                self.place(
                    hold_id,
                    user_id,
                    event_id,
                    seat_ids,
                    Duration::from_millis(*ttl_ms),
                )
                .await?
            }
            HoldCommand::Release {
                hold_id, user_id, ..
            } => self.release(hold_id, user_id).await?,
        };
        let command_id = command.command_id().to_owned();
        let mut emits = Vec::with_capacity(2);
        if let Some(change) = change {
            emits.push(Emit::new(
                topics::SEAT_CHANGES,
                change.event_id.clone(),
                &change,
            ));
        }
        let result = CommandResult {
            command_id: command_id.clone(),
            outcome,
        };
        emits.push(Emit::new(topics::RESULTS, command_id, &result));
        Ok(emits)
    }

    async fn place(
        &self,
        hold_id: &str,
        user_id: &str,
        event_id: &str,
        seat_ids: &[String],
        ttl: Duration,
    ) -> RepoResult<(Outcome, Option<SeatChange>)> {
        // The gateway checked the list against the event; a command from anywhere else is
        // checked here again, so no seat is claimed (or later priced and ticketed) twice.
        let seats =
            holds::requested_seats(seat_ids, holds::MAX_SEATS, |_| true).unwrap_or_default();
        let located = holds::locate(hold_id);
        let primary = seats.first().map(|s| s.section.clone()).unwrap_or_default();
        let Some((primary_partition, hold_key)) = located
            .filter(|(p, _)| !seats.is_empty() && *p == claims_partition(event_id, &primary))
        else {
            return Ok((Outcome::Refused(Refusal::InvalidSeatIds), None));
        };
        let claim = encode(&Claim::Held {
            hold_id: hold_id.to_owned(),
        });
        let groups = by_section(&seats);
        let mut claimed: Vec<(String, Vec<(String, u64)>)> = Vec::new();
        // Other sections first; the hold row is written last, with the first section's seats.
        for (section, group) in groups.iter().filter(|(s, _)| **s != primary) {
            let partition = claims_partition(event_id, section);
            match self
                .claim_section(&partition, group, &claim, hold_id, ttl, None)
                .await?
            {
                Claimed::All(rows) => claimed.push((partition, rows)),
                Claimed::Taken(taken) => {
                    self.release_claims(&claimed).await?;
                    return Ok((Outcome::SeatsUnavailable { seat_ids: taken }, None));
                }
                Claimed::Replayed(hold) => return Ok((Outcome::HoldPlaced(hold), None)),
            }
        }
        let hold = Hold {
            id: hold_id.to_owned(),
            user_id: user_id.to_owned(),
            event_id: event_id.to_owned(),
            seat_ids: seat_ids.to_vec(),
            created_ms: now_ms(),
            // The claims' own expiry (set by the store) is a moment later: the hold never shows
            // active while its seats are already free.
            expires_at_ms: now_ms() + ttl.as_millis() as u64,
            state: HoldState::Active,
        };
        let group = groups.get(&primary).map(Vec::as_slice).unwrap_or_default();
        let row = (hold_key.as_str(), &hold);
        match self
            .claim_section(&primary_partition, group, &claim, hold_id, ttl, Some(row))
            .await?
        {
            Claimed::All(_) => {
                let change = SeatChange {
                    event_id: event_id.to_owned(),
                    seat_ids: seat_ids.to_vec(),
                    change: SeatChangeKind::Held {
                        expires_at_ms: hold.expires_at_ms,
                    },
                };
                Ok((Outcome::HoldPlaced(hold), Some(change)))
            }
            // A redelivered command finds its hold already written: answer as the first time.
            Claimed::Replayed(existing) => Ok((Outcome::HoldPlaced(existing), None)),
            Claimed::Taken(taken) => {
                self.release_claims(&claimed).await?;
                Ok((Outcome::SeatsUnavailable { seat_ids: taken }, None))
            }
        }
    }

    /// Claims one section's seats in one conditional batch, with the hold's own row when this is
    /// its first section. Seats this hold already claimed (a replay after a crash) count as
    /// claimed.
    async fn claim_section(
        &self,
        partition: &str,
        seats: &[SeatId],
        claim: &[u8],
        hold_id: &str,
        ttl: Duration,
        hold_row: Option<(&str, &Hold)>,
    ) -> RepoResult<Claimed> {
        let mut wanted: Vec<String> = seats.iter().map(ToString::to_string).collect();
        let mut rows: Vec<(String, u64)> = Vec::new();
        for _attempt in 0..3 {
            let mut writes = Vec::with_capacity(wanted.len() + 1);
            if let Some((key, hold)) = hold_row {
                writes.push(Write::InsertIfAbsent {
                    clustering: key.to_owned(),
                    value: encode(hold),
                    ttl: Some(holds::ROW_TTL),
                });
            }
            writes.extend(wanted.iter().map(|s| Write::InsertIfAbsent {
                clustering: s.clone(),
                value: claim.to_vec(),
                ttl: Some(ttl),
            }));
            let outcome = self
                .store
                .batch(tables::SEAT_CLAIMS, partition, writes)
                .await?;
            if outcome.applied {
                let skip = usize::from(hold_row.is_some());
                rows.extend(
                    outcome
                        .rows
                        .into_iter()
                        .skip(skip)
                        .flatten()
                        .map(|r| (r.clustering, r.version)),
                );
                return Ok(Claimed::All(rows));
            }
            let mut current = outcome.rows.into_iter();
            if hold_row.is_some() {
                if let Some(existing) = current.next().flatten() {
                    return Ok(Claimed::Replayed(
                        repo::decode_row::<Hold>(tables::SEAT_CLAIMS, existing)?.value,
                    ));
                }
            }
            let mut taken = Vec::new();
            let mut mine = Vec::new();
            for row in current.flatten() {
                let holder = repo::decode_row::<Claim>(tables::SEAT_CLAIMS, row.clone())?;
                if holder.value.hold_id() == hold_id {
                    mine.push(row);
                } else {
                    taken.push(row.clustering);
                }
            }
            if !taken.is_empty() {
                // Give back what a replay of this same hold had claimed in this section.
                for row in &mine {
                    self.store
                        .delete_if_version(
                            tables::SEAT_CLAIMS,
                            partition,
                            &row.clustering,
                            row.version,
                        )
                        .await?;
                }
                return Ok(Claimed::Taken(taken));
            }
            for row in mine {
                wanted.retain(|s| *s != row.clustering);
                rows.push((row.clustering, row.version));
            }
            if wanted.is_empty() && hold_row.is_none() {
                return Ok(Claimed::All(rows));
            }
        }
        // Seats kept changing under us (claims expiring mid-replay): report them as taken
        // rather than loop; the shopper can try again.
        Ok(Claimed::Taken(wanted))
    }

    async fn release_claims(&self, claimed: &[(String, Vec<(String, u64)>)]) -> RepoResult<()> {
        for (partition, rows) in claimed {
            let writes = rows
                .iter()
                .map(|(seat, version)| Write::DeleteIfVersion {
                    clustering: seat.clone(),
                    expected: *version,
                })
                .collect();
            let outcome = self
                .store
                .batch(tables::SEAT_CLAIMS, partition, writes)
                .await?;
            if !outcome.applied {
                // Some claim changed meanwhile (it expired): delete the others one by one.
                for (seat, version) in rows {
                    self.store
                        .delete_if_version(tables::SEAT_CLAIMS, partition, seat, *version)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn release(
        &self,
        hold_id: &str,
        user_id: &str,
    ) -> RepoResult<(Outcome, Option<SeatChange>)> {
        for _attempt in 0..5 {
            let Some(hold) = repo::load_hold(&*self.store, hold_id).await? else {
                return Ok((Outcome::Refused(Refusal::HoldNotFound), None));
            };
            if hold.value.user_id != user_id {
                return Ok((Outcome::Refused(Refusal::HoldNotFound), None));
            }
            match hold.value.status(now_ms()) {
                HoldStatus::Released => return Ok((Outcome::HoldReleased, None)),
                HoldStatus::Purchased => {
                    return Ok((Outcome::Refused(Refusal::HoldPurchased), None))
                }
                HoldStatus::Purchasing => {
                    return Ok((Outcome::Refused(Refusal::HoldBeingPurchased), None))
                }
                HoldStatus::Active | HoldStatus::Expired => {}
            }
            let mut released = hold.value.clone();
            released.state = HoldState::Released;
            let applied = repo::cas_hold(&*self.store, &released, hold.version).await?;
            if applied.is_none() {
                continue;
            }
            self.delete_own_claims(&released).await?;
            let change = SeatChange {
                event_id: released.event_id.clone(),
                seat_ids: released.seat_ids.clone(),
                change: SeatChangeKind::Released,
            };
            return Ok((Outcome::HoldReleased, Some(change)));
        }
        Ok((Outcome::Refused(Refusal::HoldContended), None))
    }

    /// Deletes the claims that still belong to this hold; seats that lapsed and were claimed by
    /// someone else are left alone.
    async fn delete_own_claims(&self, hold: &Hold) -> RepoResult<()> {
        for (section, group) in by_section(&hold.seats()) {
            let partition = claims_partition(&hold.event_id, &section);
            for seat in group {
                let key = seat.to_string();
                let claim =
                    repo::get::<Claim>(&*self.store, tables::SEAT_CLAIMS, &partition, &key).await?;
                if let Some(c) = claim {
                    if matches!(&c.value, Claim::Held { hold_id } if *hold_id == hold.id) {
                        self.store
                            .delete_if_version(tables::SEAT_CLAIMS, &partition, &key, c.version)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BatchHandler for HoldsWorker {
    async fn handle(&self, _topic: &str, records: &[Record]) -> RepoResult<Vec<Emit>> {
        // Decided concurrently: the store serializes conflicting claims and commits them as one
        // group. Any store error fails the whole batch, which is then replayed.
        let decided = join_all(records.iter().map(|r| self.decide(r))).await;
        let mut emits = Vec::with_capacity(records.len() * 2);
        for d in decided {
            emits.extend(d?);
        }
        Ok(emits)
    }
    fn poisoned(&self, record: &Record, error: &RepoError) -> Vec<Emit> {
        decode::<HoldCommand>(&record.value)
            .ok()
            .map(|c| c.command_id().to_owned())
            .map(|id| crate::runtime::poisoned_result(&id, error))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mercato_core::store::EmbeddedStore;

    use super::*;

    fn place(hold_id: &str, seat_ids: &[&str]) -> Record {
        let command = HoldCommand::Place {
            command_id: format!("cmd-{hold_id}"),
            hold_id: hold_id.to_owned(),
            user_id: "ada".into(),
            event_id: "gig".into(),
            seat_ids: seat_ids.iter().map(|s| s.to_string()).collect(),
            ttl_ms: 60_000,
        };
        Record {
            partition: 0,
            offset: 0,
            timestamp_ms: 0,
            key: b"gig/pit".to_vec(),
            value: encode(&command),
        }
    }

    fn outcome(emits: &[Emit]) -> Outcome {
        let result = emits
            .iter()
            .find(|e| e.topic == topics::RESULTS)
            .expect("every command gets a result");
        decode::<CommandResult>(&result.value).unwrap().outcome
    }

    /// A command that reaches the worker without the gateway's check (an old gateway, a replay
    /// of an old record) and names one seat in several spellings claims nothing.
    #[tokio::test]
    async fn one_seat_in_two_spellings_is_refused_by_the_worker() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
        let worker = HoldsWorker::new(Arc::clone(&store));
        for seats in [
            &["pit-1-1", "pit-01-1", "pit-1-01"][..],
            &["pit-1-1", "pit-1-1"][..],
        ] {
            let emits = worker
                .handle(topics::HOLDS, &[place("hold-gig.pit.abc", seats)])
                .await
                .unwrap();
            assert!(
                matches!(&outcome(&emits), Outcome::Refused(Refusal::InvalidSeatIds)),
                "{seats:?}: {:?}",
                outcome(&emits)
            );
            let claims = store
                .scan(tables::SEAT_CLAIMS, "gig/pit", None, 10)
                .await
                .unwrap();
            assert!(
                claims.rows.is_empty(),
                "{seats:?} claimed {:?}",
                claims.rows
            );
        }
        let emits = worker
            .handle(
                topics::HOLDS,
                &[place("hold-gig.pit.abd", &["pit-1-1", "pit-1-2"])],
            )
            .await
            .unwrap();
        match outcome(&emits) {
            Outcome::HoldPlaced(hold) => assert_eq!(hold.seat_ids, ["pit-1-1", "pit-1-2"]),
            other => panic!("a canonical hold is placed: {other:?}"),
        }
    }
}
