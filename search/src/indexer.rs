//! The indexer: folds the catalog topic into the index, commits in batches with its offsets in
//! the commit's payload (so index and offsets can never disagree), and rebuilds from offset 0
//! on request.
//!
//! Every search-serving process runs its own indexer over the whole topic: the index is a view
//! any replica can rebuild, so it needs no coordination.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_core::bus::{Bus, Record};
use mercato_core::clock::now_ms;
use mercato_core::codec::decode;
use mercato_core::domain::catalog::{doc_key, CatalogFact};
use mercato_core::names::topics;
use parking_lot::Mutex;
use serde::Serialize;
use tantivy::{IndexWriter, TantivyDocument, Term};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::index::{CacheStats, Progress, SearchIndex};
use crate::schema::{self, SCHEMA_VERSION};
use crate::SearchError;

/// Answers kept per index generation unless told otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 4_096;
/// How long a change may wait for the next commit: the bound on "applied, but not searchable".
const COMMIT_DELAY: Duration = Duration::from_millis(200);
/// How often an idle indexer picks up merged segments.
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// A commit this large happens at once, whatever the delay.
const COMMIT_DOCS: u64 = 200_000;
const FETCH_MAX: usize = 4_096;
const WRITER_MEMORY: usize = 128 * 1024 * 1024;

/// What the indexer has done, for `/readyz`, the admin API and `mercato reindex`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexerStatus {
    pub docs: u64,
    /// Per catalog partition: the next offset the searchable index has not folded in.
    pub committed: Vec<u64>,
    /// The same for what is applied but perhaps not yet committed.
    pub applied: Vec<u64>,
    pub commits: u64,
    pub last_commit_ms: Option<u64>,
    /// Set while a rebuild is under way: the offsets it must reach before it becomes visible.
    pub rebuilding_to: Option<Vec<u64>>,
    pub skipped: u64,
    pub last_error: Option<String>,
    pub segments: usize,
    pub cache: CacheStats,
}

enum Control {
    Reindex,
}

pub struct Search {
    index: Arc<SearchIndex>,
    status: Arc<Mutex<IndexerStatus>>,
    control: mpsc::Sender<Control>,
}

impl Search {
    /// Opens the index and starts its indexer, which runs until `shutdown` turns true.
    pub async fn start(
        dir: Option<&std::path::Path>,
        cache_entries: usize,
        bus: Arc<dyn Bus>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Search>, JoinHandle<()>), SearchError> {
        let (index, progress) = SearchIndex::open(dir, cache_entries)?;
        let index = Arc::new(index);
        let partitions = bus.partitions(topics::CATALOG).await? as usize;
        let mut offsets = progress.offsets.clone();
        offsets.resize(partitions.max(offsets.len()), 0);
        let status = Arc::new(Mutex::new(IndexerStatus {
            docs: index.num_docs(),
            committed: offsets.clone(),
            applied: offsets.clone(),
            ..IndexerStatus::default()
        }));
        let writer: IndexWriter = index.index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let (control, control_rx) = mpsc::channel(4);
        let run = Run {
            index: Arc::clone(&index),
            bus,
            status: Arc::clone(&status),
            writer: Some(writer),
            offsets,
            pending: 0,
            first_pending: None,
            rebuilding_to: None,
        };
        let task = tokio::spawn(run.run(control_rx, shutdown));
        Ok((
            Arc::new(Search {
                index,
                status,
                control,
            }),
            task,
        ))
    }

    pub fn index(&self) -> &SearchIndex {
        &self.index
    }

    pub fn status(&self) -> IndexerStatus {
        let mut s = self.status.lock().clone();
        s.segments = self.index.segments();
        s.cache = self.index.cache_stats();
        s
    }

    /// Starts a rebuild from offset 0; the current index serves until the new one is complete.
    pub async fn reindex(&self) -> Result<(), SearchError> {
        self.control
            .send(Control::Reindex)
            .await
            .map_err(|_| SearchError::Stopped)
    }

    /// Waits until everything on the catalog topic now is searchable (tests, `apply --wait`).
    pub async fn caught_up(&self, bus: &dyn Bus, timeout: Duration) -> Result<(), SearchError> {
        let deadline = Instant::now() + timeout;
        let partitions = bus.partitions(topics::CATALOG).await?;
        let mut ends = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            ends.push(bus.end_offset(topics::CATALOG, p).await?);
        }
        loop {
            {
                let s = self.status.lock();
                let done = s.rebuilding_to.is_none()
                    && ends
                        .iter()
                        .enumerate()
                        .all(|(p, end)| s.committed.get(p).is_some_and(|c| c >= end));
                if done {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(SearchError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Run {
    index: Arc<SearchIndex>,
    bus: Arc<dyn Bus>,
    status: Arc<Mutex<IndexerStatus>>,
    /// Taken while a commit runs on a blocking thread.
    writer: Option<IndexWriter>,
    /// Per partition: the next offset to apply.
    offsets: Vec<u64>,
    pending: u64,
    first_pending: Option<Instant>,
    rebuilding_to: Option<Vec<u64>>,
}

impl Run {
    async fn run(mut self, mut control: mpsc::Receiver<Control>, shutdown: watch::Receiver<bool>) {
        loop {
            let (tx, mut rx) = mpsc::channel::<Vec<Record>>(8);
            let (stop_fetch, fetch_stop) = watch::channel(false);
            let fetchers: Vec<JoinHandle<()>> = (0..self.offsets.len())
                .map(|p| {
                    tokio::spawn(fetch_loop(
                        Arc::clone(&self.bus),
                        p as u32,
                        self.offsets[p],
                        tx.clone(),
                        fetch_stop.clone(),
                        shutdown.clone(),
                    ))
                })
                .collect();
            drop(tx);
            let restart = self.fold(&mut rx, &mut control, shutdown.clone()).await;
            let _ = stop_fetch.send(true);
            for f in fetchers {
                f.abort();
            }
            match restart {
                Some(Control::Reindex) => self.begin_rebuild().await,
                None => break,
            }
        }
        if self.pending > 0 {
            self.commit().await;
        }
    }

    /// Applies batches as they come and commits on time; returns a control that needs the
    /// fetchers restarted, or `None` at shutdown.
    async fn fold(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<Record>>,
        control: &mut mpsc::Receiver<Control>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<Control> {
        // Merges finish in the background; reloading now and then puts their (fewer, larger)
        // segments before searches, which pay a little per segment.
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let commit_at = if self.may_commit() {
                self.first_pending.map(|t| t + COMMIT_DELAY)
            } else {
                None
            };
            let sleep = async {
                match commit_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(records) => {
                        self.apply(&records);
                        // Take whatever else is ready: one commit covers it all.
                        while let Ok(more) = rx.try_recv() {
                            self.apply(&more);
                        }
                        if self.pending >= COMMIT_DOCS && self.may_commit() {
                            self.commit().await;
                        }
                    }
                    None => return None,
                },
                _ = sleep => self.commit().await,
                _ = reload.tick() => if self.pending == 0 {
                    if let Err(e) = self.index.reader.reload() {
                        tracing::warn!(error = %e, "reloading the search index failed");
                    }
                },
                c = control.recv() => if let Some(c) = c { return Some(c) },
                _ = shutdown.changed() => if *shutdown.borrow() { return None },
            }
        }
    }

    /// A rebuild becomes visible only once it has folded everything that was there when it
    /// began: until then, searches see the old index.
    fn may_commit(&mut self) -> bool {
        let Some(target) = &self.rebuilding_to else {
            return true;
        };
        let done = target
            .iter()
            .enumerate()
            .all(|(p, end)| self.offsets.get(p).is_some_and(|o| o >= end));
        if done {
            tracing::info!("search index rebuilt; switching to it");
            self.rebuilding_to = None;
            self.status.lock().rebuilding_to = None;
            // Commit even an empty rebuild, so the old documents disappear.
            self.first_pending.get_or_insert_with(Instant::now);
        }
        done
    }

    fn apply(&mut self, records: &[Record]) {
        let Some(writer) = self.writer.as_ref() else {
            return;
        };
        let fields = self.index.fields;
        let mut skipped = 0;
        for r in records {
            match decode::<CatalogFact>(&r.value) {
                Ok(CatalogFact::Upsert(doc)) => {
                    let uid = doc_key(doc.kind, &doc.id);
                    writer.delete_term(Term::from_field_text(fields.uid, &uid));
                    let d: TantivyDocument = schema::to_document(&fields, &doc);
                    if let Err(e) = writer.add_document(d) {
                        tracing::error!(error = %e, "indexing a document failed");
                        skipped += 1;
                    }
                }
                Ok(CatalogFact::Remove { kind, id }) => {
                    writer.delete_term(Term::from_field_text(fields.uid, &doc_key(kind, &id)));
                }
                Err(e) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "undecodable catalog fact skipped");
                    skipped += 1;
                }
            }
            if let Some(o) = self.offsets.get_mut(r.partition as usize) {
                *o = (*o).max(r.offset + 1);
            }
        }
        self.pending += records.len() as u64;
        self.first_pending.get_or_insert_with(Instant::now);
        let mut s = self.status.lock();
        s.applied = self.offsets.clone();
        s.skipped += skipped;
    }

    async fn commit(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let payload = serde_json::to_string(&Progress {
            schema: SCHEMA_VERSION,
            offsets: self.offsets.clone(),
        })
        .unwrap_or_default();
        let index = Arc::clone(&self.index);
        let joined = tokio::task::spawn_blocking(move || {
            let result = (|| -> Result<(), SearchError> {
                let mut prepared = writer.prepare_commit()?;
                prepared.set_payload(&payload);
                prepared.commit()?;
                index.reader.reload()?;
                Ok(())
            })();
            (writer, result)
        })
        .await;
        let (writer, result) = match joined {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(error = %e, "index commit task failed");
                self.status.lock().last_error = Some(e.to_string());
                return;
            }
        };
        self.writer = Some(writer);
        let mut s = self.status.lock();
        match result {
            Ok(()) => {
                s.committed = self.offsets.clone();
                s.docs = self.index.num_docs();
                s.commits += 1;
                s.last_commit_ms = Some(now_ms());
                self.pending = 0;
                self.first_pending = None;
            }
            Err(e) => {
                // Left pending: the next turn commits again.
                tracing::error!(error = %e, "index commit failed; retrying");
                s.last_error = Some(e.to_string());
                self.first_pending = Some(Instant::now());
            }
        }
    }

    async fn begin_rebuild(&mut self) {
        let mut ends = Vec::with_capacity(self.offsets.len());
        for p in 0..self.offsets.len() {
            ends.push(
                self.bus
                    .end_offset(topics::CATALOG, p as u32)
                    .await
                    .unwrap_or(0),
            );
        }
        tracing::info!(?ends, "rebuilding the search index from offset 0");
        if let Some(writer) = self.writer.as_ref() {
            if let Err(e) = writer.delete_all_documents() {
                tracing::error!(error = %e, "clearing the index for a rebuild failed");
                return;
            }
        }
        self.offsets.iter_mut().for_each(|o| *o = 0);
        self.pending = 0;
        self.first_pending = None;
        self.rebuilding_to = Some(ends.clone());
        let mut s = self.status.lock();
        s.rebuilding_to = Some(ends);
        s.applied = self.offsets.clone();
    }
}

async fn fetch_loop(
    bus: Arc<dyn Bus>,
    partition: u32,
    mut position: u64,
    tx: mpsc::Sender<Vec<Record>>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let fetched = tokio::select! {
            r = bus.fetch(topics::CATALOG, partition, position, FETCH_MAX, Duration::from_secs(1)) => r,
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        };
        match fetched {
            Ok(records) if records.is_empty() => {}
            Ok(records) => {
                position = records.last().map_or(position, |r| r.offset + 1);
                if tx.send(records).await.is_err() {
                    return;
                }
                backoff = Duration::from_millis(50);
            }
            Err(e) => {
                tracing::warn!(partition, error = %e, "catalog fetch failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
