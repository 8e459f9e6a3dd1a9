//! Typed reads and writes of domain rows, shared by the workers and the gateway. Each
//! aggregate's rows have their own module, the only place that knows their keys.

pub mod carts;
pub mod catalog;
pub mod checkouts;
pub mod events;
pub mod holds;
pub mod once;
pub mod orders;
pub mod quotas;
pub mod stock;
pub mod users;
pub mod warehouses;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_crds::EventSpec;
use parking_lot::RwLock;

use crate::bus::BusError;
use crate::codec::{decode, encode, CodecError, Record};
use crate::names::tables;
use crate::store::{Row, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("undecodable row in {table}: {cause}")]
    Codec {
        table: &'static str,
        cause: CodecError,
    },
    #[error("stored event {id} is unreadable: {message}")]
    BadEvent { id: String, message: String },
    /// A compare-and-set lost to other writers every time it was tried; later it may win.
    #[error("{what} is too contended to change")]
    Contended { what: String },
    /// A service the decision needs (a payment provider) failed; its calls are idempotent, so
    /// the work is retried as a whole.
    #[error("{service} failed")]
    Upstream {
        service: &'static str,
        #[source]
        cause: crate::store::Cause,
    },
}

impl RepoError {
    pub fn label(&self) -> &'static str {
        match self {
            RepoError::Store(e) => e.label(),
            RepoError::Bus(_) => "bus",
            RepoError::Codec { .. } | RepoError::BadEvent { .. } => "codec",
            RepoError::Contended { .. } => "contended",
            RepoError::Upstream { .. } => "upstream",
        }
    }

    /// True when handling the same record again can only fail the same way (an unreadable row,
    /// an event spec that no longer parses, a request the store refuses): the record is poison.
    /// An outage, contention or a bus error is not: the record waits for the fault to pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            RepoError::Store(e) => e.is_permanent(),
            RepoError::Codec { .. } | RepoError::BadEvent { .. } => true,
            RepoError::Bus(_) | RepoError::Contended { .. } | RepoError::Upstream { .. } => false,
        }
    }
}

pub type RepoResult<T> = Result<T, RepoError>;

/// A decoded row with the version to make conditional writes against.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
    pub expires_at_ms: Option<u64>,
}

pub fn decode_row<T: Record>(table: &'static str, row: Row) -> RepoResult<Versioned<T>> {
    let value = decode(&row.value).map_err(|cause| RepoError::Codec { table, cause })?;
    Ok(Versioned {
        value,
        version: row.version,
        expires_at_ms: row.expires_at_ms,
    })
}

/// One page of a partition's rows after `cursor`, each turned into a value by `value` (which
/// skips a row by answering `None`); and the next page's cursor, `None` at the end.
pub async fn page<T>(
    store: &dyn Store,
    table: &'static str,
    partition: &str,
    cursor: Option<&str>,
    limit: usize,
    value: impl FnMut(Row) -> RepoResult<Option<T>>,
) -> RepoResult<(Vec<T>, Option<String>)> {
    let page = store.scan(table, partition, cursor, limit).await?;
    let values = page
        .rows
        .into_iter()
        .map(value)
        .filter_map(Result::transpose)
        .collect::<RepoResult<Vec<T>>>()?;
    Ok((values, page.next))
}

pub async fn get<T: Record>(
    store: &dyn Store,
    table: &'static str,
    partition: &str,
    clustering: &str,
) -> RepoResult<Option<Versioned<T>>> {
    match store.get(table, partition, clustering).await? {
        Some(row) => Ok(Some(decode_row(table, row)?)),
        None => Ok(None),
    }
}

pub async fn put<T: Record + Sync>(
    store: &dyn Store,
    table: &'static str,
    partition: &str,
    clustering: &str,
    value: &T,
    ttl: Option<Duration>,
) -> RepoResult<u64> {
    Ok(store
        .put(table, partition, clustering, encode(value), ttl)
        .await?
        .version)
}

/// Compare-and-set of a typed row; `Ok(None)` when the version no longer matches.
pub async fn cas<T: Record + Sync>(
    store: &dyn Store,
    table: &'static str,
    partition: &str,
    expected: u64,
    value: &T,
    ttl: Option<Duration>,
) -> RepoResult<Option<u64>> {
    let r = store
        .compare_and_set(table, partition, "", expected, encode(value), ttl)
        .await?;
    Ok(if r.applied {
        r.current.map(|c| c.version)
    } else {
        None
    })
}

/// Events are read on every hold and order but change rarely: a process keeps them decoded in
/// memory and re-reads one after `max_age`, so a re-applied manifest shows within that time.
/// When it was read, and the event.
type CachedEvent = (Instant, Arc<EventSpec>);

pub struct EventCache {
    store: Arc<dyn Store>,
    max_age: Duration,
    cached: RwLock<HashMap<String, CachedEvent>>,
}

impl EventCache {
    pub fn new(store: Arc<dyn Store>, max_age: Duration) -> Self {
        Self {
            store,
            max_age,
            cached: RwLock::new(HashMap::new()),
        }
    }

    pub async fn get(&self, id: &str) -> RepoResult<Option<Arc<EventSpec>>> {
        if let Some((at, spec)) = self.cached.read().get(id) {
            if at.elapsed() < self.max_age {
                return Ok(Some(Arc::clone(spec)));
            }
        }
        let record = events::load(&*self.store, id).await?;
        let spec = match record {
            Some(r) => Some(Arc::new(r.value.spec().map_err(|e| {
                RepoError::BadEvent {
                    id: id.to_owned(),
                    message: e.to_string(),
                }
            })?)),
            None => None,
        };
        // Only events that exist are cached: an event applied a moment after a 404 must be
        // found at once, and unknown ids must not fill the cache.
        if let Some(found) = &spec {
            let mut cached = self.cached.write();
            if cached.len() > 10_000 {
                cached.clear();
            }
            cached.insert(id.to_owned(), (Instant::now(), Arc::clone(found)));
        }
        Ok(spec)
    }

    pub fn forget(&self, id: &str) {
        self.cached.write().remove(id);
    }
}

/// The secrets earlier versions kept in the store (token and webhook signing keys), which now
/// come from files. Deleting them is idempotent, so every gateway may at start.
pub const RETIRED_STORED_SECRETS: [&str; 2] = ["jwt_secret", "webhook_secret"];

/// Deletes [`RETIRED_STORED_SECRETS`] from the store: no secret stays where every process and
/// every backup can read it.
pub async fn forget_stored_secrets(store: &dyn Store) -> RepoResult<()> {
    for name in RETIRED_STORED_SECRETS {
        store.delete(tables::SETTINGS, name, "").await?;
    }
    Ok(())
}
