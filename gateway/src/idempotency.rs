//! `Idempotency-Key`: the same key and body replay the first answer; the same key with another
//! body is 422. Kept in the store (not in Coord), because losing it could duplicate an order.
//!
//! Ids created under a key (hold ids, order ids) are derived from it, so even a retry after a
//! lost answer reaches the same hold or order instead of making a second one.
//!
//! This module is the only reader and writer of the `idempotency` table.

use std::time::Duration;

use mercato_core::codec::{decode, encode};
use mercato_core::names::tables;
use mercato_core::store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warp::http::StatusCode;

use crate::auth::Caller;
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::state::AppState;

const KEEP: Duration = Duration::from_secs(24 * 3600);
const IN_FLIGHT: Duration = Duration::from_secs(60);
const MAX_KEY_LEN: usize = 255;

#[derive(Serialize, Deserialize)]
enum Entry {
    InFlight {
        fingerprint: Vec<u8>,
    },
    Done {
        fingerprint: Vec<u8>,
        status: u16,
        body: Option<String>,
    },
}

mercato_core::first_layout!(Entry);

/// A request under an idempotency key: where its answer is kept, and what it must match.
#[derive(Clone)]
pub struct Keyed {
    partition: String,
    fingerprint: Vec<u8>,
    key: String,
    scope: String,
}

impl Keyed {
    pub fn new(
        scope: &str,
        key: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.is_ascii() {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "an Idempotency-Key is 1 to 255 ASCII characters",
            ));
        }
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update([0]);
        h.update(path.as_bytes());
        h.update([0]);
        h.update(body);
        Ok(Self {
            partition: format!("{scope}/{key}"),
            fingerprint: h.finalize().to_vec(),
            key: key.to_owned(),
            scope: scope.to_owned(),
        })
    }

    /// The key of a caller's POST to `path`, if the request carries one.
    pub fn for_post(
        caller_id: &str,
        key: Option<&str>,
        path: &str,
        body: &[u8],
    ) -> Result<Option<Self>, ApiError> {
        key.map(|k| Self::new(caller_id, k, "POST", path, body))
            .transpose()
    }

    /// An id derived from the key: the same for every retry under it.
    pub fn derived_id(&self, prefix: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.scope.as_bytes());
        h.update([0]);
        h.update(self.key.as_bytes());
        h.update([0]);
        h.update(prefix.as_bytes());
        format!("{prefix}{}", &hex::encode(h.finalize())[..26])
    }
}

/// The frame of every POST that creates or changes something: the caller is authenticated,
/// and `work` runs at most once per `Idempotency-Key` (a replay gets the first answer). `work`
/// gets the caller and the key, from which it derives the ids it creates.
pub async fn post<F, Fut>(
    state: &AppState,
    auth: Option<&str>,
    key: Option<&str>,
    path: &str,
    body: &[u8],
    work: F,
) -> ApiResult
where
    F: FnOnce(Caller, Option<Keyed>) -> Fut,
    Fut: std::future::Future<Output = ApiResult>,
{
    let caller = state.keys.caller(auth)?;
    let keyed = Keyed::for_post(&caller.user_id, key, path, body)?;
    run(
        &*state.ports.store,
        keyed.as_ref(),
        work(caller, keyed.clone()),
    )
    .await
}

/// Runs `work` at most once per key; a replay gets the first answer.
pub async fn run<F>(store: &dyn Store, keyed: Option<&Keyed>, work: F) -> ApiResult
where
    F: std::future::Future<Output = ApiResult>,
{
    let Some(k) = keyed else {
        return work.await;
    };
    let claim = encode(&Entry::InFlight {
        fingerprint: k.fingerprint.clone(),
    });
    let first = store
        .insert_if_absent(
            tables::IDEMPOTENCY,
            &k.partition,
            "",
            claim,
            Some(IN_FLIGHT),
        )
        .await?;
    if !first.applied {
        let existing = first
            .current
            .and_then(|row| decode::<Entry>(&row.value).ok());
        return match existing {
            Some(Entry::Done {
                fingerprint,
                status,
                body,
            }) if fingerprint == k.fingerprint => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let body = body
                    .and_then(|b| serde_json::from_str(&b).ok())
                    .map(crate::error::ReplyBody::Json);
                // Errors replay too, byte for byte, as the first answer had them.
                Ok(ApiReply {
                    status,
                    body,
                    headers: Vec::new(),
                })
            }
            Some(Entry::InFlight { fingerprint }) if fingerprint == k.fingerprint => {
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_flight",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                ))
            }
            _ => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )),
        };
    }
    let result = work.await;
    let (status, body) = match &result {
        Ok(r) => (r.status, r.body.as_ref().map(|b| b.to_string())),
        Err(e) => (e.status, Some(e.body().to_string())),
    };
    if status.is_server_error() {
        // Not an answer worth replaying: let the client retry under the same key.
        store.delete(tables::IDEMPOTENCY, &k.partition, "").await?;
    } else {
        let done = Entry::Done {
            fingerprint: k.fingerprint.clone(),
            status: status.as_u16(),
            body,
        };
        store
            .put(
                tables::IDEMPOTENCY,
                &k.partition,
                "",
                encode(&done),
                Some(KEEP),
            )
            .await?;
    }
    result
}
