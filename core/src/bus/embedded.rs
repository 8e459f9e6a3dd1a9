//! The embedded Bus: one write-ahead log for every topic, partition and consumer offset, with
//! group commit.
//!
//! Producers append frames to a shared buffer and wait until a flush covers them; whoever holds
//! the sync lock writes everything buffered and fsyncs once for all of them, whatever topic they
//! went to. Consumers see a partition only up to what is durable (a high watermark), so nothing
//! a consumer acted on can vanish in a crash. Because one log holds everything in append order,
//! a consumer's committed offset is never durable before the records it emitted ahead of it.
//! Offset commits do not wait for their fsync: losing the last ones only replays a few records,
//! which at-least-once delivery allows. Without a data dir everything stays in memory.
//!
//! A full disk is an outage, not a failure: a flush that runs out of space cuts the log back to
//! its last durable byte and forgets every frame not yet written, so each producer waiting on
//! them is refused and none of their records exists (a refusal means "not written", and a
//! retry cannot duplicate). For a moment after, appends are refused at once; then the next one
//! tries the disk again, and writes resume as soon as space returns.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::partition::{parse_record, read_back, Partition, RecordFrame, Stored, FRAME_RECORD};
use super::{partition_for, validate_topic, Bus, BusError, BusResult, Record, TopicChange};
use crate::clock::now_ms;
use crate::log_file::{is_out_of_space, open_frames, push_frame, put_str16, Reader};

const FRAME_TOPIC: u8 = 1;
const FRAME_COMMIT: u8 = 3;
const FRAME_TOPIC_DELETE: u8 = 4;
/// How long appends are refused without trying after the disk was found full: a storm of
/// producers then costs one failed write per interval, not one each.
const REFUSE_WHEN_FULL: Duration = Duration::from_millis(250);

type OffsetKey = (String, String, u32);

/// What is appended but not yet written, and what becomes visible when it is.
#[derive(Default)]
struct Pending {
    /// Where `buf` will start in the log file.
    base: u64,
    buf: Vec<u8>,
    /// Sequence number of the last frame appended.
    seq: u64,
    /// Partitions that got records since the last flush, with their length then.
    touched: Touched,
    /// Frames forgotten because the disk was full, as ranges of sequence numbers
    /// `(after, through]`: their producers are refused, even once later frames are durable.
    /// One range per full-disk episode (consecutive failures extend it).
    discarded: Vec<(u64, u64)>,
    /// Until when appends are refused without trying, after the disk was found full.
    refuse_until: Option<Instant>,
}

impl Pending {
    fn was_discarded(&self, seq: u64) -> bool {
        self.discarded
            .iter()
            .any(|&(after, through)| seq > after && seq <= through)
    }

    /// Refuses an append while the disk was found full a moment ago.
    fn refuse_if_full(&self) -> BusResult<()> {
        match self.refuse_until {
            Some(until) if Instant::now() < until => Err(out_of_space()),
            _ => Ok(()),
        }
    }
}

struct Wal {
    file: Option<Arc<Mutex<File>>>,
    pending: Arc<Mutex<Pending>>,
    /// Sequence number of the last durable frame.
    durable_seq: watch::Sender<u64>,
    /// Serializes flushes: the holder writes and fsyncs for everyone waiting.
    sync_lock: tokio::sync::Mutex<()>,
    flush_scheduled: AtomicBool,
    /// Set when a write to the log failed other than for space: nothing more is accepted
    /// until a restart.
    failed: AtomicBool,
}

fn failed_log() -> BusError {
    BusError::Unavailable("the bus log could not be written; restart to recover from it".into())
}

fn out_of_space() -> BusError {
    BusError::Unavailable(
        "the disk holding the bus log is full: nothing was written; retry once space is freed"
            .into(),
    )
}

/// Why a flush wrote nothing.
enum FlushFailure {
    /// Out of space: the log is back at its last durable byte and every unwritten frame is
    /// forgotten; writing can resume.
    OutOfSpace(std::io::Error),
    /// Anything else: what reached the file is unknown.
    Fatal(std::io::Error),
}

pub struct EmbeddedBus {
    topics: RwLock<HashMap<String, Vec<Arc<Partition>>>>,
    /// A read handle on the log, for records no longer kept in memory.
    log_reader: Option<Arc<File>>,
    committed: Mutex<HashMap<OffsetKey, u64>>,
    wal: Arc<Wal>,
    /// Serializes topic creation and growth.
    admin: tokio::sync::Mutex<()>,
}

impl EmbeddedBus {
    pub fn in_memory() -> Self {
        Self::with(None, None, HashMap::new(), HashMap::new())
    }

    /// Opens the bus kept in `dir`, recovering every topic, record and committed offset.
    pub fn open(dir: &Path) -> BusResult<Self> {
        crate::log_file::create_dir_durable(dir).map_err(io)?;
        let path = dir.join("bus.log");
        let mut topics: HashMap<String, Vec<Stored>> = HashMap::new();
        let mut committed = HashMap::new();
        let (file, log_len) = open_frames(&path, |position, frame| {
            replay_frame(&mut topics, &mut committed, position, frame)
                .ok_or_else(|| "not a bus frame".to_owned())
        })
        .map_err(|e| BusError::Io(e.to_string()))?;
        let log_reader = File::open(&path).map_err(io)?;
        let topics = topics
            .into_iter()
            .map(|(name, parts)| (name, parts.into_iter().map(Partition::new).collect()))
            .collect();
        let bus = Self::with(Some(file), Some(Arc::new(log_reader)), topics, committed);
        bus.wal.pending.lock().base = log_len;
        Ok(bus)
    }

    fn with(
        file: Option<File>,
        log_reader: Option<Arc<File>>,
        topics: HashMap<String, Vec<Arc<Partition>>>,
        committed: HashMap<OffsetKey, u64>,
    ) -> Self {
        Self {
            topics: RwLock::new(topics),
            log_reader,
            committed: Mutex::new(committed),
            wal: Arc::new(Wal {
                file: file.map(|f| Arc::new(Mutex::new(f))),
                pending: Arc::new(Mutex::new(Pending::default())),
                durable_seq: watch::Sender::new(0),
                sync_lock: tokio::sync::Mutex::new(()),
                flush_scheduled: AtomicBool::new(false),
                failed: AtomicBool::new(false),
            }),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    fn partitions_of(&self, topic: &str) -> BusResult<Vec<Arc<Partition>>> {
        self.topics
            .read()
            .get(topic)
            .cloned()
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
}

impl Wal {
    /// Whether the frame numbered `seq` is durable; refused if it was forgotten for want of
    /// space (checked first: later frames may be durable by now).
    fn is_durable(&self, seq: u64) -> BusResult<bool> {
        if self.pending.lock().was_discarded(seq) {
            return Err(out_of_space());
        }
        Ok(*self.durable_seq.borrow() >= seq)
    }

    /// Waits until every frame up to `seq` is durable, flushing if nobody else is.
    async fn flush_to(&self, seq: u64) -> BusResult<()> {
        if self.is_durable(seq)? {
            return Ok(());
        }
        let _leader = self.sync_lock.lock().await;
        if self.is_durable(seq)? {
            return Ok(());
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(failed_log());
        }
        // The file lock is taken before the buffer, here and on drop, so buffers reach the
        // file in the order they were filled.
        let (upto, touched) = match &self.file {
            Some(file) => {
                let file = Arc::clone(file);
                let wal_pending = Arc::clone(&self.pending);
                let durable = *self.durable_seq.borrow();
                let written = tokio::task::spawn_blocking(move || {
                    let mut f = file.lock();
                    let (buf, upto, touched, at) = take_pending(&wal_pending);
                    match f.write_all(&buf).and_then(|()| f.sync_data()) {
                        Ok(()) => Ok((upto, touched)),
                        Err(e) if is_out_of_space(&e) => {
                            match forget_unwritten(&f, &wal_pending, at, touched, durable) {
                                Ok(()) => Err(FlushFailure::OutOfSpace(e)),
                                Err(cut) => Err(FlushFailure::Fatal(cut)),
                            }
                        }
                        Err(e) => Err(FlushFailure::Fatal(e)),
                    }
                })
                .await
                .map_err(|e| FlushFailure::Fatal(std::io::Error::other(e.to_string())))
                .and_then(|r| r);
                match written {
                    Ok(written) => written,
                    Err(FlushFailure::OutOfSpace(e)) => {
                        tracing::warn!(error = %e, "the bus log's disk is full; records are refused until space returns");
                        return Err(out_of_space());
                    }
                    Err(FlushFailure::Fatal(e)) => {
                        // What reached the file is unknown now: refuse to go on rather than
                        // risk acknowledging records that are not there. A restart recovers
                        // from the log.
                        tracing::error!(error = %e, "writing the bus log failed; the bus stops accepting records");
                        self.failed.store(true, Ordering::Release);
                        return Err(io(e));
                    }
                }
            }
            None => {
                let (_, upto, touched, _) = take_pending(&self.pending);
                (upto, touched)
            }
        };
        for (part, len) in touched.into_values() {
            part.durable.send_if_modified(|d| {
                let grew = len > *d;
                *d = (*d).max(len);
                grew
            });
            part.state.lock().trim(len);
        }
        self.durable_seq.send_replace(upto);
        Ok(())
    }

    /// Flushes soon, without anyone waiting: for offset commits.
    fn schedule_flush(self: &Arc<Self>) {
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let wal = Arc::clone(self);
        let spawned = tokio::runtime::Handle::try_current().map(|h| {
            h.spawn(async move {
                wal.flush_scheduled.store(false, Ordering::Release);
                let seq = wal.pending.lock().seq;
                if let Err(e) = wal.flush_to(seq).await {
                    tracing::warn!(error = %e, "flushing offset commits failed");
                }
            })
        });
        if spawned.is_err() {
            self.flush_scheduled.store(false, Ordering::Release);
        }
    }

    /// Writes and syncs whatever is buffered, from outside the runtime (on drop).
    fn flush_now(&self) {
        if let Some(file) = &self.file {
            let mut f = file.lock();
            let (buf, _, _, _) = take_pending(&self.pending);
            if f.write_all(&buf).and_then(|_| f.sync_data()).is_err() {
                tracing::warn!("flushing the bus log on close failed");
            }
        }
    }
}

impl Drop for EmbeddedBus {
    fn drop(&mut self) {
        self.wal.flush_now();
    }
}

type Touched = HashMap<(String, u32), (Arc<Partition>, u64)>;

/// The buffered frames, the number of the last, the partitions they touched, and where in the
/// log they go.
fn take_pending(pending: &Mutex<Pending>) -> (Vec<u8>, u64, Touched, u64) {
    let mut p = pending.lock();
    let at = p.base;
    // The buffer goes to the log now (its caller holds the file lock): later frames start after it.
    p.base += p.buf.len() as u64;
    (
        std::mem::take(&mut p.buf),
        p.seq,
        std::mem::take(&mut p.touched),
        at,
    )
}

/// After a flush ran out of space: cuts the log back to `at` (its last durable byte), and
/// forgets every frame not yet durable, those the flush took (`taken`) and those buffered
/// since, so that every producer waiting on one is refused. Runs under the file lock.
fn forget_unwritten(
    file: &File,
    pending: &Mutex<Pending>,
    at: u64,
    taken: Touched,
    durable_seq: u64,
) -> std::io::Result<()> {
    file.set_len(at)?;
    file.sync_data()?;
    let mut p = pending.lock();
    let through = p.seq;
    p.buf.clear();
    p.base = at;
    let buffered = std::mem::take(&mut p.touched);
    for (part, _) in taken.into_values().chain(buffered.into_values()) {
        let durable = *part.durable.borrow();
        part.state.lock().forget_from(durable);
    }
    match p.discarded.last_mut() {
        Some(range) if range.0 == durable_seq => range.1 = through,
        _ => p.discarded.push((durable_seq, through)),
    }
    p.refuse_until = Some(Instant::now() + REFUSE_WHEN_FULL);
    Ok(())
}

fn topic_frame(topic: &str, partitions: u32, out: &mut Vec<u8>) {
    let mut body = vec![FRAME_TOPIC];
    put_str16(topic, &mut body);
    body.extend_from_slice(&partitions.to_le_bytes());
    push_frame(&body, out);
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> BusResult<TopicChange> {
        validate_topic(topic, partitions)?;
        let _admin = self.admin.lock().await;
        let current = self.topics.read().get(topic).map(|p| p.len() as u32);
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
        let seq = {
            let mut p = self.wal.pending.lock();
            p.refuse_if_full()?;
            topic_frame(topic, partitions, &mut p.buf);
            p.seq += 1;
            p.seq
        };
        self.wal.flush_to(seq).await?;
        let mut topics = self.topics.write();
        let parts = topics.entry(topic.to_owned()).or_default();
        while parts.len() < partitions as usize {
            parts.push(Partition::new(Stored::new(self.wal.file.is_none())));
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
            let mut body = vec![FRAME_TOPIC_DELETE];
            put_str16(topic, &mut body);
            push_frame(&body, &mut p.buf);
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
        let mut placed = Vec::with_capacity(records.len());
        let seq = {
            let mut pending = self.wal.pending.lock();
            pending.refuse_if_full()?;
            for (key, value) in records {
                let p = partition_for(&key, count);
                let part = &parts[p as usize];
                let position = self
                    .wal
                    .file
                    .is_some()
                    .then(|| pending.base + pending.buf.len() as u64);
                if position.is_some() {
                    let mut body = Vec::with_capacity(24 + topic.len() + key.len() + value.len());
                    body.push(FRAME_RECORD);
                    put_str16(topic, &mut body);
                    body.extend_from_slice(&p.to_le_bytes());
                    body.extend_from_slice(&now.to_le_bytes());
                    body.extend_from_slice(&(key.len() as u32).to_le_bytes());
                    body.extend_from_slice(&key);
                    body.extend_from_slice(&value);
                    push_frame(&body, &mut pending.buf);
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
                let log = self
                    .log_reader
                    .clone()
                    .ok_or_else(|| BusError::Io("records left memory without a log".into()))?;
                let mut records =
                    tokio::task::spawn_blocking(move || read_back(&log, &on_disk, offset))
                        .await
                        .map_err(|e| BusError::Io(e.to_string()))?
                        .map_err(io)?;
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
        let key = (consumer.to_owned(), topic.to_owned(), partition);
        if self.wal.file.is_some() {
            let mut body = vec![FRAME_COMMIT];
            put_str16(&key.0, &mut body);
            put_str16(&key.1, &mut body);
            body.extend_from_slice(&key.2.to_le_bytes());
            body.extend_from_slice(&next.to_le_bytes());
            let mut p = self.wal.pending.lock();
            push_frame(&body, &mut p.buf);
            p.seq += 1;
        }
        self.committed.lock().insert(key, next);
        self.wal.schedule_flush();
        Ok(())
    }
}

/// Applies one frame of the log to the state being recovered; `None` if it is not a frame
/// this bus writes.
fn replay_frame(
    topics: &mut HashMap<String, Vec<Stored>>,
    committed: &mut HashMap<OffsetKey, u64>,
    position: u64,
    frame: &[u8],
) -> Option<()> {
    let mut r = Reader::new(frame);
    match r.take(1)?[0] {
        FRAME_TOPIC => {
            let name = r.str16()?;
            let count = r.u32()? as usize;
            let parts = topics.entry(name).or_default();
            if parts.len() < count {
                parts.resize_with(count, || Stored::new(false));
            }
        }
        FRAME_RECORD => {
            let RecordFrame { topic, mut record } = parse_record(frame)?;
            let stored = topics
                .get_mut(&topic)
                .and_then(|p| p.get_mut(record.partition as usize))?;
            record.offset = stored.len();
            let offset = record.offset;
            stored.push(Arc::new(record), Some(position));
            stored.trim(offset);
        }
        FRAME_TOPIC_DELETE => {
            let name = r.str16()?;
            topics.remove(&name);
            committed.retain(|(_, topic, _): &OffsetKey, _| *topic != name);
        }
        FRAME_COMMIT => {
            let key = (r.str16()?, r.str16()?, r.u32()?);
            committed.insert(key, r.u64()?);
        }
        _ => return None,
    }
    Some(())
}

fn io(e: std::io::Error) -> BusError {
    BusError::Io(e.to_string())
}
