//! The holds worker: places and releases holds. It only loads, asks core what to do, writes
//! and emits: every decision is in `mercato_core::domain::holds` (placing is a state machine
//! driven here one conditional batch at a time; releasing is one decision), and every row is
//! read and written through `mercato_core::repo::holds`. Commands of a batch are decided
//! concurrently: the store's group commit turns them into one write transaction, and its
//! conditions decide every race.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::future::join_all;
use mercato_core::bus::Record;
use mercato_core::codec::decode;
use mercato_core::domain::commands::{CommandResult, HoldCommand, Outcome, SeatChangeKind};
use mercato_core::domain::holds::quota::{decide_count, still_counts, uncount, QuotaDecision};
use mercato_core::domain::holds::{
    claims_to_release, decide_release, Hold, HoldState, Placed, Placement, ReleaseDecision, Step,
};
use mercato_core::domain::refusal::Refusal;
use mercato_core::domain::seats::by_section;
use mercato_core::names::topics;
use mercato_core::repo::holds as rows;
use mercato_core::repo::quotas;
use mercato_core::repo::{EventCache, RepoError, RepoResult};
use mercato_core::store::Store;

use crate::lapses::Lapses;
use crate::runtime::{BatchHandler, Emit};
use crate::seat_changes::seat_change;

/// Tries of a release whose compare-and-set keeps losing before it is refused as contended.
const RELEASE_TRIES: usize = 5;
/// Tries of a shopper's seat count, changed meanwhile by their other holds, before the hold
/// is refused as contended: more than one shopper can sensibly have in flight at once.
const COUNT_TRIES: usize = 16;
/// Stripes of the in-process turn on seat counts: shoppers who share one wait for each other
/// only for a read and a write.
const COUNTING_STRIPES: usize = 64;

pub struct HoldsWorker {
    store: Arc<dyn Store>,
    events: EventCache,
    /// Shoppers' seat counts are changed one at a time per stripe in this process: the
    /// commands of a batch are decided concurrently, and one shopper's many holds would
    /// otherwise lose their compare-and-sets to each other until they gave up. Across
    /// processes the compare-and-set alone decides.
    counting: Vec<tokio::sync::Mutex<()>>,
    /// Told of every hold placed, to announce its lapse; none in tests of placing alone.
    lapses: Option<Arc<Lapses>>,
}

impl HoldsWorker {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            events: EventCache::new(Arc::clone(&store), Duration::from_secs(5)),
            store,
            counting: (0..COUNTING_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            lapses: None,
        }
    }

    /// A worker that has `lapses` watch every hold it places.
    pub fn with_lapses(store: Arc<dyn Store>, lapses: Arc<Lapses>) -> Self {
        Self {
            lapses: Some(lapses),
            ..Self::new(store)
        }
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
        let (outcome, emit) = match &command {
            HoldCommand::Place {
                hold_id,
                user_id,
                event_id,
                seat_ids,
                ttl_ms,
                ..
            } => {
                let ttl = Duration::from_millis(*ttl_ms);
                self.place(hold_id, user_id, event_id, seat_ids, ttl)
                    .await?
            }
            HoldCommand::Release {
                hold_id, user_id, ..
            } => self.release(hold_id, user_id).await?,
        };
        if let (Outcome::HoldPlaced(hold), Some(lapses)) = (&outcome, &self.lapses) {
            if hold.state == HoldState::Active {
                lapses.watch(hold);
            }
        }
        let command_id = command.command_id().to_owned();
        let mut emits = Vec::with_capacity(2);
        emits.extend(emit);
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
    ) -> RepoResult<(Outcome, Option<Emit>)> {
        let Some(spec) = self.events.get(event_id).await? else {
            return Ok((Outcome::Refused(Refusal::EventNotFound), None));
        };
        let started =
            Placement::start(hold_id, user_id, &spec, event_id, seat_ids, ttl, Utc::now());
        let (mut placement, mut step) = match started {
            Ok(started) => started,
            Err(refusal) => return Ok((Outcome::Refused(refusal), None)),
        };
        if let Some(refusal) = self
            .count(placement.hold(), spec.max_seats_per_user())
            .await?
        {
            return Ok((Outcome::Refused(refusal), None));
        }
        loop {
            match step {
                Step::Claim {
                    section,
                    seats,
                    with_hold,
                } => {
                    let claimed = rows::claim_section(
                        &*self.store,
                        event_id,
                        &section,
                        hold_id,
                        &seats,
                        ttl,
                        with_hold.then(|| placement.hold()),
                    )
                    .await?;
                    step = placement.claimed(claimed);
                }
                Step::Done(Placed {
                    outcome,
                    change,
                    release,
                }) => {
                    for (section, claims) in release {
                        rows::release_claims(&*self.store, event_id, &section, &claims).await?;
                    }
                    if !matches!(outcome, Outcome::HoldPlaced(_)) {
                        self.uncount(placement.hold()).await?;
                    }
                    let emit =
                        change.map(|c| seat_change(event_id, &c.seat_ids, c.change, hold_id));
                    return Ok((outcome, emit));
                }
            }
        }
    }

    /// Counts `hold` against its shopper's cap of seats at its event (`cap`); the refusal when
    /// it would pass the cap, or when the count kept changing under this command.
    async fn count(&self, hold: &Hold, cap: u32) -> RepoResult<Option<Refusal>> {
        let _turn = self.counting_turn(hold).await;
        let now = Utc::now().timestamp_millis().max(0) as u64;
        for _ in 0..COUNT_TRIES {
            let row = quotas::load(&*self.store, &hold.event_id, &hold.user_id).await?;
            let current = row.as_ref().map(|r| &r.value);
            let mut decision = decide_count(current, &HashSet::new(), hold, cap, now);
            if let (QuotaDecision::Refuse { .. }, Some(current)) = (&decision, current) {
                let ended = self.ended(&current.unexpired(now)).await?;
                decision = decide_count(Some(current), &ended, hold, cap, now);
            }
            let next = match decision {
                QuotaDecision::Counted => return Ok(None),
                QuotaDecision::Refuse { held, cap } => {
                    return Ok(Some(Refusal::SeatCapReached { held, cap }))
                }
                QuotaDecision::Count(next) => next,
            };
            let expected = row.map(|r| r.version);
            if quotas::replace(&*self.store, &hold.event_id, &hold.user_id, &next, expected).await?
            {
                return Ok(None);
            }
        }
        Ok(Some(Refusal::HoldContended))
    }

    /// This process's turn to change the seat count of `hold`'s shopper at its event.
    async fn counting_turn(&self, hold: &Hold) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&(&hold.event_id, &hold.user_id), &mut hasher);
        let stripe = std::hash::Hasher::finish(&hasher) as usize % self.counting.len();
        self.counting[stripe].lock().await
    }

    /// Of the counted holds `ids`, those released or bought.
    async fn ended(&self, ids: &[String]) -> RepoResult<HashSet<String>> {
        let rows = join_all(ids.iter().map(|id| rows::load(&*self.store, id))).await;
        let mut ended = HashSet::new();
        for (id, row) in ids.iter().zip(rows) {
            if !still_counts(row?.as_ref().map(|r| &r.value)) {
                ended.insert(id.clone());
            }
        }
        Ok(ended)
    }

    /// Takes a hold whose placement failed off its shopper's count. Best effort against a
    /// count changing meanwhile: one left behind lapses with the hold it would have been.
    async fn uncount(&self, hold: &Hold) -> RepoResult<()> {
        let _turn = self.counting_turn(hold).await;
        for _ in 0..COUNT_TRIES {
            let Some(row) = quotas::load(&*self.store, &hold.event_id, &hold.user_id).await? else {
                return Ok(());
            };
            let Some(next) = uncount(&row.value, &hold.id) else {
                return Ok(());
            };
            let written = quotas::replace(
                &*self.store,
                &hold.event_id,
                &hold.user_id,
                &next,
                Some(row.version),
            )
            .await?;
            if written {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn release(&self, hold_id: &str, user_id: &str) -> RepoResult<(Outcome, Option<Emit>)> {
        for _ in 0..RELEASE_TRIES {
            let hold = rows::load(&*self.store, hold_id).await?;
            let current = hold.as_ref().map(|h| (&h.value, h.version));
            let released = match decide_release(current, user_id) {
                ReleaseDecision::Refuse(refusal) => return Ok((Outcome::Refused(refusal), None)),
                // Released before, maybe by this very command in a batch that failed after the
                // write: give back what is still claimed and say so again, so the release is
                // heard however often the batch is handled.
                ReleaseDecision::AlreadyReleased => match hold {
                    Some(h) => h.value,
                    None => return Ok((Outcome::HoldReleased, None)),
                },
                ReleaseDecision::Release { released, expected } => {
                    if rows::cas(&*self.store, &released, expected)
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    released
                }
            };
            self.release_claims(&released).await?;
            let emit = seat_change(
                &released.event_id,
                &released.seat_ids,
                SeatChangeKind::Released,
                &released.id,
            );
            return Ok((Outcome::HoldReleased, Some(emit)));
        }
        Ok((Outcome::Refused(Refusal::HoldContended), None))
    }

    /// Deletes the claims that still belong to a released hold.
    async fn release_claims(&self, hold: &Hold) -> RepoResult<()> {
        for (section, group) in by_section(&hold.seats()) {
            let seats: Vec<String> = group.iter().map(ToString::to_string).collect();
            let holders = rows::claims_of(&*self.store, &hold.event_id, &section, &seats).await?;
            let own = claims_to_release(hold, &holders);
            rows::release_claims(&*self.store, &hold.event_id, &section, &own).await?;
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
    use mercato_core::codec::encode;
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
        mercato_testkit::fixtures::gig(&*store).await;
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
            let claims = mercato_core::repo::holds::section_claims(&*store, "gig", "pit")
                .await
                .unwrap();
            assert!(claims.is_empty(), "{seats:?} claimed {claims:?}");
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

    fn release(hold_id: &str) -> Record {
        let command = HoldCommand::Release {
            command_id: format!("rel-{hold_id}"),
            hold_id: hold_id.to_owned(),
            user_id: "ada".into(),
        };
        Record {
            partition: 0,
            offset: 1,
            timestamp_ms: 0,
            key: b"gig/pit".to_vec(),
            value: encode(&command),
        }
    }

    fn seat_changes(emits: &[Emit]) -> Vec<(Vec<String>, SeatChangeKind)> {
        emits
            .iter()
            .filter(|e| e.topic == topics::SEAT_CHANGES)
            .map(|e| {
                let c = decode::<mercato_core::domain::commands::SeatChange>(&e.value).unwrap();
                assert_eq!(c.event_id, "gig");
                assert!(c
                    .hold_id
                    .as_deref()
                    .is_some_and(|h| h.starts_with("hold-gig.pit.")));
                (c.seat_ids, c.change)
            })
            .collect()
    }

    /// A batch handled again (its first emits lost with a failure after the writes) says
    /// again what changed: a placed hold's seats held, a released hold's seats released (and
    /// its claims given back), each seat once in its canonical spelling, even from a row
    /// written before seat ids were checked.
    #[tokio::test]
    async fn a_batch_handled_again_is_heard_again_in_canonical_spelling() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
        mercato_testkit::fixtures::gig(&*store).await;
        let worker = HoldsWorker::new(Arc::clone(&store));
        let seats = vec!["pit-1-1".to_owned(), "pit-1-2".to_owned()];
        let placing = place("hold-gig.pit.abc", &["pit-1-1", "pit-1-2"]);
        for round in 0..2 {
            let emits = worker
                .handle(topics::HOLDS, std::slice::from_ref(&placing))
                .await
                .unwrap();
            let Outcome::HoldPlaced(hold) = outcome(&emits) else {
                panic!("round {round}: {:?}", outcome(&emits));
            };
            let held = SeatChangeKind::Held {
                expires_at_ms: hold.expires_at_ms,
            };
            assert_eq!(
                seat_changes(&emits),
                [(seats.clone(), held)],
                "round {round}"
            );
        }
        for round in 0..2 {
            let emits = worker
                .handle(topics::HOLDS, &[release("hold-gig.pit.abc")])
                .await
                .unwrap();
            assert_eq!(outcome(&emits), Outcome::HoldReleased, "round {round}");
            assert_eq!(
                seat_changes(&emits),
                [(seats.clone(), SeatChangeKind::Released)],
                "round {round}"
            );
        }
        let claims = mercato_core::repo::holds::section_claims(&*store, "gig", "pit")
            .await
            .unwrap();
        assert!(claims.is_empty(), "claims left: {claims:?}");

        // A row from before seat ids were canonical: another spelling, a seat twice, and an
        // id naming no seat (left out, and logged).
        let old = Hold {
            id: "hold-gig.pit.old".into(),
            user_id: "ada".into(),
            event_id: "gig".into(),
            seat_ids: ["PIT-01-3", "pit-1-4", "pit-1-4", "zz"]
                .map(str::to_owned)
                .to_vec(),
            created_ms: 0,
            expires_at_ms: u64::MAX / 2,
            state: mercato_core::domain::holds::HoldState::Active,
        };
        let (partition, key) = rows::hold_key(&old.id).unwrap();
        store
            .put(
                mercato_core::names::tables::SEAT_CLAIMS,
                &partition,
                &key,
                encode(&old),
                None,
            )
            .await
            .unwrap();
        let emits = worker
            .handle(topics::HOLDS, &[release("hold-gig.pit.old")])
            .await
            .unwrap();
        assert_eq!(outcome(&emits), Outcome::HoldReleased);
        assert_eq!(
            seat_changes(&emits),
            [(
                vec!["pit-1-3".to_owned(), "pit-1-4".to_owned()],
                SeatChangeKind::Released
            )]
        );
    }
}
