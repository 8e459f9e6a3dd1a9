//! The in-process Coord: maps under a mutex, with TTLs checked on access (as Redis does lazily)
//! and pub/sub on broadcast channels.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::ranked::RankedSet;
use super::{gcra, Coord, CoordResult, Taken};

const CHANNEL_CAPACITY: usize = 4096;

#[derive(Default)]
struct State {
    keys: HashMap<String, (Vec<u8>, Option<Instant>)>,
    counters: HashMap<String, (u64, Instant)>,
    /// Token buckets: the theoretical arrival time, in microseconds since `epoch`.
    buckets: HashMap<String, u64>,
    queues: HashMap<String, VecDeque<Vec<u8>>>,
    ranked: HashMap<String, RankedSet>,
    channels: HashMap<String, broadcast::Sender<Vec<u8>>>,
}

pub struct EmbeddedCoord {
    state: Mutex<State>,
    epoch: Instant,
}

impl Default for EmbeddedCoord {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl EmbeddedCoord {
    pub fn new() -> Self {
        Self::default()
    }
}

fn live(entry: &(Vec<u8>, Option<Instant>), now: Instant) -> bool {
    entry.1.is_none_or(|at| at > now)
}

#[async_trait]
impl Coord for EmbeddedCoord {
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CoordResult<bool> {
        let now = Instant::now();
        let mut st = self.state.lock();
        if st.keys.get(key).is_some_and(|e| live(e, now)) {
            return Ok(false);
        }
        st.keys
            .insert(key.to_owned(), (value.to_vec(), Some(now + ttl)));
        Ok(true)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CoordResult<()> {
        let now = Instant::now();
        self.state
            .lock()
            .keys
            .insert(key.to_owned(), (value.to_vec(), Some(now + ttl)));
        Ok(())
    }

    async fn get(&self, key: &str) -> CoordResult<Option<Vec<u8>>> {
        let now = Instant::now();
        let mut st = self.state.lock();
        match st.keys.get(key) {
            Some(e) if live(e, now) => Ok(Some(e.0.clone())),
            Some(_) => {
                st.keys.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &str) -> CoordResult<bool> {
        let now = Instant::now();
        // One keyspace, as in Redis: DEL removes a key of any type.
        let mut st = self.state.lock();
        let key_removed = st.keys.remove(key).is_some_and(|e| live(&e, now));
        let counter_removed = st.counters.remove(key).is_some_and(|(_, at)| at > now);
        let queue_removed = st.queues.remove(key).is_some();
        let ranked_removed = st.ranked.remove(key).is_some();
        Ok(key_removed || counter_removed || queue_removed || ranked_removed)
    }

    async fn incr_window(&self, key: &str, window: Duration) -> CoordResult<u64> {
        let now = Instant::now();
        let mut st = self.state.lock();
        let entry = st
            .counters
            .entry(key.to_owned())
            .or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        let count = entry.0;
        if st.counters.len() > 100_000 {
            st.counters.retain(|_, (_, at)| *at > now);
        }
        Ok(count)
    }

    async fn take_token(&self, key: &str, burst: u32, every: Duration) -> CoordResult<Taken> {
        let now = self.epoch.elapsed().as_micros() as u64;
        let mut st = self.state.lock();
        let tat = st.buckets.get(key).copied();
        let (taken, kept) = gcra(tat, now, burst, every.as_micros() as u64);
        if let Some(tat) = kept {
            st.buckets.insert(key.to_owned(), tat);
        }
        if st.buckets.len() > 100_000 {
            // Full buckets need no row: a time in the past is a full bucket.
            st.buckets.retain(|_, tat| *tat > now);
        }
        Ok(taken)
    }

    async fn push(&self, queue: &str, item: &[u8]) -> CoordResult<u64> {
        let mut st = self.state.lock();
        let q = st.queues.entry(queue.to_owned()).or_default();
        q.push_back(item.to_vec());
        Ok(q.len() as u64)
    }

    async fn pop(&self, queue: &str) -> CoordResult<Option<Vec<u8>>> {
        let mut st = self.state.lock();
        let item = st.queues.get_mut(queue).and_then(VecDeque::pop_front);
        if st.queues.get(queue).is_some_and(VecDeque::is_empty) {
            st.queues.remove(queue);
        }
        Ok(item)
    }

    async fn len(&self, queue: &str) -> CoordResult<u64> {
        Ok(self
            .state
            .lock()
            .queues
            .get(queue)
            .map_or(0, |q| q.len() as u64))
    }

    async fn rank_insert(&self, set: &str, member: &str, score: u64) -> CoordResult<bool> {
        let mut st = self.state.lock();
        Ok(st
            .ranked
            .entry(set.to_owned())
            .or_default()
            .insert(member, score))
    }

    async fn rank_of(&self, set: &str, member: &str) -> CoordResult<Option<u64>> {
        let st = self.state.lock();
        Ok(st.ranked.get(set).and_then(|ranked| ranked.rank(member)))
    }

    async fn rank_head(&self, set: &str, count: u64) -> CoordResult<Vec<String>> {
        let st = self.state.lock();
        Ok(st.ranked.get(set).map_or_else(Vec::new, |ranked| {
            ranked.head(usize::try_from(count).unwrap_or(usize::MAX))
        }))
    }

    async fn rank_len(&self, set: &str) -> CoordResult<u64> {
        let st = self.state.lock();
        Ok(st.ranked.get(set).map_or(0, |r| r.len() as u64))
    }

    async fn rank_remove(&self, set: &str, member: &str) -> CoordResult<bool> {
        let mut st = self.state.lock();
        let Some(ranked) = st.ranked.get_mut(set) else {
            return Ok(false);
        };
        let removed = ranked.remove(member);
        if ranked.is_empty() {
            st.ranked.remove(set);
        }
        Ok(removed)
    }

    async fn rank_trim(&self, set: &str, below: u64) -> CoordResult<u64> {
        let mut st = self.state.lock();
        let Some(ranked) = st.ranked.get_mut(set) else {
            return Ok(0);
        };
        let removed = ranked.trim_below(below);
        if ranked.is_empty() {
            st.ranked.remove(set);
        }
        Ok(removed)
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> CoordResult<usize> {
        let st = self.state.lock();
        Ok(st
            .channels
            .get(channel)
            .and_then(|tx| tx.send(message.to_vec()).ok())
            .unwrap_or(0))
    }

    async fn subscribe(&self, channel: &str) -> CoordResult<broadcast::Receiver<Vec<u8>>> {
        let mut st = self.state.lock();
        let tx = st
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0);
        Ok(tx.subscribe())
    }
}
