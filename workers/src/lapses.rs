//! Lapses, announced when they happen: a hold that is neither bought nor released lets its
//! seats go when its claims' TTL passes, and the holds worker says so on `seat-changes` within
//! moments, with no sweeper rewriting rows. The store expires the claims by itself; this only
//! watches the clock and announces.
//!
//! Each holds replica keeps a timer of the holds its partitions placed, due when their claims
//! expire. At the due time it reads the hold: bought or released first, nothing; otherwise its
//! seats no longer claimed by anyone are announced `lapsed` (one taken by another hold since
//! was announced `held` by that one), and the announcement recorded in
//! `hold_lapses`, so a replica started later (which rebuilds its timer from the hold rows of
//! its partitions) does not announce it again. A crash between the announcement and the
//! record announces it once more: consumers see a lapse at least once, as every seat change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mercato_core::bus::{owned_partitions, partition_for, Bus};
use mercato_core::clock::now_ms;
use mercato_core::domain::commands::SeatChangeKind;
use mercato_core::domain::holds::{decide_lapse, Hold, HoldState, LapseDecision};
use mercato_core::domain::seats::by_section;
use mercato_core::names::topics;
use mercato_core::repo::holds as rows;
use mercato_core::repo::{events, RepoResult};
use mercato_core::store::Store;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::seat_changes::seat_change;

/// How long after a hold's expiry its claims are looked at first, and again while the store
/// has not expired them yet (it expires them a moment after the hold).
const STEP: Duration = Duration::from_millis(25);
/// How soon a lapse whose check failed (an engine down) is tried again.
const RETRY: Duration = Duration::from_secs(1);

pub struct Lapses {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// (due at ms, hold id) of every hold watched.
    due: Mutex<BTreeMap<(u64, String), ()>>,
    wake: Notify,
}

enum Checked {
    /// Announced now, or nothing to announce ever.
    Done,
    /// Its claims are still there: look again at this time.
    Later(u64),
}

impl Lapses {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Arc<Lapses> {
        Arc::new(Lapses {
            store,
            bus,
            due: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        })
    }

    /// Watches `hold` (placed, or found standing) until its seats lapse or it ends otherwise.
    pub fn watch(&self, hold: &Hold) {
        let at = hold.expires_at_ms + STEP.as_millis() as u64;
        self.watch_at(at, &hold.id);
    }

    fn watch_at(&self, at: u64, hold_id: &str) {
        let earliest = {
            let mut due = self.due.lock();
            due.insert((at, hold_id.to_owned()), ());
            due.keys().next().is_some_and(|(first, _)| *first == at)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// How many holds are watched.
    pub fn watched(&self) -> usize {
        self.due.lock().len()
    }

    /// Watches the standing holds of the sections whose `holds` partitions replica `replica`
    /// of `replicas` owns: what a replica started after a crash or a rescale takes over.
    pub async fn rebuild(&self, replica: u32, replicas: u32) -> RepoResult<usize> {
        let partitions = match self.bus.partitions(topics::HOLDS).await {
            Ok(n) => n,
            Err(e) => {
                return Err(mercato_core::repo::RepoError::Upstream {
                    service: "bus",
                    cause: Arc::new(e),
                })
            }
        };
        let owned = owned_partitions(partitions, replica, replicas);
        let mut found = 0;
        let mut cursor: Option<String> = None;
        loop {
            let (ids, next) = events::listing_page(&*self.store, cursor.as_deref(), 200).await?;
            for id in &ids {
                let Some(record) = events::load(&*self.store, id).await? else {
                    continue;
                };
                let Ok(spec) = record.value.spec() else {
                    continue;
                };
                for section in &spec.sections {
                    let key = format!("{id}/{}", section.id);
                    if !owned.contains(&partition_for(key.as_bytes(), partitions)) {
                        continue;
                    }
                    found += self.rebuild_section(id, &section.id).await?;
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(found),
            }
        }
    }

    async fn rebuild_section(&self, event_id: &str, section: &str) -> RepoResult<usize> {
        let mut found = 0;
        let mut cursor: Option<String> = None;
        loop {
            let (holds, next) =
                rows::holds_page(&*self.store, event_id, section, cursor.as_deref(), 500).await?;
            for hold in &holds {
                if matches!(hold.state, HoldState::Active | HoldState::Purchasing { .. })
                    && !rows::lapse_heard(&*self.store, hold).await?
                {
                    self.watch(hold);
                    found += 1;
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(found),
            }
        }
    }

    /// Announces lapses as they fall due until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let now = now_ms();
            let next = self.due.lock().keys().next().cloned();
            match next {
                Some((at, hold_id)) if at <= now => {
                    self.due.lock().remove(&(at, hold_id.clone()));
                    match self.check(&hold_id).await {
                        Ok(Checked::Done) => {}
                        Ok(Checked::Later(at)) => self.watch_at(at, &hold_id),
                        Err(e) => {
                            tracing::warn!(hold = hold_id, error = %e, "checking a lapse failed; trying again");
                            self.watch_at(now_ms() + RETRY.as_millis() as u64, &hold_id);
                        }
                    }
                }
                next => {
                    let wait = next.map_or(Duration::from_secs(60), |(at, _)| {
                        Duration::from_millis(at.saturating_sub(now))
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    async fn check(&self, hold_id: &str) -> RepoResult<Checked> {
        let Some(row) = rows::load(&*self.store, hold_id).await? else {
            return Ok(Checked::Done);
        };
        let hold = row.value;
        if rows::lapse_heard(&*self.store, &hold).await? {
            return Ok(Checked::Done);
        }
        let mut claims = Vec::new();
        for (section, group) in by_section(&hold.seats()) {
            let seats: Vec<String> = group.iter().map(ToString::to_string).collect();
            let holders = rows::claims_of(&*self.store, &hold.event_id, &section, &seats).await?;
            claims.extend(
                seats
                    .into_iter()
                    .zip(holders.into_iter().map(|h| h.map(|h| h.claim))),
            );
        }
        let lapsed = match decide_lapse(&hold, &claims) {
            LapseDecision::Over => return Ok(Checked::Done),
            LapseDecision::NotYet => return Ok(Checked::Later(now_ms() + STEP.as_millis() as u64)),
            LapseDecision::Lapsed(seats) => seats,
        };
        if lapsed.is_empty() {
            rows::mark_lapse_heard(&*self.store, &hold, now_ms()).await?;
            return Ok(Checked::Done);
        }
        let emit = seat_change(&hold.event_id, &lapsed, SeatChangeKind::Lapsed, &hold.id);
        if let Err(e) = self.bus.send(&emit.topic, &emit.key, emit.value).await {
            return Err(mercato_core::repo::RepoError::Upstream {
                service: "bus",
                cause: Arc::new(e),
            });
        }
        rows::mark_lapse_heard(&*self.store, &hold, now_ms()).await?;
        tracing::debug!(hold = hold.id, seats = lapsed.len(), "lapse announced");
        Ok(Checked::Done)
    }
}
