//! The embedded bus's write-ahead log with group commit: producers append frames to a shared
//! buffer and wait until a flush covers them; whoever holds the sync lock writes everything
//! buffered and fsyncs once for all of them. A flush that finds the last segment full starts a
//! new one first, and hands the sealed one to the compactor.
//!
//! A full disk is an outage, not a failure: a flush that runs out of space cuts the log back to
//! its last durable byte and forgets every frame not yet written, so each producer waiting on
//! them is refused and none of their records exists (a refusal means "not written", and a
//! retry cannot duplicate). For a moment after, appends are refused at once; then the next one
//! tries the disk again, and writes resume as soon as space returns.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::partition::Partition;
use super::segments::Segments;
use super::snapshot::Compactor;
use super::{BusError, BusResult};
use crate::log_file::{append_synced_marker, is_out_of_space, synced_marker, MARKER_LEN};

/// How long appends are refused without trying after the disk was found full: a storm of
/// producers then costs one failed write per interval, not one each.
const REFUSE_WHEN_FULL: Duration = Duration::from_millis(250);

/// Partitions that got records since the last flush, with their length then.
pub(super) type Touched = HashMap<(String, u32), (Arc<Partition>, u64)>;

/// What is appended but not yet written, and what becomes visible when it is.
#[derive(Default)]
pub(super) struct Pending {
    /// The log position `buf` will start at.
    pub(super) base: u64,
    pub(super) buf: Vec<u8>,
    /// Sequence number of the last frame appended.
    pub(super) seq: u64,
    pub(super) touched: Touched,
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
    pub(super) fn refuse_if_full(&self) -> BusResult<()> {
        match self.refuse_until {
            Some(until) if Instant::now() < until => Err(out_of_space()),
            _ => Ok(()),
        }
    }

    /// Where the next frame appended will sit in the log.
    pub(super) fn next_position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }
}

/// The segment appended to.
pub(super) struct Active {
    pub(super) file: File,
    /// The log position of its first byte.
    pub(super) base: u64,
    /// The position of a synced marker whose write failed: the next flush writes it before
    /// its frames (the position was reserved for it).
    pub(super) marker_owed: Option<u64>,
    /// Set when a marker could be neither written nor cut back: the file's end is unknown.
    pub(super) end_unknown: bool,
}

impl Active {
    pub(super) fn new(file: File, base: u64) -> Active {
        Active {
            file,
            base,
            marker_owed: None,
            end_unknown: false,
        }
    }
}

/// The log on disk: where appends go, where old records are read back from, and who folds
/// sealed segments into the snapshot.
pub(super) struct Disk {
    pub(super) active: Mutex<Active>,
    pub(super) segments: Arc<Segments>,
    pub(super) compactor: Arc<Compactor>,
    pub(super) segment_bytes: u64,
}

pub(super) struct Wal {
    /// `None` for a bus in memory.
    pub(super) disk: Option<Arc<Disk>>,
    pub(super) pending: Arc<Mutex<Pending>>,
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

impl Wal {
    /// A log that continues `disk` from position `end` (or stays in memory, `None`).
    pub(super) fn new(disk: Option<Arc<Disk>>, end: u64) -> Wal {
        Wal {
            disk,
            pending: Arc::new(Mutex::new(Pending {
                base: end,
                ..Pending::default()
            })),
            durable_seq: watch::Sender::new(0),
            sync_lock: tokio::sync::Mutex::new(()),
            flush_scheduled: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    pub(super) fn segments(&self) -> Option<&Arc<Segments>> {
        self.disk.as_ref().map(|d| &d.segments)
    }

    /// Whether the frame numbered `seq` is durable; refused if it was forgotten for want of
    /// space (checked first: later frames may be durable by now).
    fn is_durable(&self, seq: u64) -> BusResult<bool> {
        if self.pending.lock().was_discarded(seq) {
            return Err(out_of_space());
        }
        Ok(*self.durable_seq.borrow() >= seq)
    }

    /// Waits until every frame up to `seq` is durable, flushing if nobody else is.
    pub(super) async fn flush_to(&self, seq: u64) -> BusResult<()> {
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
        let (upto, touched) = match &self.disk {
            Some(disk) => {
                let disk = Arc::clone(disk);
                let pending = Arc::clone(&self.pending);
                let durable = *self.durable_seq.borrow();
                let written = tokio::task::spawn_blocking(move || disk.write(&pending, durable))
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
                        return Err(BusError::Io(e.to_string()));
                    }
                }
            }
            None => {
                let (_, upto, touched, _) = take_pending(&self.pending, false);
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
    pub(super) fn schedule_flush(self: &Arc<Self>) {
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
    pub(super) fn flush_now(&self) {
        if let Some(disk) = &self.disk {
            let mut active = disk.active.lock();
            let (buf, _, _, at) = take_pending(&self.pending, true);
            let owed = active.marker_owed.take();
            let synced = at + buf.len() as u64 - active.base;
            if active.end_unknown
                || write_and_sync(&mut active, owed, &buf).is_err()
                || (!buf.is_empty() && append_synced_marker(&mut active.file, synced).is_err())
            {
                tracing::warn!("flushing the bus log on close failed");
            }
        }
    }
}

impl Disk {
    /// Writes what is buffered and syncs it; the last frame's number and the partitions the
    /// frames touched. Then marks the log synced: at the end of the segment, or at the start
    /// of a new one once this one is full (handing the sealed one to the compactor).
    fn write(
        &self,
        pending: &Mutex<Pending>,
        durable_seq: u64,
    ) -> Result<(u64, Touched), FlushFailure> {
        // The segment lock is taken before the buffer, here and on drop, so buffers reach the
        // log in the order they were filled.
        let mut active = self.active.lock();
        if active.end_unknown {
            return Err(FlushFailure::Fatal(std::io::Error::other(
                "a synced marker could not be cut back; the bus log's end is unknown",
            )));
        }
        let (buf, upto, touched, at) = take_pending(pending, true);
        let owed = active.marker_owed.take();
        match write_and_sync(&mut active, owed, &buf) {
            Ok(()) if buf.is_empty() => Ok((upto, touched)),
            Ok(()) => {
                self.mark_synced(&mut active, at + buf.len() as u64);
                Ok((upto, touched))
            }
            Err(e) if is_out_of_space(&e) => {
                // The owed marker stays owed, its position reserved.
                active.marker_owed = owed;
                let from = owed.unwrap_or(at);
                match forget_unwritten(&active, pending, from, at, touched, durable_seq) {
                    Ok(()) => Err(FlushFailure::OutOfSpace(e)),
                    Err(cut) => Err(FlushFailure::Fatal(cut)),
                }
            }
            Err(e) => Err(FlushFailure::Fatal(e)),
        }
    }

    /// The log is durable through position `end` (where a marker's place was reserved).
    fn mark_synced(&self, active: &mut Active, end: u64) {
        if end - active.base >= self.segment_bytes {
            match self.segments.create(end) {
                Ok(file) => {
                    let sealed = std::mem::replace(active, Active::new(file, end));
                    self.compactor.sealed(sealed.base, end);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "starting a new bus segment failed; the full one goes on growing until it succeeds");
                }
            }
        }
        let synced = end - active.base;
        match append_synced_marker(&mut active.file, synced) {
            Ok(true) => {}
            Ok(false) => active.marker_owed = Some(end),
            Err(e) => {
                tracing::error!(error = %e, "a synced marker could not be cut back");
                active.end_unknown = true;
            }
        }
    }
}

/// Writes the marker owed at `owed` (if any) and `buf` after it, and syncs.
fn write_and_sync(active: &mut Active, owed: Option<u64>, buf: &[u8]) -> std::io::Result<()> {
    if let Some(at) = owed {
        active.file.write_all(&synced_marker(at - active.base))?;
    }
    active.file.write_all(buf)?;
    active.file.sync_data()
}

/// The buffered frames, the number of the last, the partitions they touched, and the log
/// position they go to. With `reserve`, the position after them is kept for a synced marker.
fn take_pending(pending: &Mutex<Pending>, reserve: bool) -> (Vec<u8>, u64, Touched, u64) {
    let mut p = pending.lock();
    let at = p.base;
    // The buffer goes to the log now (its caller holds the segment lock): later frames start
    // after it, and after its marker.
    let marker = if reserve && !p.buf.is_empty() {
        MARKER_LEN
    } else {
        0
    };
    p.base += p.buf.len() as u64 + marker;
    (
        std::mem::take(&mut p.buf),
        p.seq,
        std::mem::take(&mut p.touched),
        at,
    )
}

/// After a flush ran out of space: cuts the log back to `from` (its last durable byte), and
/// forgets every frame not yet durable, those the flush took (`taken`) and those buffered
/// since, so that every producer waiting on one is refused; the next frame goes to `at` (past
/// an owed marker's place). Runs under the segment lock.
fn forget_unwritten(
    active: &Active,
    pending: &Mutex<Pending>,
    from: u64,
    at: u64,
    taken: Touched,
    durable_seq: u64,
) -> std::io::Result<()> {
    active.file.set_len(from - active.base)?;
    active.file.sync_data()?;
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
