//! The live seat stream's source: one reader of `seat-changes` per gateway process, from the
//! topic's beginning, folding every change into each event's seats and handing out per-section
//! deltas to every client watching, with no bus consumer per client.
//!
//! The topic is keyed by event, so one event's changes have one order for every reader: the
//! deltas and their versions are a function of the log alone, the same in every gateway, and
//! a client may resume (`Last-Event-ID`) on any of them. A change becomes a delta per section
//! it touches, holding only the seats it really changes: a release or a lapse applies only to
//! seats still held by the hold it names (two workers may publish changes of one seat out of
//! the order they made them), a change repeated (changes are published at least once) changes
//! nothing. Each section's deltas are numbered 1, 2, 3, … with no gaps.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mercato_core::bus::{Bus, BusResult, StartAt};
use mercato_core::domain::commands::{SeatChange, SeatChangeKind};
use mercato_core::domain::seats::{canonical_seats, SeatStatus};
use mercato_core::names::topics;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// Deltas kept per section for clients resuming; an older `Last-Event-ID` gets a snapshot.
pub const BACKLOG: usize = 4096;
/// Deltas a watching client may fall behind by before it is told to reconnect.
const LAG: usize = 1024;
/// How often every watcher hears something, so proxies keep idle streams open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What changed in one section, numbered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delta {
    pub version: u64,
    /// `held`, `released`, `lapsed` or `sold`.
    pub change: &'static str,
    pub seat_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// This delta as a Server-Sent Events frame, made once and shared (not copied) by every
    /// client watching.
    #[serde(skip)]
    pub frame: Bytes,
}

/// What a watcher is pushed: a delta, or a keep-alive (one timer for the whole feed rather
/// than one per client).
#[derive(Debug, Clone)]
pub enum Pushed {
    Delta(Arc<Delta>),
    KeepAlive,
}

/// An SSE frame: `event`, `id` and one `data` line (JSON has no raw newlines).
pub fn sse_frame(event: &str, id: Option<u64>, data: &str) -> Bytes {
    let mut frame = format!("event:{event}\n");
    if let Some(id) = id {
        let _ = writeln!(frame, "id:{id}");
    }
    let _ = write!(frame, "data:{data}\n\n");
    Bytes::from(frame)
}

#[derive(Default)]
struct SectionFeed {
    version: u64,
    backlog: VecDeque<Arc<Delta>>,
    watchers: Option<broadcast::Sender<Pushed>>,
}

#[derive(Default)]
struct EventSeats {
    /// Seat id -> what the log says of it, and by which hold.
    seats: HashMap<String, (SeatStatus, Option<String>)>,
    sections: HashMap<String, SectionFeed>,
}

/// A client's start: the section's version now, the deltas it missed after its
/// `Last-Event-ID` (`None`: too old or unknown here, take a snapshot), and what comes next.
pub struct Watch {
    pub version: u64,
    pub missed: Option<Vec<Arc<Delta>>>,
    pub next: broadcast::Receiver<Pushed>,
}

#[derive(Default)]
pub struct SeatFeed {
    events: Mutex<HashMap<String, EventSeats>>,
}

impl EventSeats {
    /// The seats `change` really changes in each section it touches, and their new states.
    fn fold(&mut self, change: &SeatChange) -> Vec<(String, &'static str, Vec<String>)> {
        let (seats, _) = canonical_seats(&change.seat_ids);
        let mut by_section: Vec<(String, Vec<String>)> = Vec::new();
        for seat in seats {
            let id = seat.to_string();
            let current = self.seats.get(&id);
            let next = match change.change {
                SeatChangeKind::Held { .. } => Some((SeatStatus::Held, change.hold_id.clone())),
                SeatChangeKind::Sold => Some((SeatStatus::Sold, change.hold_id.clone())),
                SeatChangeKind::Released | SeatChangeKind::Lapsed => match current {
                    Some((SeatStatus::Held, by))
                        if change.hold_id.is_none() || *by == change.hold_id =>
                    {
                        Some((SeatStatus::Available, None))
                    }
                    _ => None,
                },
            };
            let Some(next) = next else { continue };
            if current == Some(&next) {
                continue;
            }
            self.seats.insert(id.clone(), next);
            match by_section.iter_mut().find(|(s, _)| *s == seat.section) {
                Some((_, ids)) => ids.push(id),
                None => by_section.push((seat.section.clone(), vec![id])),
            }
        }
        let name = match change.change {
            SeatChangeKind::Held { .. } => "held",
            SeatChangeKind::Released => "released",
            SeatChangeKind::Lapsed => "lapsed",
            SeatChangeKind::Sold => "sold",
        };
        by_section
            .into_iter()
            .map(|(section, ids)| (section, name, ids))
            .collect()
    }
}

impl SeatFeed {
    /// Folds one change from the log and hands its deltas to the watchers.
    pub fn apply(&self, change: &SeatChange) {
        let expires_at_ms = match change.change {
            SeatChangeKind::Held { expires_at_ms } => Some(expires_at_ms),
            _ => None,
        };
        let mut events = self.events.lock();
        let event = events.entry(change.event_id.clone()).or_default();
        for (section, name, seat_ids) in event.fold(change) {
            let feed = event.sections.entry(section).or_default();
            feed.version += 1;
            let mut delta = Delta {
                version: feed.version,
                change: name,
                seat_ids,
                expires_at_ms,
                frame: Bytes::new(),
            };
            let json = serde_json::to_string(&delta).unwrap_or_default();
            delta.frame = sse_frame(delta.change, Some(delta.version), &json);
            let delta = Arc::new(delta);
            feed.backlog.push_back(Arc::clone(&delta));
            if feed.backlog.len() > BACKLOG {
                feed.backlog.pop_front();
            }
            if let Some(tx) = &feed.watchers {
                // No receiver left is fine: nobody watches.
                let _ = tx.send(Pushed::Delta(delta));
            }
        }
    }

    /// Pushes a keep-alive to every section somebody watches, and forgets the channels of
    /// sections nobody watches any more.
    pub fn keep_alive(&self) {
        let mut events = self.events.lock();
        for event in events.values_mut() {
            for feed in event.sections.values_mut() {
                if let Some(tx) = &feed.watchers {
                    if tx.send(Pushed::KeepAlive).is_err() {
                        feed.watchers = None;
                    }
                }
            }
        }
    }

    /// Starts watching one section, resuming after `last` if the backlog still has it.
    pub fn watch(&self, event_id: &str, section: &str, last: Option<u64>) -> Watch {
        let mut events = self.events.lock();
        let feed = events
            .entry(event_id.to_owned())
            .or_default()
            .sections
            .entry(section.to_owned())
            .or_default();
        let next = feed
            .watchers
            .get_or_insert_with(|| broadcast::channel(LAG).0)
            .subscribe();
        let missed = last.and_then(|last| {
            if last == feed.version {
                return Some(Vec::new());
            }
            let oldest = feed.backlog.front()?.version;
            (last < feed.version && last + 1 >= oldest).then(|| {
                feed.backlog
                    .iter()
                    .filter(|d| d.version > last)
                    .cloned()
                    .collect()
            })
        });
        Watch {
            version: feed.version,
            missed,
            next,
        }
    }
}

/// Reads every partition of `seat-changes` from its beginning into `feed` until shutdown, and
/// pushes the watchers' keep-alives.
pub async fn start_reader(
    bus: Arc<dyn Bus>,
    feed: Arc<SeatFeed>,
    consumer_id: &str,
    shutdown: watch::Receiver<bool>,
) -> BusResult<()> {
    let (beating, mut stop) = (Arc::clone(&feed), shutdown.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(KEEP_ALIVE);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => beating.keep_alive(),
                _ = stop.changed() => return,
            }
        }
    });
    crate::follow::follow(
        bus,
        topics::SEAT_CHANGES,
        StartAt::Beginning,
        consumer_id,
        shutdown,
        move |change: SeatChange| feed.apply(&change),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: SeatChangeKind, seats: &[&str], hold: &str) -> SeatChange {
        SeatChange {
            event_id: "gig".into(),
            seat_ids: seats.iter().map(|s| s.to_string()).collect(),
            change: kind,
            hold_id: Some(hold.into()),
        }
    }

    #[test]
    fn deltas_are_numbered_per_section_and_hold_only_what_changed() {
        let feed = SeatFeed::default();
        let held = SeatChangeKind::Held { expires_at_ms: 9 };
        let mut a = feed.watch("gig", "a", None);
        feed.apply(&change(held, &["a-1-1", "b-1-1", "a-1-2"], "h1"));
        feed.apply(&change(held, &["a-1-1", "b-1-1", "a-1-2"], "h1")); // published twice
                                                                       // Released by h1 after h2 took b-1-1 (published out of order): only a's seats.
        feed.apply(&change(held, &["b-1-1"], "h2"));
        feed.apply(&change(
            SeatChangeKind::Released,
            &["a-1-1", "b-1-1", "a-1-2"],
            "h1",
        ));
        feed.apply(&change(SeatChangeKind::Lapsed, &["a-1-1"], "h1")); // free already
        let got: Vec<Arc<Delta>> = std::iter::from_fn(|| a.next.try_recv().ok())
            .filter_map(|p| match p {
                Pushed::Delta(d) => Some(d),
                Pushed::KeepAlive => None,
            })
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].version, got[0].change), (1, "held"));
        assert_eq!(got[0].seat_ids, ["a-1-1", "a-1-2"]);
        assert_eq!(
            &got[0].frame[..],
            &b"event:held\nid:1\ndata:{\"version\":1,\"change\":\"held\",\"seat_ids\":[\"a-1-1\",\"a-1-2\"],\"expires_at_ms\":9}\n\n"[..]
        );
        assert_eq!((got[1].version, got[1].change), (2, "released"));
        assert_eq!(
            feed.watch("gig", "b", None).version,
            2,
            "b: held by h1, then by h2"
        );

        // Resuming: exactly what was missed; current: nothing; unknown: a snapshot.
        let resumed = feed.watch("gig", "a", Some(1)).missed.unwrap();
        assert_eq!(resumed.iter().map(|d| d.version).collect::<Vec<_>>(), [2]);
        assert_eq!(feed.watch("gig", "a", Some(2)).missed.unwrap().len(), 0);
        assert!(feed.watch("gig", "a", Some(7)).missed.is_none());
    }

    #[test]
    fn keep_alives_reach_every_watcher_and_unwatched_sections_are_forgotten() {
        let feed = SeatFeed::default();
        let mut a = feed.watch("gig", "a", None);
        let b = feed.watch("gig", "b", None);
        drop(b);
        feed.keep_alive();
        assert!(matches!(a.next.try_recv(), Ok(Pushed::KeepAlive)));
        let events = feed.events.lock();
        let sections = &events["gig"].sections;
        assert!(sections["a"].watchers.is_some());
        assert!(sections["b"].watchers.is_none(), "nobody watches b");
    }
}
