//! `POST /users` and `POST /sessions`.

use mercato_core::clock::now_ms;
use mercato_core::domain::users::{Role, User};
use mercato_core::repo::users;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;

use crate::auth::{hash_password, verify_password, SESSION_SECS};
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::rate_limit::{self, Limited};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    password: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

fn normalize_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !e.contains(char::is_whitespace);
    if valid {
        Ok(e)
    } else {
        Err(ApiError::bad_request(
            "invalid_email",
            "that is not an email address",
        ))
    }
}

pub async fn create_user(state: &AppState, body: &[u8]) -> ApiResult {
    let req: NewUser = parse_json(body)?;
    let user = register(state, req, Role::Shopper).await?;
    Ok(ApiReply::created(
        json!({"id": user.id, "email": user.email, "name": user.name}),
    ))
}

/// Validates, hashes the password and creates the account, refusing a taken email.
async fn register(state: &AppState, req: NewUser, role: Role) -> Result<User, ApiError> {
    let email = normalize_email(&req.email)?;
    if !(8..=128).contains(&req.password.chars().count()) {
        return Err(ApiError::bad_request(
            "weak_password",
            "a password has 8 to 128 characters",
        ));
    }
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "a name has 1 to 100 characters",
        ));
    }
    let store = &*state.ports.store;
    if users::email_taken(store, &email).await? {
        return Err(email_taken());
    }
    let password = req.password;
    let password_hash = state
        .password_work
        .run(move || hash_password(&password))
        .await??;
    let user = User {
        id: format!("usr_{}", uuid::Uuid::now_v7().simple()),
        email,
        name,
        password_hash,
        role,
        created_ms: now_ms(),
    };
    if !users::create(store, &user).await? {
        return Err(email_taken());
    }
    Ok(user)
}

/// What [`ensure_admin`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAccount {
    Created,
    Exists,
    /// The email belongs to an account without the admin role: left as it is.
    NotAnAdmin,
}

/// The first admin, from the installation's secrets: created when no account has the email;
/// an existing account keeps its password (changed by its owner, not by a restart).
pub async fn ensure_admin(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<AdminAccount, ApiError> {
    let normalized = normalize_email(email)?;
    if let Some(user) = users::by_email(&*state.ports.store, &normalized).await? {
        return Ok(if user.role == Role::Admin {
            AdminAccount::Exists
        } else {
            AdminAccount::NotAnAdmin
        });
    }
    let req = NewUser {
        email: normalized,
        password,
        name: "Administrator".to_owned(),
    };
    match register(state, req, Role::Admin).await {
        Ok(_) => Ok(AdminAccount::Created),
        // Another gateway starting at the same moment created it.
        Err(e) if e.code == "email_taken" => Ok(AdminAccount::Exists),
        Err(e) => Err(e),
    }
}

fn email_taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "email_taken",
        "an account with that email exists",
    )
}

/// A hash no password matches (of random bytes), made once with the same parameters as real
/// ones: what an unknown email's sign-in is checked against.
fn unknown_email_hash() -> Result<String, ApiError> {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(hash) = HASH.get() {
        return Ok(hash.clone());
    }
    let hash = hash_password(&uuid::Uuid::new_v4().to_string())?;
    Ok(HASH.get_or_init(|| hash).clone())
}

pub async fn create_session(state: &AppState, body: &[u8]) -> ApiResult {
    let req: Credentials = parse_json(body)?;
    let email = normalize_email(&req.email)?;
    // Per account, on top of the route's per-address bucket: guessing one account's
    // password from many addresses is slowed too.
    rate_limit::check(state, Limited::SignInPerAccount, &email).await?;
    let store = &*state.ports.store;
    let user = users::by_email(store, &email).await?;
    let bad = || ApiError::unauthorized("wrong email or password");
    let password = req.password;
    let Some(user) = user else {
        // An unknown email costs the same hash check as a wrong password, so neither the
        // answer nor its time tells whether an account exists.
        state
            .password_work
            .run(move || unknown_email_hash().is_ok_and(|phc| verify_password(&password, &phc)))
            .await?;
        return Err(bad());
    };
    let phc = user.password_hash.clone();
    if !state
        .password_work
        .run(move || verify_password(&password, &phc))
        .await?
    {
        return Err(bad());
    }
    let _ = state.ports.coord.delete(&format!("signin/{email}")).await;
    let (token, exp) = state.keys.issue(&user.id, user.role, SESSION_SECS)?;
    let expires_at = chrono::DateTime::from_timestamp(exp, 0)
        .unwrap_or_default()
        .to_rfc3339();
    Ok(ApiReply::created(
        json!({"token": token, "expires_at": expires_at, "user_id": user.id}),
    ))
}
