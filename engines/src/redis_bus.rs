//! The Bus port on Redis Streams, with Fluvio's semantics.
//!
//! Each partition is one stream. Redis stream ids are time-based, but the port promises dense
//! offsets 0, 1, 2…, so a Lua script appends with explicit ids `0-(offset+1)` taken from a
//! counter beside the stream: the script runs atomically, so a partition's records keep the
//! order they were appended in and no offset is skipped or reused. Offsets committed by a
//! consumer id live in a hash per consumer; there are no consumer groups, as in the port.
//!
//! Durability is Redis's: run it with `appendonly yes` (and `appendfsync always` where losing
//! the last second of records after a power cut matters); `connect` warns when AOF is off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mercato_core::bus::{
    partition_for, validate_topic, Bus, BusError, BusResult, KnownPartitions, Record, TopicChange,
};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Value};

use crate::redis_conn::{self, is_unavailable, RedisConnectError, KEY_PREFIX, RESPONSE_TIMEOUT};

/// A fetch never blocks a connection longer than this; callers asking for more wait again.
const MAX_BLOCK: Duration = Duration::from_secs(10);

/// Creates, grows or refuses to shrink a topic: answers {what, previous partitions} where
/// what is 0 created, 1 unchanged, 2 grown, 3 refused.
const ENSURE_TOPIC: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local want = tonumber(ARGV[2])
if not cur then
  redis.call('HSET', KEYS[1], ARGV[1], want)
  return {0, 0}
end
cur = tonumber(cur)
if cur == want then return {1, cur} end
if want > cur then
  redis.call('HSET', KEYS[1], ARGV[1], want)
  return {2, cur}
end
return {3, cur}";

/// Appends (key, value) pairs to one partition with the next dense offsets; answers the first
/// offset. The server's clock stamps the records.
const APPEND: &str = r"
local t = redis.call('TIME')
local first = -1
for i = 1, #ARGV, 2 do
  local n = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], '0-' .. n, 'k', ARGV[i], 'v', ARGV[i + 1], 's', t[1], 'u', t[2])
  if first < 0 then first = n - 1 end
end
return first";

pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
    ensure_topic: redis::Script,
    append: redis::Script,
    /// Connections for blocking reads: a blocked XREAD holds its connection, so it must not be
    /// the one every other command shares.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// Partition counts seen so far. Topics never shrink, so a partition below a seen count
    /// exists without asking Redis again; only a miss reads the count afresh.
    known: KnownPartitions,
}

fn topics_key() -> String {
    format!("{KEY_PREFIX}bus:topics")
}

fn stream_key(topic: &str, partition: u32) -> String {
    format!("{KEY_PREFIX}bus:{topic}:{partition}")
}

fn counter_key(topic: &str, partition: u32) -> String {
    format!("{KEY_PREFIX}bus:{topic}:{partition}:next")
}

fn offsets_key(consumer: &str) -> String {
    format!("{KEY_PREFIX}bus:offsets:{consumer}")
}

fn redis_err(e: redis::RedisError) -> BusError {
    if is_unavailable(&e) {
        BusError::Unavailable(format!("Redis: {e}"))
    } else {
        BusError::Io(format!("Redis: {e}"))
    }
}

impl RedisBus {
    pub async fn connect(url: &str) -> Result<Self, RedisConnectError> {
        let (client, mut conn) = redis_conn::open(url).await?;
        let aof: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await;
        if let Ok(answer) = aof {
            if answer.get(1).map(String::as_str) != Some("yes") {
                tracing::warn!(
                    url,
                    "Redis runs without appendonly: bus records written since its last snapshot \
                     are lost if it stops; start it with --appendonly yes"
                );
            }
        }
        Ok(Self {
            client,
            conn,
            ensure_topic: redis::Script::new(ENSURE_TOPIC),
            append: redis::Script::new(APPEND),
            blocking: Mutex::new(Vec::new()),
            known: KnownPartitions::default(),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn blocking_conn(&self) -> BusResult<MultiplexedConnection> {
        if let Some(c) = self.blocking.lock().pop() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(MAX_BLOCK + RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(redis_err)
    }

    /// Reads records from `offset` on, waiting up to `wait` for the first.
    async fn read_blocking(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> BusResult<Vec<Record>> {
        let mut conn = self.blocking_conn().await?;
        let block_ms = u64::try_from(wait.min(MAX_BLOCK).as_millis())
            .unwrap_or(1)
            .max(1);
        let answer: redis::RedisResult<Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(stream_key(topic, partition))
            // Entries with an id above 0-offset are those with offsets from `offset` on.
            .arg(format!("0-{offset}"))
            .query_async(&mut conn)
            .await;
        let answer = answer.map_err(redis_err)?;
        // Only a connection that answered goes back: a broken one is dropped.
        self.blocking.lock().push(conn);
        let entries = match answer {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(mut streams) => match streams.pop() {
                Some(Value::Array(mut pair)) if pair.len() == 2 => pair.pop().unwrap_or(Value::Nil),
                _ => return Err(malformed("XREAD answer")),
            },
            _ => return Err(malformed("XREAD answer")),
        };
        parse_entries(entries, partition)
    }
}

fn malformed(what: &str) -> BusError {
    BusError::Io(format!("Redis: unexpected {what}"))
}

/// Entries as XRANGE gives them: `[[id, [field, value, …]], …]`.
fn parse_entries(entries: Value, partition: u32) -> BusResult<Vec<Record>> {
    let Value::Array(entries) = entries else {
        return Err(malformed("stream entries"));
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(mut parts) = entry else {
                return Err(malformed("stream entry"));
            };
            let (Some(Value::Array(fields)), Some(id)) = (parts.pop(), parts.pop()) else {
                return Err(malformed("stream entry"));
            };
            let id = bytes(id).ok_or_else(|| malformed("entry id"))?;
            let seq = std::str::from_utf8(&id)
                .ok()
                .and_then(|id| id.strip_prefix("0-"))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| malformed("entry id"))?;
            let mut record = Record {
                partition,
                offset: seq - 1,
                timestamp_ms: 0,
                key: Vec::new(),
                value: Vec::new(),
            };
            let (mut secs, mut micros) = (0u64, 0u64);
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                let name = bytes(name).ok_or_else(|| malformed("field name"))?;
                let value = bytes(value).ok_or_else(|| malformed("field value"))?;
                let number = || {
                    std::str::from_utf8(&value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                match name.as_slice() {
                    b"k" => record.key = value,
                    b"s" => secs = number(),
                    b"u" => micros = number(),
                    b"v" => record.value = value,
                    _ => {}
                }
            }
            record.timestamp_ms = secs * 1000 + micros / 1000;
            Ok(record)
        })
        .collect()
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> BusResult<TopicChange> {
        validate_topic(topic, partitions)?;
        let (what, current): (u32, u32) = self
            .ensure_topic
            .key(topics_key())
            .arg(topic)
            .arg(partitions)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        match what {
            0 => Ok(TopicChange::Created),
            1 => Ok(TopicChange::Unchanged),
            2 => Ok(TopicChange::Grown { from: current }),
            _ => Err(BusError::CannotShrink {
                topic: topic.to_owned(),
                current,
                requested: partitions,
            }),
        }
    }

    async fn partitions(&self, topic: &str) -> BusResult<u32> {
        let found: Option<u32> = redis::cmd("HGET")
            .arg(topics_key())
            .arg(topic)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let partitions = found.ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
        self.known.record(topic, partitions);
        Ok(partitions)
    }

    async fn delete_topic(&self, topic: &str) -> BusResult<bool> {
        let partitions = match self.partitions(topic).await {
            Ok(n) => n,
            Err(BusError::UnknownTopic(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut conn = self.conn();
        // The topic goes from the directory first, so producers stop finding it; then its
        // streams, then every consumer's offsets on it.
        redis::cmd("HDEL")
            .arg(topics_key())
            .arg(topic)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)?;
        self.known.forget(topic);
        let mut del = redis::cmd("DEL");
        for p in 0..partitions {
            del.arg(stream_key(topic, p)).arg(counter_key(topic, p));
        }
        del.query_async::<()>(&mut conn).await.map_err(redis_err)?;
        let fields: Vec<String> = (0..partitions).map(|p| format!("{topic}/{p}")).collect();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(offsets_key("*"))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            for key in keys {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&fields)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_err)?;
            }
            if next == 0 {
                return Ok(true);
            }
            cursor = next;
        }
    }

    async fn send_batch(
        &self,
        topic: &str,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> BusResult<Vec<(u32, u64)>> {
        let partitions = self.partitions(topic).await?;
        // Records keep their order within a partition: each partition's share goes in one
        // script call, and the shares travel concurrently on the multiplexed connection.
        let mut shares: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, (key, _)) in records.iter().enumerate() {
            shares
                .entry(partition_for(key, partitions))
                .or_default()
                .push(i);
        }
        let records = Arc::new(records);
        let calls = shares.into_iter().map(|(partition, indexes)| {
            let records = Arc::clone(&records);
            let mut conn = self.conn();
            async move {
                let mut call = self.append.prepare_invoke();
                call.key(stream_key(topic, partition))
                    .key(counter_key(topic, partition));
                for i in &indexes {
                    call.arg(&records[*i].0).arg(&records[*i].1);
                }
                let first: u64 = call.invoke_async(&mut conn).await.map_err(redis_err)?;
                Ok::<_, BusError>((partition, first, indexes))
            }
        });
        let mut placed = vec![(0, 0); records.len()];
        for (partition, first, indexes) in futures::future::try_join_all(calls).await? {
            for (n, i) in indexes.into_iter().enumerate() {
                placed[i] = (partition, first + n as u64);
            }
        }
        Ok(placed)
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> BusResult<Vec<Record>> {
        self.known.check(self, topic, partition).await?;
        let max = max.max(1);
        if !wait.is_zero() {
            return self
                .read_blocking(topic, partition, offset, max, wait)
                .await;
        }
        let entries: Value = redis::cmd("XRANGE")
            .arg(stream_key(topic, partition))
            .arg(format!("0-{}", offset.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        parse_entries(entries, partition)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> BusResult<u64> {
        self.known.check(self, topic, partition).await?;
        let next: Option<u64> = redis::cmd("GET")
            .arg(counter_key(topic, partition))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(next.unwrap_or(0))
    }

    async fn committed(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
    ) -> BusResult<Option<u64>> {
        self.known.check(self, topic, partition).await?;
        redis::cmd("HGET")
            .arg(offsets_key(consumer))
            .arg(format!("{topic}/{partition}"))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn commit(
        &self,
        consumer: &str,
        topic: &str,
        partition: u32,
        next: u64,
    ) -> BusResult<()> {
        self.known.check(self, topic, partition).await?;
        redis::cmd("HSET")
            .arg(offsets_key(consumer))
            .arg(format!("{topic}/{partition}"))
            .arg(next)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }
}
