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
