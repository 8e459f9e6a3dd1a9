//! The rows of accounts, and the only place that knows their keys: `users` (one per user,
//! keyed by id) and `users_by_email` (the email's claim, pointing at the user's id). Written
//! by the gateway when someone signs up: the email's claim by insert-if-absent is what makes
//! two sign-ups with one address race safely.

use crate::domain::users::User;
use crate::names::tables;
use crate::store::Store;

use super::{self as repo, RepoResult};

/// True when an account already has this (normalized) email.
pub async fn email_taken(store: &dyn Store, email: &str) -> RepoResult<bool> {
    Ok(store
        .get(tables::USERS_BY_EMAIL, email, "")
        .await?
        .is_some())
}

/// Creates the account unless another already claimed its email (false). The user row goes
/// first: a crash before the email is claimed leaves an unreachable row, never an email that
/// points nowhere.
pub async fn create(store: &dyn Store, user: &User) -> RepoResult<bool> {
    repo::put(store, tables::USERS, &user.id, "", user, None).await?;
    let claim = store
        .insert_if_absent(
            tables::USERS_BY_EMAIL,
            &user.email,
            "",
            user.id.as_bytes().to_vec(),
            None,
        )
        .await?;
    if !claim.applied {
        store.delete(tables::USERS, &user.id, "").await?;
    }
    Ok(claim.applied)
}

/// The account with this (normalized) email.
pub async fn by_email(store: &dyn Store, email: &str) -> RepoResult<Option<User>> {
    let Some(row) = store.get(tables::USERS_BY_EMAIL, email, "").await? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&row.value).into_owned();
    Ok(repo::get::<User>(store, tables::USERS, &id, "")
        .await?
        .map(|v| v.value))
}
