//! Token buckets in front of what a script would hammer: sign-up and sign-in per client
//! address, sign-in per account, and holds, checkouts and orders per shopper. A request over
//! its bucket is answered 429 `rate_limited` with `Retry-After`, before any work is done.
//!
//! The buckets live behind the Coord port (Redis when the gateway runs as several processes,
//! so they share one count) and refill continuously (GCRA, `mercato_core::coord::gcra`): a
//! bucket of `burst` takes that many requests at once, then one per `every`. When Coord cannot
//! be reached, requests go through (and a warning is logged): a limiter outage must not stop
//! an on-sale, and the holds worker's seat cap still bounds what one shopper can take.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mercato_core::coord::Taken;
use serde_json::json;
use warp::http::{HeaderMap, StatusCode};

use crate::error::ApiError;
use crate::state::AppState;

/// A bucket's size: `burst` requests at once, then one per `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub burst: u32,
    pub every: Duration,
}

/// What is limited, and for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    SignUpPerAddress,
    SignInPerAddress,
    SignInPerAccount,
    HoldsPerUser,
    CheckoutsPerUser,
    OrdersPerUser,
}

impl Limited {
    pub const ALL: [Limited; 6] = [
        Limited::SignUpPerAddress,
        Limited::SignInPerAddress,
        Limited::SignInPerAccount,
        Limited::HoldsPerUser,
        Limited::CheckoutsPerUser,
        Limited::OrdersPerUser,
    ];

    /// The name flags, errors and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Limited::SignUpPerAddress => "sign-up-per-address",
            Limited::SignInPerAddress => "sign-in-per-address",
            Limited::SignInPerAccount => "sign-in-per-account",
            Limited::HoldsPerUser => "holds-per-user",
            Limited::CheckoutsPerUser => "checkouts-per-user",
            Limited::OrdersPerUser => "orders-per-user",
        }
    }

    /// Its bucket's place in [`RateLimits`]: the variants in order, as [`Limited::ALL`].
    fn index(self) -> usize {
        self as usize
    }

    /// Sized for people, with room for a family behind one address: a script is slowed to
    /// a person's pace, a person never notices.
    fn default_bucket(self) -> Bucket {
        let bucket = |burst, every_ms| Bucket {
            burst,
            every: Duration::from_millis(every_ms),
        };
        match self {
            Limited::SignUpPerAddress => bucket(20, 10_000),
            Limited::SignInPerAddress => bucket(60, 1_000),
            Limited::SignInPerAccount => bucket(10, 30_000),
            Limited::HoldsPerUser => bucket(20, 200),
            Limited::CheckoutsPerUser => bucket(10, 1_000),
            Limited::OrdersPerUser => bucket(10, 1_000),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateLimitError {
    #[error("{0:?}: expected off, NAME=off or NAME=BURST/PERIOD (e.g. holds-per-user=20/200ms)")]
    Malformed(String),
    #[error("{given:?} is no limit; the limits are {}", known())]
    UnknownLimit { given: String },
    #[error("{0:?}: the burst must be 1 or more and the period between 1ms and 1h")]
    OutOfRange(String),
}

fn known() -> String {
    Limited::ALL.map(Limited::name).join(", ")
}

/// Every bucket, `None` where a limit is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    buckets: [Option<Bucket>; 6],
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            buckets: Limited::ALL.map(|l| Some(l.default_bucket())),
        }
    }
}

impl RateLimits {
    /// No limit at all: load tests that play thousands of shoppers from one address.
    pub fn off() -> Self {
        Self { buckets: [None; 6] }
    }

    pub fn bucket(&self, limited: Limited) -> Option<Bucket> {
        self.buckets[limited.index()]
    }

    /// The defaults changed by `specs`, in order: `off` (every limit), `NAME=off`, or
    /// `NAME=BURST/PERIOD` with a humantime period (`holds-per-user=20/200ms`).
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, RateLimitError> {
        let mut limits = Self::default();
        for spec in specs {
            let spec = spec.as_ref().trim();
            if spec == "off" {
                limits = Self::off();
                continue;
            }
            let (name, value) = spec
                .split_once('=')
                .ok_or_else(|| RateLimitError::Malformed(spec.to_owned()))?;
            let limited = Limited::ALL
                .into_iter()
                .find(|l| l.name() == name.trim())
                .ok_or_else(|| RateLimitError::UnknownLimit {
                    given: name.trim().to_owned(),
                })?;
            limits.buckets[limited.index()] = match value.trim() {
                "off" => None,
                size => Some(parse_bucket(spec, size)?),
            };
        }
        Ok(limits)
    }
}

fn parse_bucket(spec: &str, size: &str) -> Result<Bucket, RateLimitError> {
    let malformed = || RateLimitError::Malformed(spec.to_owned());
    let (burst, every) = size.split_once('/').ok_or_else(malformed)?;
    let burst: u32 = burst.trim().parse().map_err(|_| malformed())?;
    let every = humantime::parse_duration(every.trim()).map_err(|_| malformed())?;
    let range = Duration::from_millis(1)..=Duration::from_secs(3600);
    if burst == 0 || !range.contains(&every) {
        return Err(RateLimitError::OutOfRange(spec.to_owned()));
    }
    Ok(Bucket { burst, every })
}

/// Where the client's address is read: the connection's peer, or a header the proxy in front
/// of the gateway sets (its last address, the one that proxy appended; earlier ones are
/// whatever the client claimed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientAddress {
    #[default]
    Peer,
    Header(String),
}

impl ClientAddress {
    pub fn of(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        match self {
            ClientAddress::Peer => peer.map(|p| p.ip()),
            ClientAddress::Header(name) => headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .next_back()
                // Not through the proxy (a probe, a port-forward): the peer is the client.
                .or(peer.map(|p| p.ip())),
        }
    }
}

/// Whose bucket an address draws from: an IPv4 address itself, an IPv6 address's /64 (one
/// host or site is handed a whole /64 and can pick a new address in it per request), an
/// IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

/// Takes a token of `limited`'s bucket for `who` (an address, an account, a user id).
pub async fn check(state: &AppState, limited: Limited, who: &str) -> Result<(), ApiError> {
    let Some(bucket) = state.config.rate_limits.bucket(limited) else {
        return Ok(());
    };
    let key = format!("rate/{}/{who}", limited.name());
    match state
        .ports
        .coord
        .take_token(&key, bucket.burst, bucket.every)
        .await
    {
        Ok(Taken::Yes) => Ok(()),
        Ok(Taken::No { retry_after }) => {
            state.metrics.rate_limited(limited.name());
            Err(refused(limited, retry_after))
        }
        Err(e) => {
            tracing::warn!(limit = limited.name(), error = %e, "rate limit not checked: coordination is unavailable");
            Ok(())
        }
    }
}

fn refused(limited: Limited, retry_after: Duration) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; try again after the Retry-After delay",
    )
    .with_details(json!({
        "limit": limited.name(),
        "retry_after_ms": retry_after.as_millis() as u64,
    }));
    e.retry_after_secs = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
    e
}
