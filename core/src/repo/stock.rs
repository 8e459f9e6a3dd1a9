//! The rows of stock, in `stock`: one partition per SKU holding its level (`level`) and the
//! once-only markers of the changes made to it (`op/<operation>`), so a marker and its change
//! are one batch; and low-stock alerts, in `seller_alerts` (newest first). The only place that
//! knows their keys.

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{self as repo, RepoError, RepoResult, Versioned};
use crate::bus::Bus;
use crate::clock::now_ms;
use crate::codec::{encode, Record};
use crate::domain::catalog::{InventoryRecord, Product};
use crate::domain::commerce::stock::StockLevel;
use crate::domain::commerce::{crosses_threshold, LowStockAlert};
use crate::names::{tables, topics};
use crate::store::{Store, Write};

/// Clustering key of the stock row in its SKU's partition.
const LEVEL: &str = "level";
/// Once-only markers live beside the stock row so the marker and the change are one batch.
const OP_PREFIX: &str = "op/";
const OP_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Compare-and-set retries before a change gives up as unavailable (contention that heavy
/// means something is wrong, not busy).
const MAX_ATTEMPTS: usize = 10_000;

pub async fn load_stock(store: &dyn Store, sku: &str) -> RepoResult<Option<Versioned<StockLevel>>> {
    repo::get(store, tables::STOCK, sku, LEVEL).await
}

/// What a stock change did.
#[derive(Debug, Clone)]
pub struct StockChange<T> {
    /// What the closure decided, or for a once-only change made before, what it decided then.
    pub value: T,
    /// Available units before and after (equal when nothing changed).
    pub before: u64,
    pub after: u64,
}

/// What a once-only change decided, kept beside the stock row. Its layout is the caller's (a
/// newtype adds nothing on the wire), still at its first version; a caller that changes the
/// shape of what it decides must change its operation's name too.
#[derive(Serialize, Deserialize)]
struct OnceValue<T>(T);

impl<T: Serialize + DeserializeOwned> Record for OnceValue<T> {}

/// The value a once-only change recorded, if it was made.
pub async fn once_value<T: Serialize + DeserializeOwned>(
    store: &dyn Store,
    sku: &str,
    op: &str,
) -> RepoResult<Option<T>> {
    match store
        .get(tables::STOCK, sku, &format!("{OP_PREFIX}{op}"))
        .await?
    {
        Some(row) => Ok(Some(
            repo::decode_row::<OnceValue<T>>(tables::STOCK, row)?
                .value
                .0,
        )),
        None => Ok(None),
    }
}

/// Changes a SKU's stock row by compare-and-set, retrying on contention. `decide` returns
/// whether it changed the level, and a value. With `once`, the change is made at most once
/// for that operation id, however often it is retried or replayed: the marker beside the row
/// keeps the value, so a replay learns what was decided the first time.
pub async fn change_stock<T: Serialize + DeserializeOwned>(
    store: &dyn Store,
    sku: &str,
    once: Option<&str>,
    mut decide: impl FnMut(&mut StockLevel, u64) -> (bool, T),
) -> RepoResult<StockChange<T>> {
    let marker = once.map(|op| format!("{OP_PREFIX}{op}"));
    for _ in 0..MAX_ATTEMPTS {
        let now = now_ms();
        let current = load_stock(store, sku).await?;
        if let Some(op) = once {
            if let Some(value) = once_value::<T>(store, sku, op).await? {
                let level = current.map(|c| c.value).unwrap_or_default();
                let available = level.available(now);
                return Ok(StockChange {
                    value,
                    before: available,
                    after: available,
                });
            }
        }
        let (mut level, version) = match current {
            Some(c) => (c.value, Some(c.version)),
            None => (StockLevel::default(), None),
        };
        let before = level.available(now);
        let (changed, value) = decide(&mut level, now);
        if !changed && marker.is_none() {
            return Ok(StockChange {
                value,
                before,
                after: before,
            });
        }
        let after = level.available(now);
        let row = encode(&level);
        let mut writes = vec![match version {
            Some(expected) => Write::CompareAndSet {
                clustering: LEVEL.into(),
                expected,
                value: row,
                ttl: None,
            },
            None => Write::InsertIfAbsent {
                clustering: LEVEL.into(),
                value: row,
                ttl: None,
            },
        }];
        let value = OnceValue(value);
        if let Some(m) = &marker {
            writes.push(Write::InsertIfAbsent {
                clustering: m.clone(),
                value: encode(&value),
                ttl: Some(OP_TTL),
            });
        }
        if store.batch(tables::STOCK, sku, writes).await?.applied {
            return Ok(StockChange {
                value: value.0,
                before,
                after,
            });
        }
        tokio::task::yield_now().await;
    }
    Err(RepoError::Contended {
        what: format!("stock of {sku}"),
    })
}

/// Records a low-stock alert when a change took `sku` to its inventory's threshold or below,
/// in the seller's alert list (newest first) and on the alerts topic. A replayed change does
/// not cross again: its before and after are equal.
pub async fn alert_if_low(
    store: &dyn Store,
    bus: &dyn Bus,
    sku: &str,
    before: u64,
    after: u64,
) -> RepoResult<Option<LowStockAlert>> {
    if after >= before {
        return Ok(None);
    }
    let Some(product) = repo::get::<Product>(store, tables::PRODUCTS, sku, "").await? else {
        return Ok(None);
    };
    let threshold =
        repo::get::<InventoryRecord>(store, tables::INVENTORIES, "all", &product.value.inventory)
            .await?
            .map_or(u64::from(mercato_crds::DEFAULT_LOW_STOCK_THRESHOLD), |i| {
                u64::from(i.value.low_stock_threshold)
            });
    if !crosses_threshold(before, after, threshold) {
        return Ok(None);
    }
    let alert = LowStockAlert {
        seller: product.value.seller.clone(),
        inventory: product.value.inventory.clone(),
        sku: sku.to_owned(),
        available: after,
        threshold,
        at_ms: now_ms(),
    };
    store
        .put(
            tables::SELLER_ALERTS,
            &alert.seller,
            &alert_key(alert.at_ms, sku),
            encode(&alert),
            Some(OP_TTL),
        )
        .await?;
    bus.send(
        topics::STOCK_ALERTS,
        alert.seller.as_bytes(),
        encode(&alert),
    )
    .await?;
    tracing::info!(
        seller = alert.seller,
        sku,
        available = after,
        threshold,
        "low stock"
    );
    Ok(Some(alert))
}

/// A page of a seller's low-stock alerts, newest first, after `cursor`; and the cursor of the
/// next page. An alert that no longer decodes is skipped: alerts are advice, not records.
pub async fn alerts_page(
    store: &dyn Store,
    seller: &str,
    cursor: Option<&str>,
    limit: usize,
) -> RepoResult<(Vec<LowStockAlert>, Option<String>)> {
    repo::page(store, tables::SELLER_ALERTS, seller, cursor, limit, |row| {
        Ok(crate::codec::decode::<LowStockAlert>(&row.value).ok())
    })
    .await
}

/// Newest first.
fn alert_key(at_ms: u64, sku: &str) -> String {
    format!("{:020}/{sku}", u64::MAX - at_ms)
}
