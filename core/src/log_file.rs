//! Append-only files of checksummed frames: `[u32 length][u32 crc32][body]`.
//!
//! A crash can leave a torn frame at the end; reading stops at the first frame that is short or
//! fails its checksum, and the file is cut back to the last whole frame so appends continue from
//! a clean end. Nothing before that point is ever lost or reordered.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

pub fn push_frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// A frame's position in its file, and its body.
pub type Frame = (u64, Vec<u8>);

/// Opens (creating if needed) a frame file for appending and returns the position and body of
/// each of its whole frames, after cutting off any torn tail.
pub fn open_frames(path: &Path) -> io::Result<(File, Vec<Frame>)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut bodies = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        bodies.push((pos as u64, body.to_vec()));
        pos += 8 + len;
    }
    if pos < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            kept = pos,
            dropped = bytes.len() - pos,
            "cutting a torn tail off a log file"
        );
        file.set_len(pos as u64)?;
        file.sync_data()?;
    }
    Ok((file, bodies))
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
