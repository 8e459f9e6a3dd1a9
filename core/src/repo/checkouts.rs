//! The rows of checkouts, in `checkouts`: one per checkout, keyed by its id, kept for
//! [`ROW_TTL`] so a shopper can still see an old one. The only place that knows their keys.
//!
//! Writers: the checkout worker creates a checkout and cancels it; the payments worker moves
//! it through purchasing to purchased (or back to active after a declined card). Every change
//! after creation is a compare-and-set on the row's version.

use crate::domain::commerce::{Checkout, ROW_TTL};
use crate::names::tables;
use crate::store::Store;

use super::{self as repo, RepoResult, Versioned};

/// The ids of `user`'s checkouts that may still be live (their rows lapse with them).
pub async fn of_user(store: &dyn Store, user: &str) -> RepoResult<Vec<String>> {
    let rows = crate::store::scan_all(store, tables::USER_CHECKOUTS, user, 100).await?;
    Ok(rows.into_iter().map(|row| row.clustering).collect())
}

/// Lists a new checkout under its shopper until it expires.
pub async fn index(store: &dyn Store, checkout: &Checkout, now_ms: u64) -> RepoResult<()> {
    let left = checkout.expires_at_ms.saturating_sub(now_ms).max(1);
    store
        .put(
            tables::USER_CHECKOUTS,
            &checkout.user_id,
            &checkout.id,
            Vec::new(),
            // A moment past its expiry, never short of it: the checkout row says the rest.
            Some(std::time::Duration::from_millis(left) + std::time::Duration::from_secs(60)),
        )
        .await?;
    Ok(())
}

pub async fn load(store: &dyn Store, id: &str) -> RepoResult<Option<Versioned<Checkout>>> {
    repo::get(store, tables::CHECKOUTS, id, "").await
}

/// Writes a new checkout's row, once its stock is reserved.
pub async fn create(store: &dyn Store, checkout: &Checkout) -> RepoResult<()> {
    repo::put(
        store,
        tables::CHECKOUTS,
        &checkout.id,
        "",
        checkout,
        Some(ROW_TTL),
    )
    .await?;
    Ok(())
}

/// Compare-and-set of a checkout's row; false when it changed meanwhile.
pub async fn cas(store: &dyn Store, next: &Checkout, expected: u64) -> RepoResult<bool> {
    Ok(repo::cas(
        store,
        tables::CHECKOUTS,
        &next.id,
        expected,
        next,
        Some(ROW_TTL),
    )
    .await?
    .is_some())
}
