//! The embedded Store: one redb database file.
//!
//! Reads run directly on a read transaction (redb is MVCC, so they never wait for writers).
//! Every write goes to one writer thread that takes whatever batches are waiting, applies them in
//! order inside one write transaction and commits once: a group commit, so a thousand concurrent
//! conditional writes cost one fsync, and each still sees the effects of the ones before it.
//! Expired rows read as absent at once; an expiry index lets the writer purge them later when it
//! is idle, which only reclaims space and never decides availability.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{
    BatchOutcome, Page, PartitionWrite, Row, Store, StoreError, StoreResult, Version, Write,
};
use crate::clock::now_ms;

const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
/// (expires_at_ms big-endian ++ row key) -> (): what to purge, in expiry order.
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION_SEQ: &str = "version_seq";
const MAX_JOBS_PER_COMMIT: usize = 4096;
const PURGE_EVERY: Duration = Duration::from_secs(1);
const PURGE_LIMIT: usize = 10_000;
/// redb's page cache. Hot rows (seat claims of an on-sale, recent holds) stay in memory; the
/// rest is read through the OS page cache.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

struct Job {
    writes: Vec<Write>,
    /// The row key of each write, built (and validated) once, by the caller.
    keys: Vec<Vec<u8>>,
    reply: oneshot::Sender<StoreResult<BatchOutcome>>,
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`; its state survives restarts.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(e.to_string()))?;
        let path = dir.join("store.redb");
        // A store dropped a moment ago may still be closing its writer thread.
        let deadline = Instant::now() + Duration::from_secs(2);
        let db = loop {
            match Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
            {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                other => break other.map_err(io)?,
            }
        };
        Self::start(db)
    }

    /// A store that lives in memory only: for tests.
    pub fn in_memory() -> StoreResult<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::start(db)
    }

    fn start(db: Database) -> StoreResult<Self> {
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(ROWS).map_err(io)?;
        txn.open_table(EXPIRY).map_err(io)?;
        txn.open_table(META).map_err(io)?;
        txn.commit().map_err(io)?;
        let db = Arc::new(db);
        let (jobs, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&writer_db, &rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Self { db, jobs })
    }

    fn read_row(&self, key: &[u8], clustering: &str, now: u64) -> StoreResult<Option<Row>> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(ROWS).map_err(io)?;
        let found = table.get(key).map_err(io)?;
        Ok(found.and_then(|v| decode_live(clustering, v.value(), now)))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> StoreResult<Option<Row>> {
        let key = row_key(table, partition, clustering)?;
        self.read_row(&key, clustering, now_ms())
    }

    async fn scan(
        &self,
        table: &str,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page> {
        let prefix = row_key(table, partition, "")?;
        let mut start = prefix.clone();
        start.extend_from_slice(after.unwrap_or("").as_bytes());
        let now = now_ms();
        let limit = limit.max(1);
        let txn = self.db.begin_read().map_err(io)?;
        let rows = txn.open_table(ROWS).map_err(io)?;
        let mut page = Page::default();
        for entry in rows.range(start.as_slice()..).map_err(io)? {
            let (k, v) = entry.map_err(io)?;
            let k = k.value();
            if !k.starts_with(&prefix) {
                break;
            }
            let clustering = String::from_utf8_lossy(&k[prefix.len()..]);
            if after.is_some_and(|a| a == clustering) {
                continue;
            }
            if let Some(row) = decode_live(&clustering, v.value(), now) {
                if page.rows.len() == limit {
                    page.next = page.rows.last().map(|r| r.clustering.clone());
                    break;
                }
                page.rows.push(row);
            }
        }
        Ok(page)
    }

    async fn batch(
        &self,
        table: &str,
        partition: &str,
        writes: Vec<Write>,
    ) -> StoreResult<BatchOutcome> {
        let keys = writes
            .iter()
            .map(|w| row_key(table, partition, w.clustering()))
            .collect::<StoreResult<Vec<_>>>()?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            writes,
            keys,
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    /// One job for the writer thread: a bulk load costs one group commit per batch, not one
    /// per row.
    async fn write_many(&self, table: &str, writes: Vec<PartitionWrite>) -> StoreResult<()> {
        super::check_unconditional(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(writes.len());
        let mut plain = Vec::with_capacity(writes.len());
        for w in writes {
            keys.push(row_key(table, &w.partition, w.write.clustering())?);
            plain.push(w.write);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                writes: plain,
                keys,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
            .map(|_| ())
    }
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

fn writer_loop(db: &Database, rx: &mpsc::Receiver<Job>) {
    let mut last_purge = Instant::now();
    let mut stats = CommitStats::default();
    loop {
        let first = match rx.recv_timeout(PURGE_EVERY) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                purge_expired(db);
                last_purge = Instant::now();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let outcome = commit_group(db, &jobs);
        stats.record(jobs.len(), started.elapsed());
        match outcome {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store group commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Io(e.to_string())));
                }
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY * 10 {
            purge_expired(db);
            last_purge = Instant::now();
        }
    }
}

fn commit_group(db: &Database, jobs: &[Job]) -> Result<Vec<BatchOutcome>, redb::Error> {
    let txn = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(jobs.len());
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
            };
            outcomes.push(ctx.apply(&job.writes, &job.keys)?);
        }
        meta.insert(VERSION_SEQ, seq)?;
    }
    txn.commit()?;
    Ok(outcomes)
}

struct BatchCtx<'a, 't> {
    rows: &'a mut redb::Table<'t, &'static [u8], &'static [u8]>,
    expiry: &'a mut redb::Table<'t, &'static [u8], ()>,
    seq: &'a mut u64,
    now: u64,
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
        let old_expiry = self
            .rows
            .insert(key, stored.as_slice())?
            .and_then(|old| decode_header(old.value()).and_then(|(_, exp)| exp));
        if let Some(at) = old_expiry {
            self.expiry.remove(expiry_key(at, key).as_slice())?;
        }
        if let Some(at) = expires_at_ms {
            self.expiry.insert(expiry_key(at, key).as_slice(), ())?;
        }
        Ok(Row {
            clustering: clustering.to_owned(),
            value: value.to_vec(),
            version: *self.seq,
            expires_at_ms,
        })
    }

    fn remove_row(&mut self, key: &[u8]) -> Result<(), redb::Error> {
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

/// Deletes rows whose TTL has passed. Correctness never depends on this: expired rows already
/// read as absent. It only keeps the file from growing with dead holds.
fn purge_expired(db: &Database) {
    let run = || -> Result<usize, redb::Error> {
        let now = now_ms();
        let txn = db.begin_write()?;
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
        Err(e) => tracing::warn!(error = %e, "purging expired rows failed"),
    }
}

fn row_key(table: &str, partition: &str, clustering: &str) -> StoreResult<Vec<u8>> {
    let too_long = |what: &str| StoreError::Invalid(format!("{what} is longer than 65535 bytes"));
    let tl = u16::try_from(table.len()).map_err(|_| too_long("table name"))?;
    let pl = u16::try_from(partition.len()).map_err(|_| too_long("partition key"))?;
    if clustering.len() > usize::from(u16::MAX) {
        return Err(too_long("clustering key"));
    }
    let mut key = Vec::with_capacity(4 + table.len() + partition.len() + clustering.len());
    key.extend_from_slice(&tl.to_be_bytes());
    key.extend_from_slice(table.as_bytes());
    key.extend_from_slice(&pl.to_be_bytes());
    key.extend_from_slice(partition.as_bytes());
    key.extend_from_slice(clustering.as_bytes());
    Ok(key)
}

fn expiry_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn decode_header(stored: &[u8]) -> Option<(Version, Option<u64>)> {
    let version = u64::from_be_bytes(stored.get(0..8)?.try_into().ok()?);
    let expires = u64::from_be_bytes(stored.get(8..16)?.try_into().ok()?);
    Some((version, (expires != 0).then_some(expires)))
}

fn decode_live(clustering: &str, stored: &[u8], now: u64) -> Option<Row> {
    let (version, expires_at_ms) = decode_header(stored)?;
    if expires_at_ms.is_some_and(|at| at <= now) {
        return None;
    }
    Some(Row {
        clustering: clustering.to_owned(),
        value: stored[16..].to_vec(),
        version,
        expires_at_ms,
    })
}

fn io(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Io(e.into().to_string())
}
