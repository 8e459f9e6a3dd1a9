//! The embedded store's redo journal: what each group commit changed, made durable with one
//! sequential append and one `fdatasync` before the commit becomes visible.
//!
//! Writing redb's changed pages back and syncing them at every group commit cost more than
//! the changes themselves: the same hot pages (stock rows, the newest orders) were rewritten
//! hundreds of times a second. With the journal, a group commits to redb without a sync (its
//! pages stay in redb's write buffer), and a checkpoint now and then makes redb durable and
//! empties the journal. After a crash, redb opens at its last checkpoint and the journal's
//! records are applied again in order. A record holds each changed row's whole stored bytes
//! (or its deletion), never the write that produced them, so applying a record twice, or one
//! a checkpoint already holds, leaves the same rows.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

use crate::log_file::{
    append_synced_marker, open_frames, push_frame, LogFileError, Reader, MARKER_LEN,
};

/// One row's state after a group commit: its stored bytes (header and value), or `None` when
/// the group deleted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    pub stored: Option<Vec<u8>>,
}

/// What one group commit changed, and the version sequence after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub version_seq: u64,
    pub changes: Vec<Change>,
}

const DELETED: u8 = 0;
const STORED: u8 = 1;

impl Record {
    fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .changes
            .iter()
            .map(|c| 9 + c.key.len() + c.stored.as_ref().map_or(0, Vec::len))
            .sum();
        let mut out = Vec::with_capacity(12 + size);
        out.extend_from_slice(&self.version_seq.to_le_bytes());
        out.extend_from_slice(&(self.changes.len() as u32).to_le_bytes());
        for c in &self.changes {
            out.extend_from_slice(&(c.key.len() as u32).to_le_bytes());
            out.extend_from_slice(&c.key);
            match &c.stored {
                None => out.push(DELETED),
                Some(stored) => {
                    out.push(STORED);
                    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
                    out.extend_from_slice(stored);
                }
            }
        }
        out
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let mut r = Reader::new(body);
        let version_seq = r.u64()?;
        let count = r.u32()? as usize;
        let mut changes = Vec::with_capacity(count.min(body.len() / 9));
        for _ in 0..count {
            let key_len = r.u32()? as usize;
            let key = r.take(key_len)?.to_vec();
            let stored = match r.take(1)?[0] {
                DELETED => None,
                STORED => {
                    let len = r.u32()? as usize;
                    Some(r.take(len)?.to_vec())
                }
                _ => return None,
            };
            changes.push(Change { key, stored });
        }
        r.rest().is_empty().then_some(Record {
            version_seq,
            changes,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal i/o: {0}")]
    Io(#[from] io::Error),
    /// Corruption in the middle, or a checksummed frame that does not decode (written by
    /// something else, never torn): refused with the file and offset, nothing cut.
    #[error(transparent)]
    Log(#[from] LogFileError),
}

pub struct Journal {
    file: File,
    len: u64,
    /// Set when an append failed and the file could not be cut back: appending after a
    /// partial record would hide every later record from recovery, so nothing is appended.
    broken: bool,
    buf: Vec<u8>,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns the records it holds, oldest first.
    /// A torn record at the end (a crash mid-append, never acknowledged) is cut off.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let mut records = Vec::new();
        let (file, len) = open_frames(path, |_, body| {
            records.push(Record::decode(body).ok_or("not a journal record")?);
            Ok(())
        })?;
        Ok((
            Journal {
                file,
                len,
                broken: false,
                buf: Vec::new(),
            },
            records,
        ))
    }

    /// Appends a record and waits until it is on disk.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier journal append failed and could not be undone; restart the store",
            ));
        }
        self.buf.clear();
        push_frame(&record.encode(), &mut self.buf);
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                // Durable now, whatever happens to the marker after it.
                match append_synced_marker(&mut self.file, self.len) {
                    Ok(true) => self.len += MARKER_LEN,
                    Ok(false) => {}
                    Err(_) => self.broken = true,
                }
                Ok(())
            }
            Err(e) => {
                // Cut back to the last whole record, so a later append is not hidden behind a
                // partial one.
                if self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data())
                    .is_err()
                {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Cuts the journal back to `len` bytes (a length it had after a whole record): undoes
    /// the records appended since, whose group did not commit.
    pub fn cut_back(&mut self, len: u64) -> io::Result<()> {
        let cut = self.file.set_len(len).and_then(|()| self.file.sync_data());
        match cut {
            Ok(()) => {
                self.len = len;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Whether an append failed and could not be undone: nothing more is appended until the
    /// journal is opened again (which cuts the partial record as a torn tail).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Bytes held: what recovery would read.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Holds no record (a synced marker at most).
    pub fn is_empty(&self) -> bool {
        self.len <= MARKER_LEN
    }

    /// Empties the journal once what it holds is durable elsewhere.
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        // Empty now, even if the sync below fails: a later cut-back must not re-extend the
        // file to a stale length (zeros would read as a frame).
        self.len = 0;
        self.broken = false;
        // A marker first, so the journal speaks markers from its first byte: a crash in its
        // first append then reads as a torn tail, never as old-style corruption.
        if append_synced_marker(&mut self.file, 0)? {
            self.len = MARKER_LEN;
        }
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            version_seq: seq,
            changes: vec![
                Change {
                    key: b"k1".to_vec(),
                    stored: Some(vec![seq as u8; 40]),
                },
                Change {
                    key: b"k2".to_vec(),
                    stored: None,
                },
            ],
        }
    }

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, none) = Journal::open(&path).unwrap();
        assert!(none.is_empty());
        for seq in 1..=3 {
            j.append(&record(seq)).unwrap();
        }
        drop(j);
        // A crash mid-append: half a frame at the end.
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (mut j, records) = Journal::open(&path).unwrap();
        assert_eq!(records, vec![record(1), record(2), record(3)]);
        // Cut back to the last whole record, and marked synced there.
        assert_eq!(j.len(), whole + MARKER_LEN);
        // Appends continue after the last whole record.
        j.append(&record(4)).unwrap();
        drop(j);
        let (mut j, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3], record(4));
        j.clear().unwrap();
        drop(j);
        let (j, records) = Journal::open(&path).unwrap();
        assert!(records.is_empty() && j.is_empty());
    }

    #[test]
    fn a_checksummed_record_that_does_not_decode_is_an_error_not_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut bytes = Vec::new();
        push_frame(&[1, 2, 3], &mut bytes);
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Log(LogFileError::Undecodable {
                offset: 0,
                ..
            }))
        ));
    }
}
