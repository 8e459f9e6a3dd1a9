//! Append-only files of checksummed frames: `[u32 length][u32 crc32][body]`.
//!
//! Besides data frames, a writer records how much of the file is on disk: right after an
//! fsync returns, it appends a **synced marker**, a frame whose length field has its top bit
//! set and whose body is the file's length at that sync (which is the marker's own offset). A
//! valid marker at offset `p` therefore proves that the first `p` bytes were synced: the
//! marker was only written once they were. Markers are not handed to readers. A marker is not
//! synced by itself; the next sync (or the kernel's writeback) makes it durable, so after a
//! power loss the synced length known can lag by one sync, never run ahead.
//!
//! Opening a file reads it frame by frame (never whole into memory) and tells a torn tail from
//! damage by where the first frame that is not whole starts:
//! - **Past the last synced length** (no valid marker after it): a write that was never
//!   acknowledged, cut short by a crash, its pages possibly reaching the disk out of order
//!   (so whole frames may follow the bad one). It is cut off, with a warning naming the file
//!   and what was cut, and appends continue from a clean end.
//! - **Inside what was synced** (a valid marker after it): **damage** to acknowledged data,
//!   even in the last frame of the file. Nothing is cut: opening fails with an error naming
//!   the file and the offset, and `mercato repair` (see [`repair`]) keeps what precedes the
//!   offset and moves the rest to a copy beside the file.
//!
//! A file with no marker at all (written before markers existed) is judged as it was then:
//! damage with a whole frame somewhere after it is corruption, anything else a torn tail.
//! Opening a file syncs it and appends a marker if it does not end with one, so every file
//! opened once speaks markers from its first byte on.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// A frame never holds more than this; a larger declared length is itself corruption.
pub const MAX_FRAME: u64 = 1 << 30;

/// The top bit of a synced marker's length field (no data frame is that long).
const MARKER: u32 = 1 << 31;

/// The bytes a synced marker takes.
pub const MARKER_LEN: u64 = 16;

pub fn push_frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// A synced marker for a file whose first `synced` bytes are on disk, to be written at offset
/// `synced` once the fsync covering them returned.
pub fn synced_marker(synced: u64) -> [u8; MARKER_LEN as usize] {
    let body = synced.to_le_bytes();
    let mut out = [0u8; MARKER_LEN as usize];
    out[..4].copy_from_slice(&(8 | MARKER).to_le_bytes());
    out[4..8].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out[8..].copy_from_slice(&body);
    out
}

/// Whether the 16 bytes at `offset` are a valid synced marker for that offset.
fn is_marker(bytes: &[u8], offset: u64) -> bool {
    bytes.len() >= MARKER_LEN as usize && bytes[..MARKER_LEN as usize] == synced_marker(offset)
}

/// Whether a failed write ran out of room (a full disk or quota, a file-size limit): nothing
/// is wrong with what is already written, and the same write can succeed once space returns.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// Why a frame file cannot be opened as it stands.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: the frame at byte {offset} is corrupt ({reason}) and {following} bytes of the file \
         follow it; nothing was cut. `mercato repair` keeps the {offset} bytes before it and \
         moves the rest to a copy beside the file",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
        following: u64,
    },
    #[error("{}: the frame at byte {offset} passes its checksum but does not decode: {reason}", path.display())]
    Undecodable {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> LogFileError + Copy + '_ {
    move |source| LogFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where reading a frame file stopped.
enum End {
    /// Every byte is a whole frame; `marked` when the last is a synced marker.
    Clean { marked: bool },
    /// A torn tail starts here.
    Torn { offset: u64 },
    /// Corruption starts here.
    Corrupt { offset: u64, reason: &'static str },
}

/// Reads every whole frame of `file` in order, handing each with its position to `visit`, and
/// says where reading stopped. Bodies are read one at a time into one reused buffer.
fn scan(
    path: &Path,
    file: &mut File,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<(u64, End), LogFileError> {
    let io = io_error(path);
    let file_len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = BufReader::with_capacity(1 << 20, &mut *file);
    let mut body = Vec::new();
    let mut pos = 0u64;
    let mut marked = false;
    let mut any_marker = false;
    let damage = loop {
        let left = file_len - pos;
        if left == 0 {
            break None;
        }
        if left < 8 {
            break Some((pos, "a header cut short"));
        }
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).map_err(io)?;
        let raw_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if raw_len & MARKER != 0 {
            if raw_len != MARKER | 8 || left < MARKER_LEN {
                break Some((pos, "a synced marker cut short or malformed"));
            }
            let mut marker = [0u8; MARKER_LEN as usize];
            marker[..8].copy_from_slice(&header);
            reader.read_exact(&mut marker[8..]).map_err(io)?;
            if crc32fast::hash(&marker[8..]) != crc {
                break Some((pos, "a checksum mismatch"));
            }
            if !is_marker(&marker, pos) {
                break Some((pos, "a synced marker naming another offset"));
            }
            marked = true;
            any_marker = true;
            pos += MARKER_LEN;
            continue;
        }
        let len = u64::from(raw_len);
        if len == 0 {
            break Some((pos, "a zero length"));
        }
        if len > MAX_FRAME || len > left - 8 {
            break Some((pos, "a length past the end of the file"));
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body).map_err(io)?;
        if crc32fast::hash(&body) != crc {
            break Some((pos, "a checksum mismatch"));
        }
        visit(pos, &body).map_err(|reason| LogFileError::Undecodable {
            path: path.to_owned(),
            offset: pos,
            reason,
        })?;
        marked = false;
        pos += 8 + len;
    };
    drop(reader);
    let end = match damage {
        None => End::Clean { marked },
        Some((offset, reason)) => {
            let synced_past = marker_after(file, offset, file_len).map_err(io)?;
            let damaged = if synced_past || any_marker {
                // A marker after the damage proves it was synced: acknowledged data. Without
                // one, it lies past the last synced length: a write the crash cut short.
                synced_past
            } else {
                // A file from before markers: a whole frame after the damage means
                // acknowledged data lies beyond it.
                whole_frame_after(file, offset, file_len).map_err(io)?
            };
            if damaged {
                End::Corrupt { offset, reason }
            } else {
                End::Torn { offset }
            }
        }
    };
    Ok((file_len, end))
}

/// Whether a valid synced marker for its own offset lies anywhere after `offset`, read in
/// windows. Looked for only on damage.
fn marker_after(file: &File, offset: u64, file_len: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    const WINDOW: usize = 1 << 20;
    let marker = MARKER_LEN as usize;
    let mut window = vec![0u8; WINDOW + marker];
    let mut start = offset + 1;
    while start + MARKER_LEN <= file_len {
        let n = (file_len - start).min(window.len() as u64) as usize;
        file.read_exact_at(&mut window[..n], start)?;
        let candidates = (n + 1).saturating_sub(marker).min(WINDOW);
        if (0..candidates).any(|i| is_marker(&window[i..n], start + i as u64)) {
            return Ok(true);
        }
        start += candidates.max(1) as u64;
    }
    Ok(false)
}

/// Whether a whole frame (a length that fits, a body that passes its checksum) starts anywhere
/// after `offset`. Looked for only on damage; bodies are checked at the positions whose header
/// could be a frame's, read in windows.
fn whole_frame_after(file: &File, offset: u64, file_len: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    const WINDOW: usize = 1 << 20;
    let mut window = vec![0u8; WINDOW + 8];
    let mut body = Vec::new();
    let mut start = offset + 1;
    while start + 8 < file_len {
        let n = (file_len - start).min(window.len() as u64) as usize;
        file.read_exact_at(&mut window[..n], start)?;
        let candidates = n.saturating_sub(7).min(WINDOW);
        for i in 0..candidates {
            let h = &window[i..i + 8];
            let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
            let at = start + i as u64;
            if len == 0 || len > MAX_FRAME || at + 8 + len > file_len {
                continue;
            }
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            body.resize(len as usize, 0);
            file.read_exact_at(&mut body, at + 8)?;
            if crc32fast::hash(&body) == crc {
                return Ok(true);
            }
        }
        start += candidates.max(1) as u64;
    }
    Ok(false)
}

/// Opens (creating if needed) a frame file for appending, hands each whole frame to `visit` in
/// order with its position, cuts a torn tail, and returns the file and its length. Corruption
/// is an error that cuts nothing; so is a frame `visit` refuses (its error names why).
///
/// What it keeps is synced and, unless the file already ends with one, followed by a synced
/// marker (counted in the length returned): whatever a crashed writer left unsynced but whole
/// is acknowledged from now on, and a new file speaks markers from its first byte.
pub fn open_frames(
    path: &Path,
    visit: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<(File, u64), LogFileError> {
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_error(path))?;
    if created {
        sync_parent(path).map_err(io_error(path))?;
    }
    let (file_len, end) = scan(path, &mut file, visit)?;
    let kept = match end {
        End::Clean { marked: true } => return Ok((file, file_len)),
        End::Clean { marked: false } => file_len,
        End::Torn { offset } => {
            tracing::warn!(
                path = %path.display(),
                kept = offset,
                cut = file_len - offset,
                "cutting a torn tail (an append a crash cut short, never acknowledged) off a log file"
            );
            file.set_len(offset).map_err(io_error(path))?;
            offset
        }
        End::Corrupt { offset, reason } => {
            return Err(LogFileError::Corrupt {
                path: path.to_owned(),
                offset,
                reason,
                following: file_len - offset,
            })
        }
    };
    file.sync_data().map_err(io_error(path))?;
    match file
        .write_all(&synced_marker(kept))
        .and_then(|()| file.sync_data())
    {
        Ok(()) => Ok((file, kept + MARKER_LEN)),
        // The marker is a help, not a need: a full disk must not stop a log from opening.
        Err(e) if is_out_of_space(&e) => {
            file.set_len(kept)
                .and_then(|()| file.sync_data())
                .map_err(io_error(path))?;
            Ok((file, kept))
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Appends a synced marker to `file`, whose first `synced` bytes an fsync just made durable,
/// without syncing it. A marker that cannot be written whole is cut off again; an error means
/// that failed too, and the file's end is unknown.
pub fn append_synced_marker(file: &mut File, synced: u64) -> io::Result<bool> {
    match file.write_all(&synced_marker(synced)) {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::debug!(error = %e, "a synced marker was not written");
            file.set_len(synced)?;
            Ok(false)
        }
    }
}

/// Reads every frame of a file that no longer grows (a sealed segment of a log), handing each
/// whole frame to `visit` with its position; returns its length. Such a file was synced whole
/// before anything was appended after it, so any damage, even at its end, is corruption.
pub fn read_sealed(
    path: &Path,
    visit: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<u64, LogFileError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let (file_len, end) = scan(path, &mut file, visit)?;
    match end {
        End::Clean { .. } => Ok(file_len),
        End::Torn { offset } => Err(LogFileError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: "a sealed segment ending short",
            following: file_len - offset,
        }),
        End::Corrupt { offset, reason } => Err(LogFileError::Corrupt {
            path: path.to_owned(),
            offset,
            reason,
            following: file_len - offset,
        }),
    }
}

/// Damage found in a frame file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the first frame that is not whole starts: every byte before it is whole frames.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub following: u64,
    /// A torn tail (opening cuts it by itself) rather than corruption (opening refuses).
    pub torn: bool,
    pub reason: &'static str,
}

/// Reads a frame file without changing it and says where it is damaged, if it is.
pub fn inspect(path: &Path) -> Result<Option<Damage>, LogFileError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let (file_len, end) = scan(path, &mut file, |_, _| Ok(()))?;
    Ok(match end {
        End::Clean { .. } => None,
        End::Torn { offset } => Some(Damage {
            offset,
            following: file_len - offset,
            torn: true,
            reason: "a torn tail",
        }),
        End::Corrupt { offset, reason } => Some(Damage {
            offset,
            following: file_len - offset,
            torn: false,
            reason,
        }),
    })
}

/// Makes a frame file openable again: everything from the first frame that is not whole (a
/// torn tail or corruption) to the end is first copied, synced, to `<file>.cut-<unix ms>`
/// beside it, and only then cut from the file. Returns the damage and the copy, or `None` when
/// the file is whole. Frames after the damage are cut too: both logs are replayed in order,
/// and a gap inside either would apply later records without the ones before them.
pub fn repair(path: &Path) -> Result<Option<(Damage, PathBuf)>, LogFileError> {
    let Some(damage) = inspect(path)? else {
        return Ok(None);
    };
    let copy = path.with_file_name(format!(
        "{}.cut-{}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        crate::clock::now_ms()
    ));
    (|| {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&copy)?;
        file.seek(SeekFrom::Start(damage.offset))?;
        let copied = io::copy(&mut (&mut file).take(damage.following), &mut out)?;
        if copied != damage.following {
            return Err(io::Error::other(
                "the file changed while it was being repaired",
            ));
        }
        out.flush()?;
        out.sync_all()?;
        sync_parent(&copy)?;
        file.set_len(damage.offset)?;
        file.sync_all()
    })()
    .map_err(io_error(path))?;
    Ok(Some((damage, copy)))
}

/// Creates `dir` (and its missing parents) and makes each new entry durable in its parent.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        sync_parent(created)?;
    }
    Ok(())
}

/// Makes a new entry in `path`'s directory durable: a file created and synced is not found
/// after a crash unless its directory was synced too.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }

    pub fn str16(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        self.take(n)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }

    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

pub fn put_str16(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..s.len().min(usize::from(u16::MAX))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            push_frame(b, &mut out);
        }
        out
    }

    fn read(path: &Path) -> Result<Vec<Vec<u8>>, LogFileError> {
        let mut got = Vec::new();
        open_frames(path, |_, body| {
            got.push(body.to_vec());
            Ok(())
        })?;
        Ok(got)
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let whole = frames(&[b"one", b"two"]);
        for tail in [
            &[7u8, 0, 0][..],                   // a header cut short
            &[200, 0, 0, 0, 1, 2, 3, 4, 5][..], // a body cut short
            &[0u8; 4096][..],                   // space allocated, never written
        ] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(tail);
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(read(&path).unwrap(), [b"one".to_vec(), b"two".to_vec()]);
            // Cut, and followed by a synced marker.
            let len = whole.len() as u64 + MARKER_LEN;
            assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        }
        // In a file from before markers, the last frame whole in length but failing its
        // checksum, with nothing after it, is a torn tail.
        let mut bytes = whole.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap(), [b"one".to_vec()]);
    }

    #[test]
    fn a_corrupt_middle_frame_is_refused_with_file_and_offset_and_cuts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut bytes = frames(&[b"one", b"two", b"three"]);
        let second = 8 + 3;
        bytes[second + 8] ^= 0x01; // a flipped bit in "two"
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&path).unwrap_err();
        match &err {
            LogFileError::Corrupt {
                offset, following, ..
            } => {
                assert_eq!(*offset, second as u64);
                assert_eq!(*following, (bytes.len() - second) as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("byte 11"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");

        // A length flipped so the frame seems to run past the end is corruption too: a whole
        // frame follows it.
        let mut long = frames(&[b"one", b"two", b"three"]);
        long[second + 3] = 0x40;
        std::fs::write(&path, &long).unwrap();
        assert!(matches!(
            read(&path),
            Err(LogFileError::Corrupt { offset: 11, .. })
        ));

        // Repair keeps what precedes the damage and a copy of everything it cuts.
        std::fs::write(&path, &bytes).unwrap();
        let (damage, copy) = repair(&path).unwrap().unwrap();
        assert!(!damage.torn);
        assert_eq!(std::fs::read(&copy).unwrap(), bytes[second..]);
        assert_eq!(read(&path).unwrap(), [b"one".to_vec()]);
        assert_eq!(repair(&path).unwrap(), None, "whole after repair");
    }

    /// A file as a writer leaves it: each append synced, then its marker.
    fn written(bodies: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        // A file starts with a marker: opening or creating it writes one.
        let mut out = synced_marker(0).to_vec();
        let mut offsets = Vec::new();
        for b in bodies {
            offsets.push(out.len() as u64);
            push_frame(b, &mut out);
            let synced = out.len() as u64;
            out.extend_from_slice(&synced_marker(synced));
        }
        (out, offsets)
    }

    #[test]
    fn a_bad_last_frame_inside_what_was_synced_is_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut bytes, offsets) = written(&[b"one", b"two"]);
        // "two" is whole in length, fails its checksum, and is the last frame; its marker says
        // it was synced, so it was acknowledged.
        bytes[offsets[1] as usize + 8] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        match read(&path) {
            Err(LogFileError::Corrupt { offset, .. }) => assert_eq!(offset, offsets[1]),
            other => panic!("expected damage at {}, got {other:?}", offsets[1]),
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
        let damage = inspect(&path).unwrap().unwrap();
        assert!(!damage.torn);

        // The same frame past the last marker (its append never synced) is a torn tail.
        let (mut synced, _) = written(&[b"one"]);
        let at = synced.len();
        push_frame(b"two", &mut synced);
        synced[at + 8] ^= 0x01;
        std::fs::write(&path, &synced).unwrap();
        assert_eq!(read(&path).unwrap(), [b"one".to_vec()]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            at as u64 + MARKER_LEN
        );
    }

    #[test]
    fn a_flush_whose_pages_reached_the_disk_out_of_order_is_torn_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // One append synced; then one flush of three frames, cut by a crash after its third
        // frame's page reached the disk but not its first's.
        let (mut bytes, _) = written(&[b"one"]);
        let kept = bytes.len();
        for body in [&b"two"[..], b"three", b"four"] {
            push_frame(body, &mut bytes);
        }
        bytes[kept..kept + 11].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        assert!(inspect(&path).unwrap().unwrap().torn);
        assert_eq!(read(&path).unwrap(), [b"one".to_vec()]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            kept as u64 + MARKER_LEN
        );
        // Appends go on from there, and what opening kept is marked synced.
        assert_eq!(read(&path).unwrap(), [b"one".to_vec()]);

        // Without markers (a file from before them) the same bytes read as corruption: a
        // whole frame follows the damage.
        let mut legacy = frames(&[b"one"]);
        let at = legacy.len();
        legacy.extend_from_slice(&frames(&[b"two", b"three", b"four"]));
        legacy[at..at + 11].fill(0);
        std::fs::write(&path, &legacy).unwrap();
        assert!(matches!(read(&path), Err(LogFileError::Corrupt { .. })));
    }

    #[test]
    fn a_frame_the_reader_refuses_names_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, frames(&[b"one", b"bad"])).unwrap();
        let err = open_frames(&path, |_, body| {
            if body == b"bad" {
                Err("not a frame of this log".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(
            matches!(err, LogFileError::Undecodable { offset: 11, .. }),
            "{err}"
        );
    }
}
