//! The embedded bus's log as segment files: `bus-<position>.log`, each named by the log
//! position of its first byte. Positions run on across segments, so a record's position says
//! which file holds it. Appends go to the last segment; once it has grown past its size, the
//! next flush starts a new one, and the one before is sealed: it never changes again, which
//! lets a snapshot stand in for it at start-up (see `snapshot`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::log_file::{sync_parent, synced_marker, MAX_FRAME};

/// A segment is sealed once it has grown past this.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// The single log file of buses written before segments; it becomes the first segment.
const LEGACY_LOG: &str = "bus.log";

pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("bus-{base:020}.log"))
}

fn segment_base(name: &str) -> Option<u64> {
    name.strip_prefix("bus-")?
        .strip_suffix(".log")
        .filter(|digits| digits.len() == 20)?
        .parse()
        .ok()
}

/// Every segment in `dir`, oldest first, by base position; a legacy `bus.log` is renamed to
/// the first segment.
pub(super) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let legacy = dir.join(LEGACY_LOG);
    if legacy.exists() {
        let first = segment_path(dir, 0);
        if first.exists() {
            return Err(io::Error::other(format!(
                "both {} and {} exist: move one of them away",
                legacy.display(),
                first.display()
            )));
        }
        std::fs::rename(&legacy, &first)?;
        sync_parent(&first)?;
        tracing::info!(from = %legacy.display(), to = %first.display(), "the bus log became its first segment");
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(segment_base) {
            found.push((base, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Read handles on every segment, for records no longer kept in memory.
pub(super) struct Segments {
    dir: PathBuf,
    readers: RwLock<BTreeMap<u64, Arc<File>>>,
}

impl Segments {
    pub(super) fn open(dir: &Path, bases: &[u64]) -> io::Result<Segments> {
        let mut readers = BTreeMap::new();
        for &base in bases {
            readers.insert(base, Arc::new(File::open(segment_path(dir, base))?));
        }
        Ok(Segments {
            dir: dir.to_owned(),
            readers: RwLock::new(readers),
        })
    }

    /// Creates the segment that starts at `base` and returns it, open for appending. It starts
    /// with a synced marker (see [`crate::log_file`]), synced, so a crash in its first flush
    /// reads as a torn tail; its first frame sits at `base + MARKER_LEN`. A segment that could
    /// not be made whole is removed again.
    pub(super) fn create(&self, base: u64) -> io::Result<File> {
        let path = segment_path(&self.dir, base);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        let started = file
            .write_all(&synced_marker(0))
            .and_then(|()| file.sync_data())
            .and_then(|()| sync_parent(&path));
        if let Err(e) = started {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.readers
            .write()
            .insert(base, Arc::new(File::open(&path)?));
        Ok(file)
    }

    /// The body of the frame at log position `at`, its checksum checked.
    pub(super) fn read_frame(&self, at: u64) -> io::Result<Vec<u8>> {
        let (base, file) = self
            .readers
            .read()
            .range(..=at)
            .next_back()
            .map(|(base, file)| (*base, Arc::clone(file)))
            .ok_or_else(|| io::Error::other(format!("no bus segment holds position {at}")))?;
        let corrupt = |why: &str| {
            io::Error::other(format!(
                "{}: {why} at byte {}",
                segment_path(&self.dir, base).display(),
                at - base
            ))
        };
        let mut header = [0u8; 8];
        file.read_exact_at(&mut header, at - base)?;
        let len = u64::from(u32::from_le_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_FRAME {
            return Err(corrupt("a frame of impossible length"));
        }
        let mut body = vec![0u8; len as usize];
        file.read_exact_at(&mut body, at - base + 8)?;
        if crc32fast::hash(&body) != crc {
            return Err(corrupt("a frame failing its checksum"));
        }
        Ok(body)
    }
}
