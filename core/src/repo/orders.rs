//! The rows of product and ticket orders, in `orders`: one per order, keyed by its id, changed
//! by compare-and-set; each user's order history, in `user_orders` (newest first); and the
//! paid orders no warehouse could supply, in `flagged_orders`. The only place that knows their
//! keys.
//!
//! Writers: the payments worker places and settles orders, cancels them, takes returns and
//! advances shipments; the allocator records where an order ships from. Both are keyed by the
//! order id, so one order's commands are decided on one partition in order.

use crate::clock::now_ms;
use crate::domain::orders::Order;
use crate::names::tables;
use crate::store::Store;

use super::{self as repo, RepoError, RepoResult, Versioned};

/// Compare-and-set retries before a change gives up as contended.
const MAX_ATTEMPTS: usize = 10_000;
/// The single partition of the flagged-orders index (admins list all of them).
const FLAGGED_PARTITION: &str = "all";

pub async fn load_order(store: &dyn Store, id: &str) -> RepoResult<Option<Versioned<Order>>> {
    match store.get(tables::ORDERS, id, "").await? {
        Some(row) => Ok(Some(Versioned {
            value: crate::codec::decode::<Order>(&row.value).map_err(|cause| RepoError::Codec {
                table: tables::ORDERS,
                cause,
            })?,
            version: row.version,
            expires_at_ms: row.expires_at_ms,
        })),
        None => Ok(None),
    }
}

/// Writes a new order's row. Only the worker that placed the order calls it, once per order
/// id, so nothing else can have written the row.
pub async fn create_order(store: &dyn Store, order: &Order) -> RepoResult<()> {
    repo::put(store, tables::ORDERS, &order.id, "", order, None).await?;
    Ok(())
}

/// Compare-and-set of an order's row; false when it changed meanwhile.
pub async fn cas_order(store: &dyn Store, next: &Order, expected: u64) -> RepoResult<bool> {
    Ok(
        repo::cas(store, tables::ORDERS, &next.id, expected, next, None)
            .await?
            .is_some(),
    )
}

/// Changes an order by compare-and-set, retrying on contention: `decide` returns Ok(true) to
/// write, Ok(false) to leave it, or a refusal. `None` when there is no such order.
pub async fn update_order<E>(
    store: &dyn Store,
    id: &str,
    mut decide: impl FnMut(&mut Order) -> Result<bool, E>,
) -> RepoResult<Option<Result<Order, E>>> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(current) = load_order(store, id).await? else {
            return Ok(None);
        };
        let mut next = current.value.clone();
        match decide(&mut next) {
            Err(refusal) => return Ok(Some(Err(refusal))),
            Ok(false) => return Ok(Some(Ok(next))),
            Ok(true) => {}
        }
        next.updated_ms = now_ms();
        if cas_order(store, &next, current.version).await? {
            return Ok(Some(Ok(next)));
        }
    }
    Err(RepoError::Contended {
        what: format!("order {id}"),
    })
}

/// Puts an order in its user's history. Idempotent (the entry's key comes from the order), so
/// a replayed placement calls it again: a crash after the order row was written but before
/// this would otherwise leave a charged order that its shopper can never list.
pub async fn index_order(store: &dyn Store, order: &Order) -> RepoResult<()> {
    store
        .put(
            tables::USER_ORDERS,
            &order.user_id,
            &user_order_key(order.created_ms, &order.id),
            order.id.as_bytes().to_vec(),
            None,
        )
        .await?;
    Ok(())
}

/// One entry of a user's order history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub order_id: String,
    pub created_ms: u64,
    /// Where a listing that stops after this entry resumes.
    pub cursor: String,
}

/// A page of a user's order history, newest first, after `cursor` (or from the newest order
/// created at or before `to_ms`); the cursor of the next page when there is one.
pub async fn history_page(
    store: &dyn Store,
    user_id: &str,
    cursor: Option<&str>,
    to_ms: Option<u64>,
    limit: usize,
) -> RepoResult<(Vec<HistoryEntry>, Option<String>)> {
    let mut after = cursor.map(str::to_owned);
    // Orders after `to` sort before this key, so the scan starts past them instead of reading
    // every newer order to skip it.
    if let Some(start) = to_ms.map(user_orders_at_or_before) {
        if after.as_deref().is_none_or(|a| a < start.as_str()) {
            after = Some(start);
        }
    }
    let page = store
        .scan(tables::USER_ORDERS, user_id, after.as_deref(), limit)
        .await?;
    let entries = page
        .rows
        .into_iter()
        .map(|row| HistoryEntry {
            order_id: String::from_utf8_lossy(&row.value).into_owned(),
            created_ms: created_from_key(&row.clustering).unwrap_or(0),
            cursor: row.clustering,
        })
        .collect();
    Ok((entries, page.next))
}

/// Flags a paid order no warehouse could supply in full. The listing shows a flagged order
/// only while its shortfall is not empty, so the flag goes in before the order changes and
/// comes out after: a reader never misses a flagged order, and a flag left behind by a crash
/// shows nothing.
pub async fn flag(store: &dyn Store, order_id: &str) -> RepoResult<()> {
    store
        .put(
            tables::FLAGGED_ORDERS,
            FLAGGED_PARTITION,
            order_id,
            now_ms().to_be_bytes().to_vec(),
            None,
        )
        .await?;
    Ok(())
}

/// Takes an order's flag down (supplied in full, or cancelled).
pub async fn unflag(store: &dyn Store, order_id: &str) -> RepoResult<()> {
    store
        .delete(tables::FLAGGED_ORDERS, FLAGGED_PARTITION, order_id)
        .await?;
    Ok(())
}

/// A page of flagged order ids after `cursor`, and the next page's cursor.
pub async fn flagged_page(
    store: &dyn Store,
    cursor: Option<&str>,
    limit: usize,
) -> RepoResult<(Vec<String>, Option<String>)> {
    repo::page(
        store,
        tables::FLAGGED_ORDERS,
        FLAGGED_PARTITION,
        cursor,
        limit,
        |row| Ok(Some(row.clustering)),
    )
    .await
}

/// Clustering key of a user's order list: newest first, then by id.
fn user_order_key(created_ms: u64, order_id: &str) -> String {
    format!("{:020}/{order_id}", u64::MAX - created_ms)
}

/// Where a newest-first scan of a user's orders starts for orders created at or before
/// `to_ms`: every key of a newer order sorts before it, every key of an older or equal one
/// after it.
fn user_orders_at_or_before(to_ms: u64) -> String {
    format!("{:020}", u64::MAX - to_ms)
}

/// Created time back from a user-order key.
fn created_from_key(key: &str) -> Option<u64> {
    key.split('/')
        .next()?
        .parse::<u64>()
        .ok()
        .map(|inv| u64::MAX - inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_up_to_a_time_starts_at_its_first_order() {
        let mut keys: Vec<String> = (0..200u64)
            .flat_map(|t| [user_order_key(t * 10, "a"), user_order_key(t * 10, "b")])
            .collect();
        keys.sort();
        for to in [0, 5, 10, 995, 1_990, 5_000] {
            let start = user_orders_at_or_before(to);
            let listed: Vec<u64> = keys
                .iter()
                .filter(|k| k.as_str() > start.as_str())
                .map(|k| created_from_key(k).unwrap())
                .collect();
            let expected: Vec<u64> = keys
                .iter()
                .map(|k| created_from_key(k).unwrap())
                .filter(|&c| c <= to)
                .collect();
            assert_eq!(listed, expected, "to = {to}");
        }
    }
}
