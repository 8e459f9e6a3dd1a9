//! The embedded Store: one redb database file.
//!
//! Reads run directly on a read transaction (redb is MVCC, so they never wait for writers).
//! Every write goes to one writer thread that takes whatever batches are waiting, applies them in
//! order inside one write transaction and commits once: a group commit, so a thousand concurrent
//! conditional writes cost one fsync, and each still sees the effects of the ones before it.
//! Expired rows read as absent at once; an expiry index lets the writer purge them later when it
//! is idle, which only reclaims space and never decides availability.
//!
//! On disk, a group commit is made durable by its record in the [`Journal`] (one sequential
//! append and sync), and redb commits without syncing; a checkpoint every few seconds, or when
//! the journal has grown, makes redb durable and empties the journal. Opening after a crash
//! applies the journal again.
//!
//! A full disk is an outage the store comes back from by itself: a group whose journal record
//! cannot be written is refused and nothing of it stays; checkpoints and purges wait until the
//! journal takes records again, so redb is not written while there is no room. Should redb
//! fail all the same (it then refuses every later operation), the writer refuses writes and,
//! every second, closes and reopens the database and applies the journal, as a restart would.

mod journal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

use super::{
    BatchOutcome, Page, PartitionWrite, Row, Store, StoreError, StoreResult, Version, Write,
};
use crate::clock::now_ms;
use journal::Journal;
use writer::{replay, Job, Writer, CHECKPOINT_EVERY};

const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
/// (expires_at_ms big-endian ++ row key) -> (): what to purge, in expiry order.
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION_SEQ: &str = "version_seq";
/// redb's page cache. Hot rows (seat claims of an on-sale, recent holds) stay in memory; the
/// rest is read through the OS page cache.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// The open database, shared by readers and the writer; empty while the writer reopens it.
type DbSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// Where a store on disk keeps its files.
#[derive(Debug, Clone)]
struct StoreFiles {
    db: PathBuf,
    journal: PathBuf,
}

pub struct EmbeddedStore {
    db: DbSlot,
    jobs: mpsc::Sender<Job>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`; its state survives restarts.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with(dir, Some(CHECKPOINT_EVERY))
    }

    /// `checkpoint_every: None` checkpoints only when the journal is full or the store closes:
    /// for tests that need the journal to hold what they wrote.
    fn open_with(dir: &Path, checkpoint_every: Option<Duration>) -> StoreResult<Self> {
        crate::log_file::create_dir_durable(dir)
            .map_err(|e| StoreError::io(ENGINE, format!("creating {}", dir.display()), e))?;
        let files = StoreFiles {
            db: dir.join("store.redb"),
            journal: dir.join("store.journal"),
        };
        let created = !files.db.exists();
        let db = open_database(&files.db)?;
        if created {
            crate::log_file::sync_parent(&files.db)
                .map_err(|e| StoreError::io(ENGINE, "syncing the store directory", e))?;
        }
        Self::create_tables(&db)?;
        let journal = recover_journal(&db, &files.journal)?;
        Self::start(db, Some((files, journal)), checkpoint_every)
    }

    /// A store that lives in memory only: for tests.
    pub fn in_memory() -> StoreResult<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::create_tables(&db)?;
        Self::start(db, None, None)
    }

    fn create_tables(db: &Database) -> StoreResult<()> {
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(ROWS).map_err(io)?;
        txn.open_table(EXPIRY).map_err(io)?;
        txn.open_table(META).map_err(io)?;
        txn.commit().map_err(io)
    }

    fn start(
        db: Database,
        on_disk: Option<(StoreFiles, Journal)>,
        checkpoint_every: Option<Duration>,
    ) -> StoreResult<Self> {
        let db: DbSlot = Arc::new(RwLock::new(Some(Arc::new(db))));
        let (jobs, rx) = mpsc::channel();
        let mut writer = Writer::new(Arc::clone(&db), on_disk, checkpoint_every);
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(|e| StoreError::io(ENGINE, "starting the writer thread", e))?;
        Ok(Self { db, jobs })
    }

    /// The database to read, unless the writer is reopening it.
    fn database(&self) -> StoreResult<Arc<Database>> {
        self.db.read().clone().ok_or_else(|| {
            StoreError::unavailable_because(
                ENGINE,
                "reopening after a failed write (is the disk full?)",
            )
        })
    }

    fn read_row(&self, key: &[u8], clustering: &str, now: u64) -> StoreResult<Option<Row>> {
        let db = self.database()?;
        let txn = db.begin_read().map_err(io)?;
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
        let db = self.database()?;
        let txn = db.begin_read().map_err(io)?;
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
        super::check_batch(&writes)?;
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
        self.jobs.send(job).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
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
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?.map(|_| ())
    }
}

/// Opens (or creates) the database file, waiting a moment for a store dropped a moment ago to
/// finish closing it.
fn open_database(path: &Path) -> StoreResult<Database> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(io),
        }
    }
}

/// Opens the journal, applies what it holds to `db`, and empties it.
fn recover_journal(db: &Database, path: &Path) -> StoreResult<Journal> {
    let (mut journal, records) =
        Journal::open(path).map_err(|e| StoreError::io(ENGINE, "opening the journal", e))?;
    if !records.is_empty() {
        let changes: usize = records.iter().map(|r| r.changes.len()).sum();
        replay(db, &records).map_err(io)?;
        journal
            .clear()
            .map_err(|e| StoreError::io(ENGINE, "emptying the journal", e))?;
        tracing::info!(
            records = records.len(),
            rows = changes,
            "store recovered its journal"
        );
    }
    Ok(journal)
}

fn row_key(table: &str, partition: &str, clustering: &str) -> StoreResult<Vec<u8>> {
    let too_long = |what: &str| StoreError::invalid(format!("{what} is longer than 65535 bytes"));
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

/// The name errors give this engine.
const ENGINE: &str = "embedded store";

fn io(e: impl Into<redb::Error>) -> StoreError {
    StoreError::io(ENGINE, "reading or writing redb", e.into())
}

fn writer_stopped() -> StoreError {
    StoreError::unavailable_because(ENGINE, "its writer thread has stopped")
}

#[cfg(test)]
mod tests;
