//! The rows of carts, in `carts`: one partition per shopper, one row per SKU. The only place
//! that knows their keys.
//!
//! Writers: the gateway, for the shopper's own requests (a cart is one person's list and
//! decides nothing another request could race); the payments worker, which takes out what an
//! order bought.

use crate::domain::commerce::CartLine;
use crate::names::tables;
use crate::store::{Store, Write};

use super::{self as repo, RepoError, RepoResult};

/// A shopper's cart lines by SKU, in SKU order, at most `limit` of them.
pub async fn lines(
    store: &dyn Store,
    user_id: &str,
    limit: usize,
) -> RepoResult<Vec<(String, CartLine)>> {
    let page = store.scan(tables::CARTS, user_id, None, limit).await?;
    page.rows
        .into_iter()
        .map(|row| {
            let sku = row.clustering.clone();
            Ok((sku, repo::decode_row::<CartLine>(tables::CARTS, row)?.value))
        })
        .collect()
}

pub async fn set_line(
    store: &dyn Store,
    user_id: &str,
    sku: &str,
    line: &CartLine,
) -> RepoResult<()> {
    repo::put(store, tables::CARTS, user_id, sku, line, None).await?;
    Ok(())
}

pub async fn remove_line(store: &dyn Store, user_id: &str, sku: &str) -> RepoResult<()> {
    store.delete(tables::CARTS, user_id, sku).await?;
    Ok(())
}

/// Takes what an order bought out of its shopper's cart (one partition: one batch).
/// Idempotent, so a replayed placement does it again.
pub async fn remove_bought<'a>(
    store: &dyn Store,
    user_id: &str,
    skus: impl Iterator<Item = &'a str>,
) -> RepoResult<()> {
    let writes = skus
        .map(|sku| Write::Delete {
            clustering: sku.to_owned(),
        })
        .collect();
    store
        .batch(tables::CARTS, user_id, writes)
        .await
        .map_err(RepoError::from)?;
    Ok(())
}
