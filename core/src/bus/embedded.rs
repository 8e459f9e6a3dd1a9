//! The embedded Bus: one write-ahead log for every topic, partition and consumer offset, with
//! group commit (see `wal`), kept as segment files (see `segments`) with a snapshot that
//! start-up reads instead of the sealed ones (see `snapshot`).
//!
//! Consumers see a partition only up to what is durable (a high watermark), so nothing a
//! consumer acted on can vanish in a crash. Because one log holds everything in append order, a
//! consumer's committed offset is never durable before the records it emitted ahead of it.
//! Offset commits do not wait for their fsync: losing the last ones only replays a few records,
//! which at-least-once delivery allows. Without a data dir everything stays in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};

use super::frames;
use super::partition::{read_back, Partition, Stored};
use super::recovery::recover;
use super::segments::DEFAULT_SEGMENT_BYTES;
use super::snapshot::{index_path, Compactor, OffsetKey, Snapshot};
use super::wal::{Active, Disk, Wal};
use super::{partition_for, validate_topic, Bus, BusError, BusResult, Record, TopicChange};
use crate::clock::now_ms;

/// A live topic: its incarnation (the log position of the frame that created it, which names
/// its index files) and its partitions.
struct TopicLog {
    incarnation: u64,
    partitions: Vec<Arc<Partition>>,
}

type Topics = Arc<RwLock<HashMap<String, TopicLog>>>;

pub struct EmbeddedBus {
    topics: Topics,
    committed: Mutex<HashMap<OffsetKey, u64>>,
    wal: Arc<Wal>,
    /// The bus's folder; `None` in memory.
    dir: Option<PathBuf>,
    /// Serializes topic creation and growth.
    admin: tokio::sync::Mutex<()>,
}

impl EmbeddedBus {
    pub fn in_memory() -> Self {
        Self {
            topics: Topics::default(),
            committed: Mutex::default(),
            wal: Arc::new(Wal::new(None, 0)),
            dir: None,
            admin: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens the bus kept in `dir`, recovering every topic, record and committed offset.
    pub fn open(dir: &Path) -> BusResult<Self> {
        Self::open_with_segment_bytes(dir, DEFAULT_SEGMENT_BYTES)
    }

    /// [`EmbeddedBus::open`], sealing segments once they pass `segment_bytes`.
    pub fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> BusResult<Self> {
        let recovered = recover(dir)?;
        let topics: Topics = Arc::new(RwLock::new(
            recovered
                .topics
                .into_iter()
                .map(|(name, (incarnation, parts))| {
                    let partitions = parts.into_iter().map(Partition::new).collect();
                    (
                        name,
                        TopicLog {
                            incarnation,
                            partitions,
                        },
                    )
                })
                .collect(),
        ));
        let compactor = Compactor::new(
            dir,
            recovered.snapshot,
            Box::new(publisher(Arc::downgrade(&topics))),
        );
        for (base, next) in recovered.unfolded {
            compactor.sealed(base, next);
        }
        let (file, base) = recovered.active;
        let disk = Disk {
            active: Mutex::new(Active::new(file, base)),
            segments: Arc::new(recovered.segments),
            compactor,
            segment_bytes: segment_bytes.max(1),
        };
        Ok(Self {
            topics,
            committed: Mutex::new(recovered.committed),
            wal: Arc::new(Wal::new(Some(Arc::new(disk)), recovered.end)),
            dir: Some(dir.to_owned()),
            admin: tokio::sync::Mutex::new(()),
        })
    }

    fn partitions_of(&self, topic: &str) -> BusResult<Vec<Arc<Partition>>> {
        self.topics
            .read()
            .get(topic)
            .map(|t| t.partitions.clone())
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))
    }

    fn partition(&self, topic: &str, partition: u32) -> BusResult<Arc<Partition>> {
        let parts = self.partitions_of(topic)?;
        parts
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| BusError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: parts.len() as u32,
            })
    }

    /// The most record positions any partition holds in memory: for tests.
    #[cfg(test)]
    pub(crate) fn most_positions_in_memory(&self) -> usize {
        let topics = self.topics.read();
        topics
            .values()
            .flat_map(|t| &t.partitions)
            .map(|p| p.state.lock().positions_in_memory())
            .max()
            .unwrap_or(0)
    }

    /// Waits until the compactor has folded every sealed segment: for tests.
    #[cfg(test)]
    pub(crate) fn settle_compaction(&self) {
        if let Some(disk) = &self.wal.disk {
            disk.compactor.settle();
        }
    }
}

/// Tells the live partitions how far their index files reach after a fold, so that they
/// forget those positions.
fn publisher(topics: Weak<RwLock<HashMap<String, TopicLog>>>) -> impl Fn(&Snapshot) + Send + Sync {
    move |snapshot| {
        let Some(topics) = topics.upgrade() else {
            return;
        };
        let topics = topics.read();
        for (name, folded) in &snapshot.topics {
            let Some(live) = topics
                .get(name)
                .filter(|t| t.incarnation == folded.incarnation)
            else {
                continue;
            };
            for (part, &count) in live.partitions.iter().zip(&folded.counts) {
                part.state.lock().indexed_through(count);
            }
        }
    }
}

impl Drop for EmbeddedBus {
    fn drop(&mut self) {
        self.wal.flush_now();
        if let Some(disk) = &self.wal.disk {
            disk.compactor.close();
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> BusResult<TopicChange> {
        validate_topic(topic, partitions)?;
        let _admin = self.admin.lock().await;
        let current = self
            .topics
            .read()
            .get(topic)
            .map(|t| t.partitions.len() as u32);
        let change = match current {
            Some(c) if c == partitions => return Ok(TopicChange::Unchanged),
            Some(c) if c > partitions => {
                return Err(BusError::CannotShrink {
                    topic: topic.to_owned(),
                    current: c,
                    requested: partitions,
                })
            }
            Some(c) => TopicChange::Grown { from: c },
            None => TopicChange::Created,
        };
        let (seq, position) = {
            let mut p = self.wal.pending.lock();
            p.refuse_if_full()?;
            let position = p.next_position();
            frames::push_topic(topic, partitions, &mut p.buf);
            p.seq += 1;
            (p.seq, position)
        };
        self.wal.flush_to(seq).await?;
        let mut topics = self.topics.write();
        let live = topics.entry(topic.to_owned()).or_insert(TopicLog {
            incarnation: position,
            partitions: Vec::new(),
        });
        while live.partitions.len() < partitions as usize {
            let p = live.partitions.len() as u32;
            let stored = match &self.dir {
                Some(dir) => Stored::logged(index_path(dir, topic, live.incarnation, p), 0),
                None => Stored::in_memory(),
            };
            live.partitions.push(Partition::new(stored));
        }
        Ok(change)
    }

    async fn partitions(&self, topic: &str) -> BusResult<u32> {
        Ok(self.partitions_of(topic)?.len() as u32)
    }

    async fn delete_topic(&self, topic: &str) -> BusResult<bool> {
        let _admin = self.admin.lock().await;
        if !self.topics.read().contains_key(topic) {
            return Ok(false);
        }
        let seq = {
            let mut p = self.wal.pending.lock();
            p.refuse_if_full()?;
            frames::push_topic_delete(topic, &mut p.buf);
            p.seq += 1;
            p.seq
        };
        self.wal.flush_to(seq).await?;
        self.topics.write().remove(topic);
        self.committed
            .lock()
            .retain(|(_, t, _): &OffsetKey, _| t != topic);
        Ok(true)
    }

    async fn send_batch(
        &self,
        topic: &str,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> BusResult<Vec<(u32, u64)>> {
        let parts = self.partitions_of(topic)?;
        let count = parts.len() as u32;
        let now = now_ms();
        let logged = self.wal.disk.is_some();
        let mut placed = Vec::with_capacity(records.len());
        let seq = {
            let mut pending = self.wal.pending.lock();
            pending.refuse_if_full()?;
            for (key, value) in records {
                let p = partition_for(&key, count);
                let part = &parts[p as usize];
                let position = logged.then(|| pending.next_position());
                if logged {
                    frames::push_record(topic, p, now, &key, &value, &mut pending.buf);
                }
                let mut stored = part.state.lock();
                let offset = stored.len();
                let record = Record {
                    partition: p,
                    offset,
                    timestamp_ms: now,
                    key,
                    value,
                };
                stored.push(Arc::new(record), position);
                pending
                    .touched
                    .insert((topic.to_owned(), p), (Arc::clone(part), offset + 1));
                placed.push((p, offset));
            }
            pending.seq += 1;
            pending.seq
        };
        self.wal.flush_to(seq).await?;
        Ok(placed)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> BusResult<Vec<Record>> {
        let part = self.partition(topic, partition)?;
        let mut durable = part.durable.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let visible = *durable.borrow_and_update();
            if offset < visible {
                let end = visible.min(offset.saturating_add(max.max(1) as u64));
                let (on_disk, in_memory) = part.state.lock().slice(offset, end);
                if on_disk.is_empty() {
                    return Ok(in_memory);
                }
                // A lagging consumer: read what is no longer in memory back from the log.
                let segments = self
                    .wal
                    .segments()
                    .cloned()
                    .ok_or_else(|| BusError::Io("records left memory without a log".into()))?;
                let topic = topic.to_owned();
                let mut records = tokio::task::spawn_blocking(move || {
                    read_back(&segments, &topic, partition, on_disk, offset)
                })
                .await
                .map_err(|e| BusError::Io(e.to_string()))?
                .map_err(|e| BusError::Io(e.to_string()))?;
                records.extend(in_memory);
                return Ok(records);
            }
            match tokio::time::timeout_at(deadline, durable.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Ok(Vec::new()),
            }
        }
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> BusResult<u64> {
        let part = self.partition(topic, partition)?;
        let end = *part.durable.borrow();
        Ok(end)
    }

    async fn committed(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> BusResult<Option<u64>> {
        self.partition(topic, partition)?;
        let key = (consumer.to_owned(), topic.to_owned(), partition);
        Ok(self.committed.lock().get(&key).copied())
    }

    async fn commit(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> BusResult<()> {
        self.partition(topic, partition)?;
        if self.wal.disk.is_some() {
            let mut p = self.wal.pending.lock();
            frames::push_commit(consumer, topic, partition, next, &mut p.buf);
            p.seq += 1;
        }
        let key = (consumer.to_owned(), topic.to_owned(), partition);
        self.committed.lock().insert(key, next);
        self.wal.schedule_flush();
        Ok(())
    }
}
