//! What every request handler shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mercato_core::domain::payments::PaymentProvider;
use mercato_core::repo::EventCache;
use mercato_core::Ports;
use parking_lot::Mutex;
use serde_json::Value;

use crate::auth::Keys;
use crate::bulkhead::{Bulkhead, BulkheadSize};
use crate::error::ApiError;
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::rate_limit::{ClientAddress, RateLimits};
use crate::results::Waiters;

/// Where `POST /api/v1/admin/manifests` sends a YAML stream: the local reconciler of
/// `mercato up`. Absent on a cluster, where the operator reconciles from Kubernetes.
#[async_trait]
pub trait ManifestSink: Send + Sync + 'static {
    /// `base_dir` is the folder the manifest came from: relative source paths resolve there.
    async fn apply(&self, yaml: &str, base_dir: Option<&str>) -> Result<Value, ApiError>;
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Overrides every event's hold length (demos and tests).
    pub hold_ttl_override: Option<Duration>,
    /// How long a request waits for its command's result before answering 503.
    pub command_timeout: Duration,
    pub max_body_bytes: u64,
    /// How stale the availability counts of event pages may be.
    pub availability_max_age: Duration,
    /// How long a checkout reserves its stock.
    pub checkout_ttl: Duration,
    /// Password hashing (sign-up, sign-in): argon2 takes tens of milliseconds and 19 MiB.
    pub password_work: BulkheadSize,
    /// Searches: a broad query counts every match into its facets.
    pub search_work: BulkheadSize,
    /// Token buckets on sign-up, sign-in, holds, checkouts and orders.
    pub rate_limits: RateLimits,
    /// Where the client's address (what per-address limits count) is read.
    pub client_address: ClientAddress,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            hold_ttl_override: None,
            command_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            availability_max_age: Duration::from_secs(1),
            checkout_ttl: mercato_core::domain::commerce::DEFAULT_CHECKOUT_TTL,
            password_work: BulkheadSize::for_machine(),
            search_work: BulkheadSize::for_machine(),
            rate_limits: RateLimits::default(),
            client_address: ClientAddress::Peer,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Availability {
    pub available: u64,
    pub held: u64,
    pub sold: u64,
}

/// What the gateway signs and verifies with: session tokens' keys and the payment provider's
/// webhook secret, read from files (a mounted Kubernetes Secret) by the process.
pub struct Secrets {
    pub session_keys: KeyRing,
    pub webhook_secret: Vec<u8>,
}

pub struct AppState {
    pub ports: Ports,
    pub config: GatewayConfig,
    pub events: EventCache,
    pub keys: Keys,
    pub webhook_secret: Vec<u8>,
    pub waiters: Arc<Waiters>,
    pub provider: Arc<dyn PaymentProvider>,
    pub metrics: Metrics,
    pub manifests: Option<Arc<dyn ManifestSink>>,
    pub availability: Mutex<HashMap<String, (Instant, Availability)>>,
    /// The catalog's search index, if this gateway serves search.
    pub search: Option<Arc<mercato_search::Search>>,
    pub password_work: Bulkhead,
    pub search_work: Bulkhead,
    /// Every seat change, folded: what the live seat streams watch.
    pub seat_feed: Arc<crate::seat_feed::SeatFeed>,
    /// The waiting rooms' admitter ticks: what the streams of places follow.
    pub room_feed: Arc<crate::room_feed::RoomFeed>,
}

impl AppState {
    /// Builds the state. The secrets come from the process's files, never from the store.
    pub fn new(
        ports: Ports,
        config: GatewayConfig,
        secrets: Secrets,
        provider: Arc<dyn PaymentProvider>,
        manifests: Option<Arc<dyn ManifestSink>>,
    ) -> Self {
        Self {
            password_work: Bulkhead::new("password", config.password_work),
            seat_feed: Arc::default(),
            room_feed: Arc::default(),
            search_work: Bulkhead::new("search", config.search_work),
            events: EventCache::new(Arc::clone(&ports.store), Duration::from_secs(2)),
            ports,
            config,
            keys: Keys::new(secrets.session_keys),
            webhook_secret: secrets.webhook_secret,
            waiters: Arc::new(Waiters::default()),
            provider,
            metrics: Metrics::new(),
            manifests,
            availability: Mutex::new(HashMap::new()),
            search: None,
        }
    }

    pub fn with_search(mut self, search: Arc<mercato_search::Search>) -> Self {
        self.search = Some(search);
        self
    }
}
