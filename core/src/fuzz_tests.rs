//! Property-based fuzzing (hardening 8) of the two decoders that read what the outside world or
//! a crash left behind: log frame files and product records. cargo-fuzz needs a nightly
//! toolchain, which this project's machines do not have; proptest runs on stable, in every test
//! run, for a bounded number of cases (`PROPTEST_CASES` raises it), and saves any failure it
//! finds under `proptest-regressions/` so it is replayed first ever after.

use std::path::Path;

use proptest::prelude::*;

use crate::domain::catalog::{normalize_product, NormalizeContext};
use crate::log_file::{inspect, open_frames, push_frame, synced_marker, LogFileError, MARKER_LEN};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        ..ProptestConfig::default()
    }
}

/// Opens `bytes` as a frame file and returns the frames visited and what opening said.
fn open_bytes(dir: &Path, bytes: &[u8]) -> (Vec<Vec<u8>>, Result<u64, LogFileError>) {
    let path = dir.join("log");
    std::fs::write(&path, bytes).expect("a temporary file");
    let mut seen = Vec::new();
    let opened = open_frames(&path, |_, body| {
        seen.push(body.to_vec());
        Ok(())
    })
    .map(|(_, len)| len);
    (seen, opened)
}

fn framed(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in bodies {
        push_frame(b, &mut out);
    }
    out
}

/// What a writer leaves: each body appended and synced, then its synced marker.
fn written(bodies: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    // A file starts with a marker: opening or creating it writes one.
    let mut out = synced_marker(0).to_vec();
    let mut offsets = Vec::new();
    for b in bodies {
        offsets.push(out.len());
        push_frame(b, &mut out);
        let synced = out.len() as u64;
        out.extend_from_slice(&synced_marker(synced));
    }
    (out, offsets)
}

fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..12)
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes at all: opening and inspecting never panic, and they agree on what they found.
    #[test]
    fn any_bytes_open_or_are_refused_and_inspect_agrees(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, &bytes).unwrap();
        let damage = inspect(&path).unwrap();
        let (_, opened) = open_bytes(dir.path(), &bytes);
        match (damage, opened) {
            // Opening adds a synced marker after what it keeps.
            (None, Ok(len)) => prop_assert_eq!(len, bytes.len() as u64 + MARKER_LEN),
            (Some(d), Ok(len)) => {
                prop_assert!(d.torn, "only a torn tail is cut: {:?}", d);
                prop_assert_eq!(len, d.offset + MARKER_LEN);
            }
            (Some(d), Err(LogFileError::Corrupt { offset, .. })) => {
                prop_assert!(!d.torn);
                prop_assert_eq!(offset, d.offset);
            }
            (d, other) => prop_assert!(false, "inspect said {:?}, open said {:?}", d, other.map_err(|e| e.to_string())),
        }
    }

    /// A crash cuts an append short anywhere: the frames written whole before the cut are all
    /// read back, in order, and the torn rest is cut, never reported as damage.
    #[test]
    fn a_cut_anywhere_keeps_every_whole_frame(bodies in bodies(), cut in any::<prop::sample::Index>()) {
        let bytes = framed(&bodies);
        let at = if bytes.is_empty() { 0 } else { cut.index(bytes.len() + 1) };
        let dir = tempfile::tempdir().unwrap();
        let (seen, opened) = open_bytes(dir.path(), &bytes[..at]);
        let len = opened.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut whole = 0;
        let mut end = 0u64;
        for b in &bodies {
            if end + 8 + b.len() as u64 > at as u64 {
                break;
            }
            end += 8 + b.len() as u64;
            whole += 1;
        }
        prop_assert_eq!(&seen[..], &bodies[..whole]);
        prop_assert_eq!(len, end + MARKER_LEN);
    }

    /// The last flush (frames after the last synced marker) reaches the disk in any order: any
    /// stretch of it lost (zeros), even with whole frames after, is a torn tail, and every
    /// frame before it is kept.
    #[test]
    fn a_flush_torn_with_its_pages_out_of_order_is_cut_never_damage(
        synced in bodies(),
        flush in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..6),
        from in any::<prop::sample::Index>(),
        span in 1usize..64,
    ) {
        let (mut bytes, _) = written(&synced);
        let kept = bytes.len();
        bytes.extend_from_slice(&framed(&flush));
        let lost_from = kept + from.index(bytes.len() - kept);
        let lost_to = (lost_from + span).min(bytes.len());
        bytes[lost_from..lost_to].fill(0);
        let dir = tempfile::tempdir().unwrap();
        let (seen, opened) = open_bytes(dir.path(), &bytes);
        let len = opened.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&seen[..synced.len()], &synced[..]);
        prop_assert!(len as usize >= kept + MARKER_LEN as usize);
    }

    /// A flipped bit in any frame a writer synced, the last one included, is damage: opening
    /// refuses at that frame's offset and cuts nothing.
    #[test]
    fn a_flipped_bit_in_any_synced_frame_even_the_last_is_refused(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..8),
        which in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut bytes, offsets) = written(&bodies);
        let victim = which.index(bodies.len());
        bytes[offsets[victim] + 8 + byte.index(bodies[victim].len())] ^= 1 << bit;
        let dir = tempfile::tempdir().unwrap();
        let (_, opened) = open_bytes(dir.path(), &bytes);
        match opened {
            Err(LogFileError::Corrupt { offset: at, .. }) => prop_assert_eq!(at, offsets[victim] as u64),
            other => prop_assert!(false, "expected corruption at {}, got {:?}", offsets[victim], other.map_err(|e| e.to_string())),
        }
        prop_assert_eq!(std::fs::read(dir.path().join("log")).unwrap(), bytes, "nothing was cut");
    }

    /// In a file from before synced markers, one flipped bit in the body of a frame that is
    /// followed by others is damage: opening refuses at that frame's offset and drops nothing.
    #[test]
    fn a_flipped_bit_in_an_acknowledged_frame_is_refused(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 2..8),
        which in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let victim = which.index(bodies.len() - 1); // never the last frame
        let offset: usize = bodies[..victim].iter().map(|b| 8 + b.len()).sum();
        let mut bytes = framed(&bodies);
        bytes[offset + 8 + byte.index(bodies[victim].len())] ^= 1 << bit;
        let dir = tempfile::tempdir().unwrap();
        let (_, opened) = open_bytes(dir.path(), &bytes);
        match opened {
            Err(LogFileError::Corrupt { offset: at, .. }) => prop_assert_eq!(at, offset as u64),
            other => prop_assert!(false, "expected corruption at {}, got {:?}", offset, other.map_err(|e| e.to_string())),
        }
    }
}

const CTX: NormalizeContext<'static> = NormalizeContext {
    seller: "acme",
    inventory: "books",
    currency: Some("USD"),
};

const RECORD: &str = r#"{"sku":"BK-1","name":"The Left Hand of Darkness","description":"A novel","category":"Books > Science Fiction","price":"12.50","currency":"USD","attributes":{"author":"Ursula K. Le Guin","pages":304,"signed":false}}"#;

/// A valid text with a few random edits: most are near-misses of the grammar, which reach far
/// deeper into a parser than random bytes do.
fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), 0u8..3, any::<u8>());
    prop::collection::vec(edit, 1..8).prop_map(move |edits| {
        let mut bytes = base.as_bytes().to_vec();
        for (at, op, b) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => {
                    bytes.remove(i);
                }
                1 if i < bytes.len() => bytes[i] = b,
                _ => bytes.insert(i, b),
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Any record, however broken, is a product or a refusal with a code and a reason.
    #[test]
    fn any_record_is_normalized_or_refused_with_a_code(raw in prop_oneof![
        mutated(RECORD),
        prop::collection::vec(any::<u8>(), 0..256),
        "\\PC{0,200}".prop_map(String::into_bytes),
    ]) {
        match normalize_product(&raw, CTX) {
            Ok(p) => {
                prop_assert!(!p.sku.is_empty());
                prop_assert!(!p.name.is_empty());
                prop_assert!(p.price.amount >= 0);
            }
            Err(e) => {
                prop_assert!(!e.code.is_empty());
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
