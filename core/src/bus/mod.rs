//! The Bus port, shaped like Fluvio.
//!
//! Named topics have a fixed number of partitions (they may grow, never shrink). A record is a
//! (key, value) appended to the partition its key hashes to; each partition has offsets and keeps
//! order. Delivery is at least once: a consumer reads a partition from the offset stored under
//! its consumer id and commits explicitly. There are no consumer groups: replica i of n owns the
//! partitions p with p % n == i.

mod embedded;
mod frames;
mod partition;
mod recovery;
#[cfg(test)]
mod segment_tests;
mod segments;
mod snapshot;
mod wal;

use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedBus;
pub use segments::DEFAULT_SEGMENT_BYTES;

/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// (key, value) pairs to append.
pub type KeyedRecords = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What `ensure_topic` did, in Strimzi's spirit: an existing topic is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicChange {
    Created,
    Unchanged,
    Grown { from: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("invalid topic name {0:?}: lowercase letters, digits and '-', at most 63 characters")]
    InvalidName(String),
    #[error("topic {topic:?} has {current} partitions and cannot shrink to {requested}")]
    CannotShrink {
        topic: String,
        current: u32,
        requested: u32,
    },
    #[error("a topic needs 1 to 1024 partitions, not {0}")]
    InvalidPartitions(u32),
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus I/O failed: {0}")]
    Io(String),
}

pub type BusResult<T> = Result<T, BusError>;

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Creates the topic, or grows it to `partitions`. Shrinking is refused.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> BusResult<TopicChange>;

    async fn partitions(&self, topic: &str) -> BusResult<u32>;
    /// Deletes the topic, its records and the offsets committed on it; `false` when there was
    /// no such topic. A topic created again under the name starts empty.
    async fn delete_topic(&self, topic: &str) -> BusResult<bool>;

    /// Appends records, each to the partition its key hashes to; returns (partition, offset) of
    /// each once it is durable.
    async fn send_batch(
        &self,
        topic: &str,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> BusResult<Vec<(u32, u64)>>;

    /// Records of one partition from `offset` on, at most `max`. Waits up to `wait` for the first
    /// one, then returns whatever is ready: a batch is what is there, never a timer.
    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> BusResult<Vec<Record>>;

    /// The offset the next appended record of that partition will get.
    async fn end_offset(&self, topic: &str, partition: u32) -> BusResult<u64>;

    /// The next offset to read, as committed by `consumer`; `None` if it never committed.
    async fn committed(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> BusResult<Option<u64>>;

    async fn commit(&self, consumer: &str, topic: &str, partition: u32, next: u64)
        -> BusResult<()>;

    async fn send(&self, topic: &str, key: &[u8], value: Vec<u8>) -> BusResult<(u32, u64)> {
        let mut sent = self.send_batch(topic, vec![(key.to_vec(), value)]).await?;
        sent.pop()
            .ok_or_else(|| BusError::Io("send returned no offset".into()))
    }
}

/// Partition counts a bus on a remote engine has seen. Reads check their partition often, and
/// a partition below a count seen once exists for good (topics never shrink), so only a
/// partition beyond it costs a round trip.
#[derive(Debug, Default)]
pub struct KnownPartitions(parking_lot::Mutex<std::collections::HashMap<String, u32>>);

impl KnownPartitions {
    pub fn record(&self, topic: &str, partitions: u32) {
        self.0.lock().insert(topic.to_owned(), partitions);
    }

    /// Forgets a deleted topic: one created again under its name may have fewer partitions.
    pub fn forget(&self, topic: &str) {
        self.0.lock().remove(topic);
    }

    pub fn knows(&self, topic: &str) -> bool {
        self.0.lock().contains_key(topic)
    }

    /// Refuses a partition the topic does not have, asking `bus` (whose `partitions` records
    /// the count) only when the cache cannot tell.
    pub async fn check(&self, bus: &dyn Bus, topic: &str, partition: u32) -> BusResult<()> {
        if self.0.lock().get(topic).is_some_and(|n| partition < *n) {
            return Ok(());
        }
        let partitions = bus.partitions(topic).await?;
        if partition < partitions {
            Ok(())
        } else {
            Err(BusError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            })
        }
    }
}

/// The partition a key goes to. Every Bus implementation uses this function, so a key lands on
/// the same partition whichever engine carries it (FNV-1a: stable across releases and machines).
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    (fnv1a(key) % u64::from(partitions.max(1))) as u32
}

/// 64-bit FNV-1a: stable across releases and machines.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The partitions replica `replica` of `replicas` owns.
pub fn owned_partitions(partitions: u32, replica: u32, replicas: u32) -> Vec<u32> {
    let replicas = replicas.max(1);
    (0..partitions)
        .filter(|p| p % replicas == replica)
        .collect()
}

/// What every engine checks before creating or growing a topic.
pub fn validate_topic(name: &str, partitions: u32) -> BusResult<()> {
    validate_topic_name(name)?;
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(BusError::InvalidPartitions(partitions));
    }
    Ok(())
}

pub fn validate_topic_name(name: &str) -> BusResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName(name.to_owned()))
    }
}

/// Reads one partition under a consumer id: resumes from the committed offset, hands out
/// batches, and commits when told. What was fetched but not committed is read again after a
/// restart, which is what makes delivery at least once.
pub struct PartitionConsumer {
    bus: std::sync::Arc<dyn Bus>,
    consumer: String,
    topic: String,
    partition: u32,
    position: u64,
}

/// Where a consumer without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

impl PartitionConsumer {
    pub async fn open(
        bus: std::sync::Arc<dyn Bus>,
        consumer: &str,
        topic: &str,
        partition: u32,
        start: StartAt,
    ) -> BusResult<Self> {
        let position = match bus.committed(consumer, topic, partition).await? {
            Some(next) => next,
            None => match start {
                StartAt::Beginning => 0,
                StartAt::End => bus.end_offset(topic, partition).await?,
            },
        };
        Ok(Self {
            bus,
            consumer: consumer.to_owned(),
            topic: topic.to_owned(),
            partition,
            position,
        })
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next batch (possibly empty after `wait`); advances the read position but does not
    /// commit it.
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> BusResult<Vec<Record>> {
        let records = self
            .bus
            .fetch(&self.topic, self.partition, self.position, max, wait)
            .await?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }

    /// Commits everything handed out so far.
    pub async fn commit(&self) -> BusResult<()> {
        self.bus
            .commit(&self.consumer, &self.topic, self.partition, self.position)
            .await
    }
}
