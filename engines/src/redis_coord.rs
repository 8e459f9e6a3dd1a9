//! The Coord port on Redis: the commands the port is named after, one Lua script where two
//! commands must act as one, and pub/sub with one subscriber connection per channel that
//! reconnects by itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use mercato_core::coord::{Coord, CoordError, CoordResult, Taken};
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::broadcast;

use crate::redis_conn::{self, RedisConnectError, KEY_PREFIX};

/// Messages a slow local subscriber may fall behind by before it sees a lag error.
const SUBSCRIBER_BUFFER: usize = 1024;
const RESUBSCRIBE_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// INCR, and start the window's clock on its first increment, atomically: two separate commands
/// could leave a counter without expiry if the client died between them.
const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// GCRA on Redis's own clock, in microseconds: the bucket's theoretical arrival time is the
/// key's value, kept until the bucket would be full again. Returns 0 when a token was taken,
/// else the microseconds until one is there. (The same rule as `mercato_core::coord::gcra`.)
const TAKE_TOKEN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local burst = tonumber(ARGV[1])
local every = tonumber(ARGV[2])
local tolerance = every * (burst - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return math.max(1, math.floor(tat - now - tolerance)) end
local new = tat + every
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.floor((new - now) / 1000) + 1)
return 0";

#[derive(Clone)]
pub struct RedisCoord {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    incr_window: redis::Script,
    take_token: redis::Script,
    /// One Redis subscription per channel, shared by this process's subscribers.
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

impl RedisCoord {
    pub async fn connect(url: &str) -> Result<Self, RedisConnectError> {
        let (client, conn) = redis_conn::open(url).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn,
                incr_window: redis::Script::new(INCR_WINDOW),
                take_token: redis::Script::new(TAKE_TOKEN),
                channels: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }
}

fn key(k: &str) -> String {
    format!("{KEY_PREFIX}coord:{k}")
}

fn unavailable(e: redis::RedisError) -> CoordError {
    CoordError::Unavailable(format!("Redis: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Coord for RedisCoord {
    async fn set_if_absent(&self, k: &str, value: &[u8], ttl: Duration) -> CoordResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(key(k))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn set(&self, k: &str, value: &[u8], ttl: Duration) -> CoordResult<()> {
        redis::cmd("SET")
            .arg(key(k))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn get(&self, k: &str) -> CoordResult<Option<Vec<u8>>> {
        self.conn().get(key(k)).await.map_err(unavailable)
    }

    async fn delete(&self, k: &str) -> CoordResult<bool> {
        let n: u64 = self.conn().del(key(k)).await.map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn incr_window(&self, k: &str, window: Duration) -> CoordResult<u64> {
        self.inner
            .incr_window
            .key(key(k))
            .arg(millis(window))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn take_token(&self, k: &str, burst: u32, every: Duration) -> CoordResult<Taken> {
        let wait_us: u64 = self
            .inner
            .take_token
            .key(key(k))
            .arg(burst.max(1))
            .arg(u64::try_from(every.as_micros()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(match wait_us {
            0 => Taken::Yes,
            us => Taken::No {
                retry_after: Duration::from_micros(us),
            },
        })
    }

    async fn push(&self, queue: &str, item: &[u8]) -> CoordResult<u64> {
        self.conn()
            .rpush(key(queue), item)
            .await
            .map_err(unavailable)
    }

    async fn pop(&self, queue: &str) -> CoordResult<Option<Vec<u8>>> {
        self.conn()
            .lpop(key(queue), None)
            .await
            .map_err(unavailable)
    }

    async fn len(&self, queue: &str) -> CoordResult<u64> {
        self.conn().llen(key(queue)).await.map_err(unavailable)
    }

    async fn rank_insert(&self, set: &str, member: &str, score: u64) -> CoordResult<bool> {
        let added: u64 = redis::cmd("ZADD")
            .arg(key(set))
            .arg("NX")
            .arg(score)
            .arg(member)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(added > 0)
    }

    async fn rank_of(&self, set: &str, member: &str) -> CoordResult<Option<u64>> {
        let rank: Option<u64> = self
            .conn()
            .zrank(key(set), member)
            .await
            .map_err(unavailable)?;
        Ok(rank)
    }

    async fn rank_head(&self, set: &str, count: u64) -> CoordResult<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let last = isize::try_from(count - 1).unwrap_or(isize::MAX);
        self.conn()
            .zrange(key(set), 0, last)
            .await
            .map_err(unavailable)
    }

    async fn rank_len(&self, set: &str) -> CoordResult<u64> {
        self.conn().zcard(key(set)).await.map_err(unavailable)
    }

    async fn rank_remove(&self, set: &str, member: &str) -> CoordResult<bool> {
        let n: u64 = self
            .conn()
            .zrem(key(set), member)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn rank_trim(&self, set: &str, below: u64) -> CoordResult<u64> {
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(key(set))
            .arg("-inf")
            .arg(format!("({below}"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> CoordResult<usize> {
        self.conn()
            .publish(key(channel), message)
            .await
            .map_err(unavailable)
    }

    async fn subscribe(&self, channel: &str) -> CoordResult<broadcast::Receiver<Vec<u8>>> {
        if let Some(tx) = self.inner.channels.lock().get(channel) {
            if tx.receiver_count() > 0 {
                return Ok(tx.subscribe());
            }
        }
        // Subscribe before answering, so an unreachable Redis is an error here and messages
        // published after this returns are seen.
        let pubsub = open_subscription(&self.inner.client, &key(channel))
            .await
            .map_err(unavailable)?;
        let (tx, rx) = broadcast::channel(SUBSCRIBER_BUFFER);
        self.inner
            .channels
            .lock()
            .insert(channel.to_owned(), tx.clone());
        tokio::spawn(pump(
            Arc::clone(&self.inner),
            channel.to_owned(),
            pubsub,
            tx,
        ));
        Ok(rx)
    }
}

async fn open_subscription(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Forwards a channel's messages to the local subscribers until none is left, subscribing
/// again (with backoff) whenever the connection drops. Messages published while it was down
/// are missed, as with any Redis subscriber: fan-out is a hint.
async fn pump(
    inner: Arc<Inner>,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    tx: broadcast::Sender<Vec<u8>>,
) {
    let full = key(&channel);
    loop {
        {
            let mut messages = pubsub.on_message();
            loop {
                match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
                    Ok(Some(msg)) => {
                        if tx.send(msg.get_payload_bytes().to_vec()).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_idle) if tx.receiver_count() == 0 => break,
                    Err(_idle) => {}
                }
            }
        }
        if tx.receiver_count() == 0 {
            let mut channels = inner.channels.lock();
            if channels.get(&channel).is_some_and(|t| t.same_channel(&tx)) {
                channels.remove(&channel);
            }
            return;
        }
        let mut backoff = Duration::from_millis(100);
        pubsub = loop {
            tracing::warn!(channel = %channel, "Redis subscription lost; subscribing again");
            tokio::time::sleep(backoff).await;
            if tx.receiver_count() == 0 {
                return;
            }
            match open_subscription(&inner.client, &full).await {
                Ok(p) => break p,
                Err(_) => backoff = (backoff * 2).min(RESUBSCRIBE_MAX_BACKOFF),
            }
        };
    }
}
