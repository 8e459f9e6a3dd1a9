//! The writer thread: group commits, the journal, checkpoints and purging expired rows.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use super::journal::{Change, Journal, Record};
use super::{
    decode_header, decode_live, expiry_key, open_database, recover_journal, DbSlot, StoreFiles,
    ENGINE, EXPIRY, META, ROWS, VERSION_SEQ,
};
use crate::clock::now_ms;
use crate::log_file::is_out_of_space;
use crate::store::{BatchOutcome, Row, StoreError, StoreResult, Write};

const MAX_JOBS_PER_COMMIT: usize = 4096;
const PURGE_EVERY: Duration = Duration::from_secs(1);
const PURGE_LIMIT: usize = 10_000;
/// A checkpoint when the journal holds this much (it bounds recovery's reading)...
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// ...or when the oldest unchecked record is this old.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Job {
    pub(super) writes: Vec<Write>,
    /// The row key of each write, built (and validated) once, by the caller.
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) reply: oneshot::Sender<StoreResult<BatchOutcome>>,
}

/// Group-commit figures, logged at debug level every few seconds: how well writes coalesce.
#[derive(Default)]
struct CommitStats {
    commits: u64,
    jobs: u64,
    busy: Duration,
    since: Option<Instant>,
}

impl CommitStats {
    fn record(&mut self, jobs: usize, took: Duration) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.commits += 1;
        self.jobs += jobs as u64;
        self.busy += took;
        if since.elapsed() >= Duration::from_secs(5) {
            tracing::debug!(
                commits = self.commits,
                jobs_per_commit = self.jobs as f64 / self.commits as f64,
                ms_per_commit = self.busy.as_secs_f64() * 1000.0 / self.commits as f64,
                "store group commits"
            );
            *self = CommitStats::default();
        }
    }
}

/// How often a failed writer tries to reopen the database.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Why writes are refused, and when to try reopening the database.
struct Failure {
    why: StoreError,
    retry_at: Instant,
}

/// The writer thread's state.
pub(super) struct Writer {
    slot: DbSlot,
    /// `None` for a store in memory, which has nothing to make durable or reopen.
    files: Option<StoreFiles>,
    /// `None` in memory, and while the database is being reopened.
    journal: Option<Journal>,
    /// Set when redb failed (it then refuses everything until reopened) or a journal record
    /// could not be undone: writes are refused until a reopen succeeds.
    failed: Option<Failure>,
    /// The last journal append ran out of space: checkpoints and purges, which write redb's
    /// pages, wait until an append succeeds again, so that a full disk does not fail redb.
    out_of_space: bool,
    last_checkpoint: Instant,
    /// How old the journal's records may get, idle or busy; `None`: until it is full.
    checkpoint_every: Option<Duration>,
}

impl Writer {
    pub(super) fn new(
        slot: DbSlot,
        on_disk: Option<(StoreFiles, Journal)>,
        checkpoint_every: Option<Duration>,
    ) -> Self {
        let (files, journal) = on_disk.unzip();
        Self {
            slot,
            files,
            journal,
            failed: None,
            out_of_space: false,
            last_checkpoint: Instant::now(),
            checkpoint_every,
        }
    }

    pub(super) fn run(&mut self, rx: &mpsc::Receiver<Job>) {
        let mut last_purge = Instant::now();
        let mut stats = CommitStats::default();
        loop {
            self.reopen_if_due();
            let first = match rx.recv_timeout(PURGE_EVERY.min(REOPEN_EVERY)) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.purge_expired();
                    last_purge = Instant::now();
                    if self.checkpoint_every.is_some() {
                        // Idle: leave the journal empty, so a restart has nothing to apply.
                        self.checkpoint();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.checkpoint();
                    return;
                }
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let outcome = self.commit_group(&jobs);
            stats.record(jobs.len(), started.elapsed());
            match outcome {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "store group commit refused");
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
            if last_purge.elapsed() >= PURGE_EVERY * 10 {
                self.purge_expired();
                last_purge = Instant::now();
            }
            let due = self.journal.as_ref().is_some_and(|j| {
                j.len() >= CHECKPOINT_BYTES
                    || (!j.is_empty()
                        && self
                            .checkpoint_every
                            .is_some_and(|every| self.last_checkpoint.elapsed() >= every))
            });
            if due {
                self.checkpoint();
            }
        }
    }

    /// Refuses writes from now until the database is reopened; the error to answer the group
    /// that failed with.
    fn fail(&mut self, context: &'static str, cause: impl Into<redb::Error>) -> StoreError {
        let cause = cause.into();
        tracing::error!(error = %cause, context, "the store's database failed; writes are refused until it is reopened, tried every second");
        self.failed = Some(Failure {
            why: StoreError::unavailable_because(
                ENGINE,
                format!("{context} failed (is the disk full?); writes are refused until the database is reopened, tried every second"),
            ),
            retry_at: Instant::now() + REOPEN_EVERY,
        });
        StoreError::unavailable(ENGINE, context, cause)
    }

    /// After a failure, closes and reopens the database and applies the journal, as a restart
    /// would; until that succeeds, writes stay refused.
    fn reopen_if_due(&mut self) {
        if self
            .failed
            .as_ref()
            .is_none_or(|f| Instant::now() < f.retry_at)
        {
            return;
        }
        let Some(files) = self.files.clone() else {
            return;
        };
        match self.reopen(&files) {
            Ok(()) => {
                self.failed = None;
                self.out_of_space = false;
                self.last_checkpoint = Instant::now();
                tracing::warn!("the store's database is reopened; writes resume");
            }
            Err(e) => {
                if let Some(f) = self.failed.as_mut() {
                    f.retry_at = Instant::now() + REOPEN_EVERY;
                }
                tracing::warn!(error = %crate::store::report(&e), "reopening the store's database failed; trying again in a second");
            }
        }
    }

    fn reopen(&mut self, files: &StoreFiles) -> StoreResult<()> {
        // Readers hold the database only while they read; redb opens a file once per process,
        // so they must let go of it first. Meanwhile they are told the store is unavailable.
        let old = self.slot.write().take();
        if let Some(old) = old {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Arc::strong_count(&old) > 1 {
                if Instant::now() >= deadline {
                    *self.slot.write() = Some(old);
                    return Err(StoreError::unavailable_because(
                        ENGINE,
                        "readers did not let go of the database",
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.journal = None;
        let db = open_database(&files.db)?;
        let journal = recover_journal(&db, &files.journal)?;
        self.journal = Some(journal);
        *self.slot.write() = Some(Arc::new(db));
        Ok(())
    }

    /// Applies a group of jobs in one transaction. With a journal, the group's record is on
    /// disk before the transaction commits, so no reader ever sees a write a crash could undo.
    /// A group refused for any reason left nothing behind, in redb or the journal.
    fn commit_group(&mut self, jobs: &[Job]) -> StoreResult<Vec<BatchOutcome>> {
        if let Some(failure) = &self.failed {
            return Err(failure.why.clone());
        }
        let db = self.slot.read().clone().ok_or_else(|| {
            StoreError::unavailable_because(ENGINE, "the database is being reopened")
        })?;
        let journaled = self.journal.is_some();
        let staged = (|| -> Result<_, redb::Error> {
            let mut txn = db.begin_write()?;
            if journaled {
                txn.set_durability(redb::Durability::None)?;
            }
            let mut changes = journaled.then(Vec::new);
            let mut outcomes = Vec::with_capacity(jobs.len());
            let version_seq;
            {
                let mut rows = txn.open_table(ROWS)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                let mut meta = txn.open_table(META)?;
                let mut seq = meta.get(VERSION_SEQ)?.map(|v| v.value()).unwrap_or(0);
                let now = now_ms();
                for job in jobs {
                    let mut ctx = BatchCtx {
                        rows: &mut rows,
                        expiry: &mut expiry,
                        seq: &mut seq,
                        now,
                        changes: changes.as_mut(),
                    };
                    outcomes.push(ctx.apply(&job.writes, &job.keys)?);
                }
                meta.insert(VERSION_SEQ, seq)?;
                version_seq = seq;
            }
            let record = changes.filter(|c| !c.is_empty()).map(|changes| Record {
                version_seq,
                changes,
            });
            Ok((txn, outcomes, record))
        })();
        let (txn, outcomes, record) = staged.map_err(|e| self.fail("applying a group", e))?;
        let mut undo_to = None;
        if let (Some(journal), Some(record)) = (self.journal.as_mut(), record) {
            let before = journal.len();
            // On failure the transaction is dropped (rolled back) and the journal cut back to
            // its last whole record: the group did not happen.
            if let Err(e) = journal.append(&record) {
                self.out_of_space = is_out_of_space(&e);
                if journal.is_broken() {
                    return Err(self.fail(
                        "cutting a failed journal append back",
                        redb::StorageError::Io(e),
                    ));
                }
                return Err(if self.out_of_space {
                    StoreError::unavailable(
                        ENGINE,
                        "writing the journal: the disk is full, nothing was written",
                        e,
                    )
                } else {
                    StoreError::io(ENGINE, "writing the journal", e)
                });
            }
            self.out_of_space = false;
            undo_to = Some(before);
        }
        if let Err(e) = txn.commit() {
            let refused = self.fail("committing a group", e);
            let undone = match (self.journal.as_mut(), undo_to) {
                (Some(journal), Some(before)) => journal.cut_back(before).is_ok(),
                _ => true,
            };
            return Err(if undone {
                refused
            } else {
                StoreError::io_because(
                    ENGINE,
                    "committing a group whose journal record could not be undone: it is applied when the database is reopened",
                )
            });
        }
        Ok(outcomes)
    }

    /// Makes redb durable and empties the journal. Waits while the disk is full; a failed
    /// checkpoint fails redb, so it is reopened like after any other failure (the journal
    /// keeps every record until a checkpoint succeeds).
    fn checkpoint(&mut self) {
        if self.failed.is_some() || self.out_of_space {
            return;
        }
        let Some(bytes) = self.journal.as_ref().map(Journal::len).filter(|&b| b > 0) else {
            return;
        };
        let Some(db) = self.slot.read().clone() else {
            return;
        };
        let started = Instant::now();
        let durable = db
            .begin_write()
            .map_err(redb::Error::from)
            .and_then(|txn| txn.commit().map_err(redb::Error::from));
        if let Err(e) = durable {
            let _ = self.fail("a checkpoint", e);
            return;
        }
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        match journal.clear() {
            Ok(()) => {
                self.last_checkpoint = Instant::now();
                tracing::debug!(
                    journal_bytes = bytes,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "store checkpoint"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "emptying the journal after a checkpoint failed; it keeps its records")
            }
        }
    }

    /// Deletes rows whose TTL has passed. Correctness never depends on this: expired rows
    /// already read as absent. It only keeps the file from growing with dead holds, so with a
    /// journal it is not journaled: after a crash, a purged row comes back still expired.
    fn purge_expired(&mut self) {
        if self.failed.is_some() || self.out_of_space {
            return;
        }
        let Some(db) = self.slot.read().clone() else {
            return;
        };
        let journaled = self.journal.is_some();
        let run = || -> Result<usize, redb::Error> {
            let now = now_ms();
            let mut txn = db.begin_write()?;
            if journaled {
                txn.set_durability(redb::Durability::None)?;
            }
            let mut purged = 0;
            {
                let mut rows = txn.open_table(ROWS)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                let end = (now + 1).to_be_bytes();
                let due: Vec<Vec<u8>> = expiry
                    .range(&[][..]..&end[..])?
                    .take(PURGE_LIMIT)
                    .filter_map(|e| e.ok().map(|(k, _)| k.value().to_vec()))
                    .collect();
                for ekey in &due {
                    expiry.remove(ekey.as_slice())?;
                    let row_key = &ekey[8..];
                    let expired = rows
                        .get(row_key)?
                        .and_then(|v| decode_header(v.value()))
                        .is_some_and(|(_, exp)| exp.is_some_and(|at| at <= now));
                    if expired {
                        rows.remove(row_key)?;
                        purged += 1;
                    }
                }
            }
            txn.commit()?;
            Ok(purged)
        };
        match run() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "purged expired rows"),
            Err(e) => {
                let _ = self.fail("purging expired rows", e);
            }
        }
    }
}

/// Applies journal records, oldest first, and makes the result durable.
pub(super) fn replay(db: &Database, records: &[Record]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut rows = txn.open_table(ROWS)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        let mut meta = txn.open_table(META)?;
        let mut seq = meta.get(VERSION_SEQ)?.map(|v| v.value()).unwrap_or(0);
        let mut ctx = BatchCtx {
            rows: &mut rows,
            expiry: &mut expiry,
            seq: &mut seq,
            now: now_ms(),
            changes: None,
        };
        for record in records {
            for change in &record.changes {
                match &change.stored {
                    Some(stored) => ctx.store_row(&change.key, stored)?,
                    None => ctx.remove_row(&change.key)?,
                }
            }
            *ctx.seq = (*ctx.seq).max(record.version_seq);
        }
        meta.insert(VERSION_SEQ, seq)?;
    }
    txn.commit().map_err(redb::Error::from)
}

struct BatchCtx<'a, 't> {
    rows: &'a mut redb::Table<'t, &'static [u8], &'static [u8]>,
    expiry: &'a mut redb::Table<'t, &'static [u8], ()>,
    seq: &'a mut u64,
    now: u64,
    /// Every row the group changed, for the journal; `None` when nothing is journaled.
    changes: Option<&'a mut Vec<Change>>,
}

impl BatchCtx<'_, '_> {
    fn current(&self, key: &[u8], clustering: &str) -> Result<Option<Row>, redb::Error> {
        Ok(self
            .rows
            .get(key)?
            .and_then(|v| decode_live(clustering, v.value(), self.now)))
    }

    fn apply(&mut self, writes: &[Write], keys: &[Vec<u8>]) -> Result<BatchOutcome, redb::Error> {
        // Only conditions need the current row; an unconditional write never stands in the way.
        let mut before = Vec::with_capacity(writes.len());
        for (w, key) in writes.iter().zip(keys) {
            before.push(if w.is_conditional() {
                self.current(key, w.clustering())?
            } else {
                None
            });
        }
        let holds = writes.iter().zip(&before).all(|(w, cur)| match w {
            Write::InsertIfAbsent { .. } => cur.is_none(),
            Write::CompareAndSet { expected, .. } | Write::DeleteIfVersion { expected, .. } => {
                cur.as_ref().is_some_and(|r| r.version == *expected)
            }
            Write::Put { .. } | Write::Delete { .. } => true,
        });
        if !holds {
            return Ok(BatchOutcome {
                applied: false,
                rows: before,
            });
        }
        let mut after = Vec::with_capacity(writes.len());
        for (w, key) in writes.iter().zip(keys) {
            after.push(match w {
                Write::Put {
                    clustering,
                    value,
                    ttl,
                }
                | Write::InsertIfAbsent {
                    clustering,
                    value,
                    ttl,
                }
                | Write::CompareAndSet {
                    clustering,
                    value,
                    ttl,
                    ..
                } => Some(self.write_row(key, clustering, value, *ttl)?),
                Write::DeleteIfVersion { .. } | Write::Delete { .. } => {
                    self.remove_row(key)?;
                    None
                }
            });
        }
        Ok(BatchOutcome {
            applied: true,
            rows: after,
        })
    }

    fn write_row(
        &mut self,
        key: &[u8],
        clustering: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Row, redb::Error> {
        *self.seq += 1;
        let expires_at_ms = ttl.map(|t| self.now.saturating_add(t.as_millis() as u64));
        let mut stored = Vec::with_capacity(16 + value.len());
        stored.extend_from_slice(&self.seq.to_be_bytes());
        stored.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
        stored.extend_from_slice(value);
        self.store_row(key, &stored)?;
        if let Some(changes) = self.changes.as_deref_mut() {
            changes.push(Change {
                key: key.to_vec(),
                stored: Some(stored),
            });
        }
        Ok(Row {
            clustering: clustering.to_owned(),
            value: value.to_vec(),
            version: *self.seq,
            expires_at_ms,
        })
    }

    /// Writes a row's stored bytes (header and value), keeping the expiry index in step.
    fn store_row(&mut self, key: &[u8], stored: &[u8]) -> Result<(), redb::Error> {
        let old_expiry = self
            .rows
            .insert(key, stored)?
            .and_then(|old| decode_header(old.value()).and_then(|(_, exp)| exp));
        if let Some(at) = old_expiry {
            self.expiry.remove(expiry_key(at, key).as_slice())?;
        }
        if let Some(at) = decode_header(stored).and_then(|(_, exp)| exp) {
            self.expiry.insert(expiry_key(at, key).as_slice(), ())?;
        }
        Ok(())
    }

    fn remove_row(&mut self, key: &[u8]) -> Result<(), redb::Error> {
        if let Some(changes) = self.changes.as_deref_mut() {
            changes.push(Change {
                key: key.to_vec(),
                stored: None,
            });
        }
        let old_expiry = self
            .rows
            .remove(key)?
            .and_then(|old| decode_header(old.value()).map(|(_, exp)| exp))
            .flatten();
        if let Some(at) = old_expiry {
            self.expiry.remove(expiry_key(at, key).as_slice())?;
        }
        Ok(())
    }
}
