//! Opening the embedded bus: the snapshot stands in for the segments it covers, and the frames
//! of the segments after it are applied on top (the last one's torn tail cut). Start-up so
//! reads about one segment, however long the log. Opening needs no space: besides cutting a
//! torn tail, it only cuts index files back to the snapshot's counts, and sealed segments the
//! snapshot does not cover yet (a crash before the compactor got to them) are read and handed
//! to the compactor, so a bus opens even on a full disk.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::frames::Frame;
use super::partition::Stored;
use super::segments::{self, segment_path, Segments};
use super::snapshot::{index_dir, index_path, OffsetKey, Snapshot};
use super::{BusError, BusResult};
use crate::log_file::{create_dir_durable, open_frames, read_sealed};

/// A topic as recovered: its incarnation and its partitions.
pub(super) type RecoveredTopics = HashMap<String, (u64, Vec<Stored>)>;

pub(super) struct Recovered {
    pub(super) topics: RecoveredTopics,
    pub(super) committed: HashMap<OffsetKey, u64>,
    /// The last segment, open for appending, and its base.
    pub(super) active: (File, u64),
    /// The log position after the last whole frame.
    pub(super) end: u64,
    pub(super) segments: Segments,
    pub(super) snapshot: Snapshot,
    /// Sealed segments to fold into the snapshot: (base, next segment's base).
    pub(super) unfolded: Vec<(u64, u64)>,
}

fn io(e: impl std::fmt::Display) -> BusError {
    BusError::Io(e.to_string())
}

pub(super) fn recover(dir: &Path) -> BusResult<Recovered> {
    create_dir_durable(dir).map_err(io)?;
    create_dir_durable(&index_dir(dir)).map_err(io)?;
    let mut listed = segments::list(dir).map_err(io)?;
    if listed.is_empty() {
        listed.push((0, segment_path(dir, 0)));
    }
    let bases: Vec<u64> = listed.iter().map(|(base, _)| *base).collect();
    let snapshot = Snapshot::load(dir).filter(|s| {
        let usable = bases.contains(&s.through) && s.indexes_agree(dir).unwrap_or(false);
        if !usable {
            tracing::warn!(through = s.through, "the bus snapshot does not match the segments or their indexes; reading every segment instead");
        }
        usable
    });
    let snapshot = match snapshot {
        Some(s) => s,
        None if bases[0] == 0 => Snapshot::default(),
        None => {
            return Err(BusError::Io(format!(
            "{}: the bus log starts at position {} and there is no snapshot of what came before",
            dir.display(),
            bases[0]
        )))
        }
    };
    let unread: Vec<u64> = bases
        .iter()
        .copied()
        .filter(|&b| b >= snapshot.through)
        .collect();
    let (last, sealed) = unread
        .split_last()
        .ok_or_else(|| BusError::Io("the bus snapshot is past the last segment".into()))?;
    let mut topics: RecoveredTopics = snapshot
        .topics
        .iter()
        .map(|(name, t)| {
            let partitions = t
                .counts
                .iter()
                .enumerate()
                .map(|(p, &count)| {
                    Stored::logged(index_path(dir, name, t.incarnation, p as u32), count)
                })
                .collect();
            (name.clone(), (t.incarnation, partitions))
        })
        .collect();
    let mut committed: HashMap<OffsetKey, u64> = snapshot
        .committed
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut unfolded = Vec::new();
    for (i, &base) in sealed.iter().enumerate() {
        read_sealed(&segment_path(dir, base), |offset, body| {
            let frame = Frame::decode(body).ok_or("not a bus frame")?;
            replay(dir, &mut topics, &mut committed, base + offset, frame)
        })
        .map_err(io)?;
        unfolded.push((base, unread[i + 1]));
    }
    let (file, len) = open_frames(&segment_path(dir, *last), |offset, body| {
        let frame = Frame::decode(body).ok_or("not a bus frame")?;
        replay(dir, &mut topics, &mut committed, last + offset, frame)
    })
    .map_err(io)?;
    let segments = Segments::open(dir, &bases).map_err(io)?;
    Ok(Recovered {
        topics,
        committed,
        active: (file, *last),
        end: last + len,
        segments,
        snapshot,
        unfolded,
    })
}

/// Applies one frame of the last segment to the state being recovered.
fn replay(
    dir: &Path,
    topics: &mut RecoveredTopics,
    committed: &mut HashMap<OffsetKey, u64>,
    position: u64,
    frame: Frame,
) -> Result<(), String> {
    match frame {
        Frame::Topic { name, partitions } => {
            let (incarnation, parts) = topics
                .entry(name.clone())
                .or_insert_with(|| (position, Vec::new()));
            while parts.len() < partitions as usize {
                let p = parts.len() as u32;
                parts.push(Stored::logged(index_path(dir, &name, *incarnation, p), 0));
            }
        }
        Frame::Record { topic, mut record } => {
            let stored = topics
                .get_mut(&topic)
                .and_then(|(_, parts)| parts.get_mut(record.partition as usize))
                .ok_or("a record of a partition that does not exist")?;
            record.offset = stored.len();
            let offset = record.offset;
            stored.push(Arc::new(record), Some(position));
            stored.trim(offset);
        }
        Frame::TopicDelete { name } => {
            topics.remove(&name);
            committed.retain(|(_, topic, _), _| *topic != name);
        }
        Frame::Commit {
            consumer,
            topic,
            partition,
            next,
        } => {
            committed.insert((consumer, topic, partition), next);
        }
    }
    Ok(())
}
