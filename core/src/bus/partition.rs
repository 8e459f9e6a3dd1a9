//! One partition of the embedded bus: where each of its records sits in the log, and the newest
//! records themselves. Older records are read back from the log when a lagging consumer asks
//! for them, so memory stays bounded however long the log grows.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::Record;
use crate::log_file::Reader;

/// How many of a partition's newest records stay in memory (few in unit tests, so that they
/// exercise reading back from the log).
pub(super) const TAIL_KEEP: usize = if cfg!(test) { 1_000 } else { 8_192 };

pub(super) const FRAME_RECORD: u8 = 2;

pub(super) struct Partition {
    pub(super) state: Mutex<Stored>,
    /// How many records are durable, and so visible to consumers.
    pub(super) durable: watch::Sender<u64>,
}

pub(super) struct Stored {
    /// The log position of every record's frame; empty for a bus without a log.
    positions: Vec<u64>,
    tail: VecDeque<Arc<Record>>,
    /// The offset of `tail[0]`.
    tail_start: u64,
    /// Without a log there is nowhere to read old records back from: keep them all.
    keep_all: bool,
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
    pub(super) fn new(keep_all: bool) -> Self {
        Self {
            positions: Vec::new(),
            tail: VecDeque::new(),
            tail_start: 0,
            keep_all,
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.tail_start + self.tail.len() as u64
    }

    pub(super) fn push(&mut self, record: Arc<Record>, position: Option<u64>) {
        if let Some(p) = position {
            self.positions.push(p);
        }
        self.tail.push_back(record);
    }

    /// Drops the in-memory copies of durable records beyond the newest [`TAIL_KEEP`].
    pub(super) fn trim(&mut self, durable: u64) {
        if self.keep_all {
            return;
        }
        while self.tail.len() > TAIL_KEEP && self.tail_start < durable {
            self.tail.pop_front();
            self.tail_start += 1;
        }
    }

    /// Forgets the records from offset `len` on: appended, never made durable, and refused to
    /// their producers. Only records past the durable watermark are ever forgotten, and those
    /// are always still in memory (trimming keeps everything not yet durable).
    pub(super) fn forget_from(&mut self, len: u64) {
        if len >= self.len() {
            return;
        }
        let keep = len.saturating_sub(self.tail_start) as usize;
        self.tail.truncate(keep);
        if !self.positions.is_empty() {
            self.positions.truncate(len as usize);
        }
    }

    /// Records `from..to`: the log positions of those no longer in memory, and the others.
    pub(super) fn slice(&self, from: u64, to: u64) -> (Vec<u64>, Vec<Record>) {
        let on_disk = if from < self.tail_start {
            let end = to.min(self.tail_start);
            self.positions[from as usize..end as usize].to_vec()
        } else {
            Vec::new()
        };
        let start = from.max(self.tail_start);
        let in_memory = (start..to)
            .filter_map(|o| self.tail.get((o - self.tail_start) as usize))
            .map(|r| Record::clone(r))
            .collect();
        (on_disk, in_memory)
    }
}

/// A record frame's body, decoded.
pub(super) struct RecordFrame {
    pub(super) topic: String,
    pub(super) record: Record,
}

/// Decodes a record frame's body; the record's offset is left at 0 for the caller to set.
pub(super) fn parse_record(body: &[u8]) -> Option<RecordFrame> {
    let mut r = Reader::new(body);
    if r.take(1)? != [FRAME_RECORD] {
        return None;
    }
    let topic = r.str16()?;
    let partition = r.u32()?;
    let timestamp_ms = r.u64()?;
    let klen = r.u32()? as usize;
    let key = r.take(klen)?.to_vec();
    let record = Record {
        partition,
        offset: 0,
        timestamp_ms,
        key,
        value: r.rest().to_vec(),
    };
    Some(RecordFrame { topic, record })
}

/// Reads records back from the log, checking each frame's checksum.
pub(super) fn read_back(
    log: &File,
    positions: &[u64],
    first_offset: u64,
) -> std::io::Result<Vec<Record>> {
    let corrupt =
        |at: u64| std::io::Error::other(format!("bus.log: bad record frame at byte {at}"));
    let mut out = Vec::with_capacity(positions.len());
    for (i, &at) in positions.iter().enumerate() {
        let mut header = [0u8; 8];
        log.read_exact_at(&mut header, at)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut body = vec![0u8; len];
        log.read_exact_at(&mut body, at + 8)?;
        if crc32fast::hash(&body) != crc {
            return Err(corrupt(at));
        }
        let mut record = parse_record(&body).ok_or_else(|| corrupt(at))?.record;
        record.offset = first_offset + i as u64;
        out.push(record);
    }
    Ok(out)
}
