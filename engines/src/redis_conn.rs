//! What the Redis adapters share: opening a client and a self-healing connection, and telling a
//! Redis that went away from a command Redis refused.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a command may take before the caller hears `Unavailable`: requests fail fast while
/// Redis is away, and the connection manager reconnects behind them.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every Mercato key starts with this, so Mercato can share a Redis with other tenants.
pub const KEY_PREFIX: &str = "mercato:";

#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    #[error("bad Redis URL {url:?}: {source}")]
    BadUrl {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot reach Redis at {url}: {source}")]
    Unreachable {
        url: String,
        source: redis::RedisError,
    },
}

pub async fn open(url: &str) -> Result<(redis::Client, ConnectionManager), RedisConnectError> {
    let client = redis::Client::open(url).map_err(|source| RedisConnectError::BadUrl {
        url: url.to_owned(),
        source,
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let manager = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|source| RedisConnectError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    Ok((client, manager))
}

/// Redis is away (refused, dropped, timed out) rather than refusing the command.
pub fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}
