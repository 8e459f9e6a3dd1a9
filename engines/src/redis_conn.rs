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

/// Opens a client for `url`. `rediss://` is TLS (rustls), the server's certificate verified
/// against the system's roots, or against the CA certificates of the PEM file that
/// `?sslrootcert=PATH` names (the parameter PostgreSQL URLs use for the same thing).
pub async fn open(url: &str) -> Result<(redis::Client, ConnectionManager), RedisConnectError> {
    let bad = |source| RedisConnectError::BadUrl {
        url: url.to_owned(),
        source,
    };
    let client = match root_cert(url).map_err(bad)? {
        None => redis::Client::open(url).map_err(bad)?,
        Some((rest, pem)) => redis::Client::build_with_tls(
            rest.as_str(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        )
        .map_err(bad)?,
    };
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

/// The URL without `sslrootcert`, and that file's PEM, when the URL names one.
fn root_cert(url: &str) -> Result<Option<(String, Vec<u8>)>, redis::RedisError> {
    let invalid = |what: String| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "bad TLS settings",
            what,
        ))
    };
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(None); // the redis crate says what is wrong with it
    };
    let (parsed, mut tls) = crate::tls::take_params(parsed, &["sslrootcert"]);
    let Some(path) = tls.remove("sslrootcert") else {
        return Ok(None);
    };
    if parsed.scheme() != "rediss" {
        return Err(invalid(format!("sslrootcert={path} needs a rediss:// URL")));
    }
    let pem = std::fs::read(&path).map_err(|e| invalid(format!("sslrootcert {path}: {e}")))?;
    Ok(Some((parsed.to_string(), pem)))
}

/// Redis is away (refused, dropped, timed out) rather than refusing the command.
pub fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}
