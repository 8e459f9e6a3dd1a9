//! The rows of product and ticket orders, in `orders`: one per order, keyed by its id, changed
//! by compare-and-set.

use crate::clock::now_ms;
use crate::domain::orders::Order;
use crate::names::tables;
use crate::store::Store;

use super::{self as repo, RepoError, RepoResult, Versioned};

/// Compare-and-set retries before a change gives up as contended.
const MAX_ATTEMPTS: usize = 10_000;

pub async fn load_order(store: &dyn Store, id: &str) -> RepoResult<Option<Versioned<Order>>> {
    match store.get(tables::ORDERS, id, "").await? {
        Some(row) => Ok(Some(Versioned {
            value: Order::decode(&row.value).map_err(|cause| RepoError::Codec {
                table: tables::ORDERS,
                cause,
            })?,
            version: row.version,
            expires_at_ms: row.expires_at_ms,
        })),
        None => Ok(None),
    }
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
        if repo::cas(store, tables::ORDERS, id, current.version, &next, None)
            .await?
            .is_some()
        {
            return Ok(Some(Ok(next)));
        }
    }
    Err(RepoError::Contended {
        what: format!("order {id}"),
    })
}
