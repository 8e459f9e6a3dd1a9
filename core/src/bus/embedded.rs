//! The embedded Bus: one append-only log file per partition, offsets per consumer id in a log of
//! their own, and group commit.
//!
//! A producer appends its records in memory and to the partition's pending buffer, then waits
//! until they are durable. Whoever holds the partition's sync lock writes everything pending and
//! fsyncs once for all the producers that arrived meanwhile. Consumers see a partition only up to
//! its durable end, like a Kafka high watermark, so nothing a consumer acted on can vanish in a
//! crash. Without a data dir everything stays in memory and is visible at once.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::log_file::{open_frames, push_frame, put_str16, rewrite, Reader};
use super::{partition_for, validate_topic_name, Bus, BusError, BusResult, Record, TopicChange};
use crate::clock::now_ms;

const MAX_PARTITIONS: u32 = 1024;
/// Compact the offsets log once it holds this many commits.
const OFFSET_LOG_COMPACT_AT: usize = 100_000;

struct Partition {
    state: Mutex<PartitionState>,
    /// Serializes flushes: the holder writes and fsyncs for everyone waiting.
    sync_lock: tokio::sync::Mutex<()>,
    /// How many records of this partition are durable (and so visible).
    durable: watch::Sender<u64>,
    file: Option<Arc<Mutex<File>>>,
}

struct PartitionState {
    records: Vec<Arc<Record>>,
    unflushed: Vec<u8>,
}

struct Topic {
    partitions: RwLock<Vec<Arc<Partition>>>,
}

type OffsetKey = (String, String, u32);

struct Offsets {
    committed: HashMap<OffsetKey, u64>,
    file: Option<File>,
    path: Option<PathBuf>,
    entries: usize,
}

pub struct EmbeddedBus {
    dir: Option<PathBuf>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    offsets: Arc<Mutex<Offsets>>,
    /// Serializes topic creation and growth.
    admin: tokio::sync::Mutex<()>,
}

impl EmbeddedBus {
    pub fn in_memory() -> Self {
        Self {
            dir: None,
            topics: RwLock::new(HashMap::new()),
            offsets: Arc::new(Mutex::new(Offsets {
                committed: HashMap::new(),
                file: None,
                path: None,
                entries: 0,
            })),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens the bus kept in `dir`, recovering every topic, record and committed offset.
    pub fn open(dir: &Path) -> BusResult<Self> {
        let topics_dir = dir.join("topics");
        fs::create_dir_all(&topics_dir).map_err(io)?;
        let mut topics = HashMap::new();
        for entry in fs::read_dir(&topics_dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(count) = fs::read_to_string(entry.path().join("partitions")) else {
                continue;
            };
            let count: u32 = count
                .trim()
                .parse()
                .map_err(|_| BusError::Io(format!("topic {name}: unreadable partition count")))?;
            let mut partitions = Vec::new();
            for p in 0..count {
                partitions.push(Arc::new(open_partition(&entry.path(), p)?));
            }
            topics.insert(
                name,
                Arc::new(Topic {
                    partitions: RwLock::new(partitions),
                }),
            );
        }
        let offsets = open_offsets(&dir.join("offsets.log"))?;
        Ok(Self {
            dir: Some(dir.to_owned()),
            topics: RwLock::new(topics),
            offsets: Arc::new(Mutex::new(offsets)),
            admin: tokio::sync::Mutex::new(()),
        })
    }

    fn topic(&self, name: &str) -> BusResult<Arc<Topic>> {
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic(name.to_owned()))
    }

    fn partition(&self, topic: &str, partition: u32) -> BusResult<Arc<Partition>> {
        let t = self.topic(topic)?;
        let parts = t.partitions.read();
        parts
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| BusError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: parts.len() as u32,
            })
    }

    async fn flush_to(part: &Partition, end: u64) -> BusResult<()> {
        let Some(file) = &part.file else {
            return Ok(());
        };
        if *part.durable.borrow() >= end {
            return Ok(());
        }
        let _leader = part.sync_lock.lock().await;
        if *part.durable.borrow() >= end {
            return Ok(());
        }
        let (buf, upto) = {
            let mut st = part.state.lock();
            (std::mem::take(&mut st.unflushed), st.records.len() as u64)
        };
        let file = Arc::clone(file);
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock();
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(|e| BusError::Io(e.to_string()))?
        .map_err(io)?;
        part.durable.send_replace(upto);
        Ok(())
    }
}

fn open_partition(topic_dir: &Path, p: u32) -> BusResult<Partition> {
    let (file, bodies) = open_frames(&topic_dir.join(format!("{p}.log"))).map_err(io)?;
    let mut records = Vec::with_capacity(bodies.len());
    for (offset, body) in bodies.iter().enumerate() {
        let mut r = Reader::new(body);
        let parsed = (|| {
            let ts = r.u64()?;
            let klen = r.u32()? as usize;
            let key = r.take(klen)?.to_vec();
            Some((ts, key, r.rest().to_vec()))
        })();
        let Some((timestamp_ms, key, value)) = parsed else {
            return Err(BusError::Io(format!(
                "{}: record {offset} is malformed",
                topic_dir.display()
            )));
        };
        records.push(Arc::new(Record {
            partition: p,
            offset: offset as u64,
            timestamp_ms,
            key,
            value,
        }));
    }
    let end = records.len() as u64;
    Ok(Partition {
        state: Mutex::new(PartitionState {
            records,
            unflushed: Vec::new(),
        }),
        sync_lock: tokio::sync::Mutex::new(()),
        durable: watch::Sender::new(end),
        file: Some(Arc::new(Mutex::new(file))),
    })
}

fn memory_partition() -> Partition {
    Partition {
        state: Mutex::new(PartitionState {
            records: Vec::new(),
            unflushed: Vec::new(),
        }),
        sync_lock: tokio::sync::Mutex::new(()),
        durable: watch::Sender::new(0),
        file: None,
    }
}

fn offset_frame(key: &OffsetKey, next: u64, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(key.0.len() + key.1.len() + 16);
    put_str16(&key.0, &mut body);
    put_str16(&key.1, &mut body);
    body.extend_from_slice(&key.2.to_le_bytes());
    body.extend_from_slice(&next.to_le_bytes());
    push_frame(&body, out);
}

fn open_offsets(path: &Path) -> BusResult<Offsets> {
    let (_, bodies) = open_frames(path).map_err(io)?;
    let mut committed = HashMap::new();
    for body in &bodies {
        let mut r = Reader::new(body);
        let parsed = (|| Some(((r.str16()?, r.str16()?, r.u32()?), r.u64()?)))();
        if let Some((key, next)) = parsed {
            committed.insert(key, next);
        }
    }
    // Start from a compacted file: one frame per consumer, partition.
    let mut frames = Vec::new();
    for (key, next) in &committed {
        offset_frame(key, *next, &mut frames);
    }
    let file = rewrite(path, &frames).map_err(io)?;
    Ok(Offsets {
        entries: committed.len(),
        committed,
        file: Some(file),
        path: Some(path.to_owned()),
    })
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> BusResult<TopicChange> {
        validate_topic_name(topic)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(BusError::InvalidPartitions(partitions));
        }
        let _admin = self.admin.lock().await;
        let existing = self.topics.read().get(topic).cloned();
        let topic_dir = self.dir.as_ref().map(|d| d.join("topics").join(topic));
        let current = existing
            .as_ref()
            .map_or(0, |t| t.partitions.read().len() as u32);
        if existing.is_some() && partitions == current {
            return Ok(TopicChange::Unchanged);
        }
        if partitions < current {
            return Err(BusError::CannotShrink {
                topic: topic.to_owned(),
                current,
                requested: partitions,
            });
        }
        let mut added = Vec::new();
        for p in current..partitions {
            added.push(Arc::new(match &topic_dir {
                Some(dir) => {
                    fs::create_dir_all(dir).map_err(io)?;
                    open_partition(dir, p)?
                }
                None => memory_partition(),
            }));
        }
        if let Some(dir) = &topic_dir {
            // Written last: a topic whose partition count is on disk has all its files.
            let tmp = dir.join("partitions.tmp");
            fs::write(&tmp, partitions.to_string()).map_err(io)?;
            fs::rename(&tmp, dir.join("partitions")).map_err(io)?;
        }
        match existing {
            Some(t) => {
                t.partitions.write().extend(added);
                Ok(TopicChange::Grown { from: current })
            }
            None => {
                self.topics.write().insert(
                    topic.to_owned(),
                    Arc::new(Topic {
                        partitions: RwLock::new(added),
                    }),
                );
                Ok(TopicChange::Created)
            }
        }
    }

    async fn partitions(&self, topic: &str) -> BusResult<u32> {
        Ok(self.topic(topic)?.partitions.read().len() as u32)
    }

    async fn send_batch(
        &self,
        topic: &str,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> BusResult<Vec<(u32, u64)>> {
        let parts: Vec<Arc<Partition>> = self.topic(topic)?.partitions.read().clone();
        let count = parts.len() as u32;
        let now = now_ms();
        let mut placed = Vec::with_capacity(records.len());
        let mut ends: HashMap<u32, u64> = HashMap::new();
        for (key, value) in records {
            let p = partition_for(&key, count);
            let part = &parts[p as usize];
            let mut st = part.state.lock();
            let offset = st.records.len() as u64;
            if part.file.is_some() {
                let mut body = Vec::with_capacity(12 + key.len() + value.len());
                body.extend_from_slice(&now.to_le_bytes());
                body.extend_from_slice(&(key.len() as u32).to_le_bytes());
                body.extend_from_slice(&key);
                body.extend_from_slice(&value);
                push_frame(&body, &mut st.unflushed);
            }
            st.records.push(Arc::new(Record {
                partition: p,
                offset,
                timestamp_ms: now,
                key,
                value,
            }));
            if part.file.is_none() {
                part.durable.send_replace(offset + 1);
            }
            placed.push((p, offset));
            ends.insert(p, offset + 1);
        }
        for (p, end) in ends {
            Self::flush_to(&parts[p as usize], end).await?;
        }
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
                let st = part.state.lock();
                let end = visible.min(offset.saturating_add(max.max(1) as u64));
                return Ok(st.records[offset as usize..end as usize]
                    .iter()
                    .map(|r| Record::clone(r))
                    .collect());
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
        Ok(self.offsets.lock().committed.get(&key).copied())
    }

    async fn commit(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> BusResult<()> {
        self.partition(topic, partition)?;
        let key = (consumer.to_owned(), topic.to_owned(), partition);
        let offsets = Arc::clone(&self.offsets);
        let persist = offsets.lock().file.is_some();
        if !persist {
            offsets.lock().committed.insert(key, next);
            return Ok(());
        }
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut o = offsets.lock();
            o.committed.insert(key.clone(), next);
            let mut frame = Vec::new();
            offset_frame(&key, next, &mut frame);
            if let Some(f) = o.file.as_mut() {
                f.write_all(&frame)?;
                f.sync_data()?;
            }
            o.entries += 1;
            if o.entries >= OFFSET_LOG_COMPACT_AT {
                let mut frames = Vec::new();
                for (k, v) in &o.committed {
                    offset_frame(k, *v, &mut frames);
                }
                if let Some(path) = o.path.clone() {
                    o.file = Some(rewrite(&path, &frames)?);
                    o.entries = o.committed.len();
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| BusError::Io(e.to_string()))?
        .map_err(io)
    }
}

fn io(e: std::io::Error) -> BusError {
    BusError::Io(e.to_string())
}
