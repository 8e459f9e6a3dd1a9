//! What the embedded bus knows as of a log position, so that start-up reads only the segments
//! after it: every topic (with the log position of the frame that created it, its
//! incarnation), how many records each partition holds, and every committed offset. Where each
//! record sits in the log is kept per partition in an index file of 8-byte positions, read
//! when a lagging consumer asks for old records.
//!
//! A sealed segment is folded into the snapshot in the background: its frames are read back,
//! each record's position appended to its partition's index, the indexes synced, then the
//! snapshot written aside and renamed over the old one. The segments stay the truth: a
//! snapshot that is missing, unreadable or disagrees with its indexes is rebuilt from them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::frames::Frame;
use super::segments::segment_path;
use crate::log_file::{push_frame, put_str16, read_sealed, sync_parent, LogFileError, Reader};

const SNAPSHOT_FILE: &str = "snapshot";
const INDEX_DIR: &str = "index";
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TopicState {
    /// The log position of the frame that created the topic: a topic deleted and created
    /// again under its name is another incarnation, with other index files.
    pub(super) incarnation: u64,
    /// Records per partition.
    pub(super) counts: Vec<u64>,
}

pub(super) type OffsetKey = (String, String, u32);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    /// Every frame before this log position is in the snapshot: the segment that starts here
    /// is the first start-up reads.
    pub(super) through: u64,
    pub(super) topics: BTreeMap<String, TopicState>,
    pub(super) committed: BTreeMap<OffsetKey, u64>,
}

pub(super) fn index_dir(dir: &Path) -> PathBuf {
    dir.join(INDEX_DIR)
}

pub(super) fn index_path(dir: &Path, topic: &str, incarnation: u64, partition: u32) -> PathBuf {
    index_dir(dir).join(format!("{topic}.{incarnation}.{partition}.idx"))
}

/// The log positions of a partition's records `from..to`, from its index file.
pub(super) fn read_index(path: &Path, from: u64, to: u64) -> io::Result<Vec<u64>> {
    let mut bytes = vec![0u8; ((to - from) * 8) as usize];
    File::open(path)?.read_exact_at(&mut bytes, from * 8)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

impl Snapshot {
    /// The snapshot in `dir`, if there is a readable one; an unreadable one is reported and
    /// ignored (start-up then reads every segment, which hold everything).
    pub(super) fn load(dir: &Path) -> Option<Snapshot> {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the bus snapshot; reading every segment instead");
                return None;
            }
        };
        let decoded = (bytes.len() >= 8)
            .then(|| {
                let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                let body = &bytes[8..];
                (body.len() == len && crc32fast::hash(body) == crc)
                    .then(|| Snapshot::decode(body))
                    .flatten()
            })
            .flatten();
        if decoded.is_none() {
            tracing::warn!(path = %path.display(), "the bus snapshot is damaged; reading every segment instead");
        }
        decoded
    }

    /// Writes the snapshot aside, syncs it, and renames it over the last one.
    pub(super) fn save(&self, dir: &Path) -> io::Result<()> {
        let path = dir.join(SNAPSHOT_FILE);
        let aside = dir.join(format!("{SNAPSHOT_FILE}.new"));
        let mut bytes = Vec::new();
        push_frame(&self.encode(), &mut bytes);
        let mut file = File::create(&aside)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&aside, &path)?;
        sync_parent(&path)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.through.to_le_bytes());
        out.extend_from_slice(&(self.topics.len() as u32).to_le_bytes());
        for (name, topic) in &self.topics {
            put_str16(name, &mut out);
            out.extend_from_slice(&topic.incarnation.to_le_bytes());
            out.extend_from_slice(&(topic.counts.len() as u32).to_le_bytes());
            for count in &topic.counts {
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.committed.len() as u32).to_le_bytes());
        for ((consumer, topic, partition), next) in &self.committed {
            put_str16(consumer, &mut out);
            put_str16(topic, &mut out);
            out.extend_from_slice(&partition.to_le_bytes());
            out.extend_from_slice(&next.to_le_bytes());
        }
        out
    }

    fn decode(body: &[u8]) -> Option<Snapshot> {
        let mut r = Reader::new(body);
        if r.take(1)? != [VERSION] {
            return None;
        }
        let through = r.u64()?;
        let mut topics = BTreeMap::new();
        for _ in 0..r.u32()? {
            let name = r.str16()?;
            let incarnation = r.u64()?;
            let partitions = r.u32()? as usize;
            let counts = (0..partitions)
                .map(|_| r.u64())
                .collect::<Option<Vec<u64>>>()?;
            topics.insert(
                name,
                TopicState {
                    incarnation,
                    counts,
                },
            );
        }
        let mut committed = BTreeMap::new();
        for _ in 0..r.u32()? {
            let key = (r.str16()?, r.str16()?, r.u32()?);
            committed.insert(key, r.u64()?);
        }
        r.rest().is_empty().then_some(Snapshot {
            through,
            topics,
            committed,
        })
    }

    /// Whether every partition's index holds its records' positions; longer indexes (a fold
    /// that stopped before its snapshot was written) are cut back.
    pub(super) fn indexes_agree(&self, dir: &Path) -> io::Result<bool> {
        for (name, topic) in &self.topics {
            for (p, &count) in topic.counts.iter().enumerate() {
                let path = index_path(dir, name, topic.incarnation, p as u32);
                let len = match std::fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e),
                };
                if len < count * 8 {
                    return Ok(false);
                }
                if len > count * 8 {
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(count * 8)?;
                    file.sync_data()?;
                }
            }
        }
        Ok(true)
    }

    /// Applies one frame at log position `position`; a record's position is added to
    /// `indexed`, keyed by partition and incarnation.
    pub(super) fn apply(
        &mut self,
        position: u64,
        frame: Frame,
        indexed: &mut HashMap<(String, u64, u32), Vec<u64>>,
    ) -> Result<(), String> {
        match frame {
            Frame::Topic { name, partitions } => {
                let topic = self.topics.entry(name).or_insert(TopicState {
                    incarnation: position,
                    counts: Vec::new(),
                });
                if topic.counts.len() < partitions as usize {
                    topic.counts.resize(partitions as usize, 0);
                }
            }
            Frame::Record { topic, record } => {
                let state = self
                    .topics
                    .get_mut(&topic)
                    .ok_or("a record of a topic that does not exist")?;
                let count = state
                    .counts
                    .get_mut(record.partition as usize)
                    .ok_or("a record of a partition that does not exist")?;
                *count += 1;
                indexed
                    .entry((topic, state.incarnation, record.partition))
                    .or_default()
                    .push(position);
            }
            Frame::TopicDelete { name } => {
                self.topics.remove(&name);
                self.committed.retain(|(_, topic, _), _| *topic != name);
            }
            Frame::Commit {
                consumer,
                topic,
                partition,
                next,
            } => {
                self.committed.insert((consumer, topic, partition), next);
            }
        }
        Ok(())
    }

    /// Folds the sealed segment `base..next_base` in: its records' positions are appended to
    /// their indexes (synced), and the snapshot then covers everything before `next_base`.
    /// Nothing changes on failure (indexes may have grown; the next fold cuts them back).
    pub(super) fn fold(&mut self, dir: &Path, base: u64, next_base: u64) -> Result<(), FoldError> {
        let mut next = self.clone();
        let mut indexed = HashMap::new();
        read_sealed(&segment_path(dir, base), |offset, body| {
            let frame = Frame::decode(body).ok_or("not a bus frame")?;
            next.apply(base + offset, frame, &mut indexed)
        })?;
        next.write_indexes(dir, indexed)?;
        next.through = next_base;
        next.save(dir)?;
        *self = next;
        self.collect_garbage(dir);
        Ok(())
    }

    fn write_indexes(
        &self,
        dir: &Path,
        indexed: HashMap<(String, u64, u32), Vec<u64>>,
    ) -> io::Result<()> {
        let mut created = false;
        for ((topic, incarnation, partition), positions) in indexed {
            let count = self
                .topics
                .get(&topic)
                .filter(|t| t.incarnation == incarnation)
                .and_then(|t| t.counts.get(partition as usize).copied());
            // A topic deleted later in the segment: nothing will read its index.
            let Some(count) = count else { continue };
            let path = index_path(dir, &topic, incarnation, partition);
            created |= !path.exists();
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            // Cut back what an earlier fold that failed may have appended.
            file.set_len((count - positions.len() as u64) * 8)?;
            let bytes: Vec<u8> = positions.iter().flat_map(|p| p.to_le_bytes()).collect();
            file.write_all(&bytes)?;
            file.sync_data()?;
        }
        if created {
            File::open(index_dir(dir))?.sync_all()?;
        }
        Ok(())
    }

    /// Removes the index files of topics deleted before the snapshot.
    fn collect_garbage(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(index_dir(dir)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((topic, incarnation)) = name.to_str().and_then(|n| {
                let mut parts = n.strip_suffix(".idx")?.split('.');
                let topic = parts.next()?.to_owned();
                let incarnation: u64 = parts.next()?.parse().ok()?;
                Some((topic, incarnation))
            }) else {
                continue;
            };
            let live = self
                .topics
                .get(&topic)
                .is_some_and(|t| t.incarnation == incarnation);
            if !live && incarnation < self.through {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum FoldError {
    #[error(transparent)]
    Log(#[from] LogFileError),
    #[error("bus snapshot: {0}")]
    Io(#[from] io::Error),
}

/// Folds sealed segments into the snapshot in the background, one at a time, in order.
pub(super) struct Compactor {
    dir: PathBuf,
    /// Only the folding thread touches it.
    snapshot: Mutex<Snapshot>,
    /// Sealed segments not yet folded: (base, next segment's base). Its own lock, so that
    /// sealing (in a flush) never waits for a fold.
    sealed: Mutex<VecDeque<(u64, u64)>>,
    running: AtomicBool,
    /// Set when the bus closes: the fold under way finishes, the rest wait for the next open.
    closing: AtomicBool,
    /// Tells the running bus how far each partition's index reaches now.
    publish: Box<dyn Fn(&Snapshot) + Send + Sync>,
}

impl Compactor {
    pub(super) fn new(
        dir: &Path,
        snapshot: Snapshot,
        publish: Box<dyn Fn(&Snapshot) + Send + Sync>,
    ) -> Arc<Compactor> {
        Arc::new(Compactor {
            dir: dir.to_owned(),
            snapshot: Mutex::new(snapshot),
            sealed: Mutex::new(VecDeque::new()),
            running: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            publish,
        })
    }

    /// Queues a sealed segment and folds whatever is queued on a thread of its own. A fold
    /// that fails (a full disk) stays queued and is tried again after the next seal.
    pub(super) fn sealed(self: &Arc<Self>, base: u64, next_base: u64) {
        self.sealed.lock().push_back((base, next_base));
        self.start();
    }

    fn start(self: &Arc<Self>) {
        if self.closing.load(Ordering::Acquire) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let compactor = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("bus-compactor".into())
            .spawn(move || compactor.fold_queued());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the bus compactor; trying again at the next seal");
            self.running.store(false, Ordering::Release);
        }
    }

    fn fold_queued(self: Arc<Self>) {
        let mut failed = false;
        while !failed && !self.closing.load(Ordering::Acquire) {
            let Some((base, next_base)) = self.sealed.lock().front().copied() else {
                break;
            };
            let mut snapshot = self.snapshot.lock();
            match snapshot.fold(&self.dir, base, next_base) {
                Ok(()) => {
                    self.sealed.lock().pop_front();
                    tracing::debug!(segment = base, "bus segment folded into the snapshot");
                    (self.publish)(&snapshot);
                }
                Err(e) => {
                    tracing::warn!(segment = base, error = %e, "folding a bus segment into the snapshot failed; trying again after the next seal");
                    failed = true;
                }
            }
        }
        self.running.store(false, Ordering::Release);
        // A segment sealed after the queue looked empty, and before `running` was cleared.
        if !failed && !self.closing.load(Ordering::Acquire) && !self.sealed.lock().is_empty() {
            self.start();
        }
    }

    /// Waits until every queued segment is folded (or a fold failed): for tests.
    #[cfg(test)]
    pub(super) fn settle(&self) {
        self.wait_idle();
    }

    /// Lets the fold under way finish and starts no other: the bus is closing, and the next
    /// open must not find a fold still writing the snapshot or an index.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wait_idle();
    }

    fn wait_idle(&self) {
        while self.running.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
