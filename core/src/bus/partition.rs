//! One partition of the embedded bus: where each of its records sits in the log, and the newest
//! records themselves. Older records are read back from the log when a lagging consumer asks
//! for them, so memory stays bounded however long the log grows: positions of records in
//! folded segments are in the partition's index file, only newer ones in memory.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::frames::Frame;
use super::segments::Segments;
use super::snapshot::read_index;
use super::Record;

/// How many of a partition's newest records stay in memory (few in unit tests, so that they
/// exercise reading back from the log).
pub(super) const TAIL_KEEP: usize = if cfg!(test) { 1_000 } else { 8_192 };

pub(super) struct Partition {
    pub(super) state: Mutex<Stored>,
    /// How many records are durable, and so visible to consumers.
    pub(super) durable: watch::Sender<u64>,
}

pub(super) struct Stored {
    /// The partition's index file; `None` for a bus without a log.
    index: Option<PathBuf>,
    /// Records `0..indexed` have their log positions in the index file.
    indexed: u64,
    /// The log positions of records `indexed..`; empty for a bus without a log.
    positions: VecDeque<u64>,
    tail: VecDeque<Arc<Record>>,
    /// The offset of `tail[0]`.
    tail_start: u64,
}

/// Records no longer in memory: where to read them back from.
#[derive(Default)]
pub(super) struct OnDisk {
    /// The index file and the offsets `from..to` whose positions it holds.
    pub(super) indexed: Option<(PathBuf, u64, u64)>,
    /// Positions of the offsets after those.
    pub(super) positions: Vec<u64>,
}

impl OnDisk {
    pub(super) fn is_empty(&self) -> bool {
        self.indexed.is_none() && self.positions.is_empty()
    }
}

impl Partition {
    pub(super) fn new(stored: Stored) -> Arc<Partition> {
        let len = stored.len();
        Arc::new(Partition {
            state: Mutex::new(stored),
            durable: watch::Sender::new(len),
        })
    }
}

impl Stored {
    /// A partition of a bus without a log: every record stays in memory.
    pub(super) fn in_memory() -> Self {
        Self::logged_from(None, 0)
    }

    /// A partition whose first `indexed` records are in its index file `index`.
    pub(super) fn logged(index: PathBuf, indexed: u64) -> Self {
        Self::logged_from(Some(index), indexed)
    }

    fn logged_from(index: Option<PathBuf>, indexed: u64) -> Self {
        Self {
            index,
            indexed,
            positions: VecDeque::new(),
            tail: VecDeque::new(),
            tail_start: indexed,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.tail_start + self.tail.len() as u64
    }

    pub(super) fn push(&mut self, record: Arc<Record>, position: Option<u64>) {
        if let Some(p) = position {
            self.positions.push_back(p);
        }
        self.tail.push_back(record);
    }

    /// Drops the in-memory copies of durable records beyond the newest [`TAIL_KEEP`].
    pub(super) fn trim(&mut self, durable: u64) {
        if self.index.is_none() {
            return;
        }
        while self.tail.len() > TAIL_KEEP && self.tail_start < durable {
            self.tail.pop_front();
            self.tail_start += 1;
        }
    }

    /// How many record positions are held in memory.
    #[cfg(test)]
    pub(super) fn positions_in_memory(&self) -> usize {
        self.positions.len()
    }

    /// The index file now holds the positions of records `0..count`: forgets them here.
    pub(super) fn indexed_through(&mut self, count: u64) {
        while self.indexed < count && !self.positions.is_empty() {
            self.positions.pop_front();
            self.indexed += 1;
        }
    }

    /// Forgets the records from offset `len` on: appended, never made durable, and refused to
    /// their producers. Only records past the durable watermark are ever forgotten, and those
    /// are always still in memory (trimming and indexing reach durable records only).
    pub(super) fn forget_from(&mut self, len: u64) {
        if len >= self.len() {
            return;
        }
        self.tail
            .truncate(len.saturating_sub(self.tail_start) as usize);
        if self.index.is_some() {
            self.positions
                .truncate(len.saturating_sub(self.indexed) as usize);
        }
    }

    /// Records `from..to`: where to read those no longer in memory, and the others.
    pub(super) fn slice(&self, from: u64, to: u64) -> (OnDisk, Vec<Record>) {
        let mut on_disk = OnDisk::default();
        let disk_end = to.min(self.tail_start);
        if from < disk_end {
            if let Some(index) = &self.index {
                if from < self.indexed {
                    on_disk.indexed = Some((index.clone(), from, disk_end.min(self.indexed)));
                }
                let start = from.max(self.indexed);
                on_disk.positions = (start..disk_end)
                    .filter_map(|o| self.positions.get((o - self.indexed) as usize).copied())
                    .collect();
            }
        }
        let start = from.max(self.tail_start);
        let in_memory = (start..to)
            .filter_map(|o| self.tail.get((o - self.tail_start) as usize))
            .map(|r| Record::clone(r))
            .collect();
        (on_disk, in_memory)
    }
}

/// Reads records back from the log, checking each frame's checksum and that it is a record of
/// this partition; `first_offset` is the offset of the first.
pub(super) fn read_back(
    segments: &Segments,
    topic: &str,
    partition: u32,
    on_disk: OnDisk,
    first_offset: u64,
) -> std::io::Result<Vec<Record>> {
    let mut positions = match &on_disk.indexed {
        Some((index, from, to)) => read_index(index, *from, *to)?,
        None => Vec::new(),
    };
    positions.extend(on_disk.positions);
    let mut out = Vec::with_capacity(positions.len());
    for (i, &at) in positions.iter().enumerate() {
        let body = segments.read_frame(at)?;
        let record = match Frame::decode(&body) {
            Some(Frame::Record { topic: t, record })
                if t == topic && record.partition == partition =>
            {
                record
            }
            _ => {
                return Err(std::io::Error::other(format!(
                    "bus log position {at} does not hold record {} of {topic}/{partition}",
                    first_offset + i as u64
                )))
            }
        };
        out.push(Record {
            offset: first_offset + i as u64,
            ..record
        });
    }
    Ok(out)
}
