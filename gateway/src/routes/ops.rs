//! Readiness, the payment provider's webhook, and local administration.
//!
//! The webhook handler is the only writer of the `webhook_events` table: it keeps each provider
//! event id for a week, so a repeated callback is acknowledged without being queued again.

use mercato_core::clock::now_ms;
use mercato_core::codec::encode;
use mercato_core::domain::commands::PaymentCommand;
use mercato_core::domain::payments::{verify, ProviderEvent};
use mercato_core::names::{tables, topics};
use serde_json::json;
use warp::http::StatusCode;

use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::state::AppState;

pub async fn ready(state: &AppState) -> ApiResult {
    state
        .ports
        .store
        .get(tables::SETTINGS, "readyz", "")
        .await?;
    state.ports.bus.partitions(topics::HOLDS).await?;
    Ok(ApiReply::ok(json!({"status": "ready"})))
}

/// The longest provider event id accepted.
const MAX_EVENT_ID: usize = 200;
/// How long a queued event id is remembered: longer than any provider retries a delivery.
const WEBHOOK_EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The provider's callback: verified, then queued for the payments worker, which settles the
/// order idempotently (a webhook delivered twice is recorded once).
pub async fn webhook(state: &AppState, signature: Option<&str>, body: &[u8]) -> ApiResult {
    let signature = signature.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the webhook signature is missing",
        )
    })?;
    verify(
        &state.webhook_secret,
        signature,
        body,
        (now_ms() / 1000) as i64,
    )
    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()))?;
    let event: ProviderEvent = parse_json(body)?;
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("an event id has 1 to {MAX_EVENT_ID} bytes"),
        ));
    }
    // Deduplicated by event id: recorded only after the event is queued, so a crash between
    // the two queues a redelivery again (the payments worker's transitions are idempotent)
    // and never drops one.
    let store = &*state.ports.store;
    if store
        .get(tables::WEBHOOK_EVENTS, &event.id, "")
        .await?
        .is_some()
    {
        return Ok(ApiReply::ok(json!({"received": true, "duplicate": true})));
    }
    let (id, key) = (event.id.clone(), event.order_id.clone());
    let cmd = PaymentCommand::Provider(event);
    state
        .ports
        .bus
        .send(topics::PAYMENTS, key.as_bytes(), encode(&cmd))
        .await?;
    store
        .put(
            tables::WEBHOOK_EVENTS,
            &id,
            "",
            Vec::new(),
            Some(WEBHOOK_EVENT_TTL),
        )
        .await?;
    Ok(ApiReply::ok(json!({"received": true})))
}

/// Applies a manifest stream with the local reconciler; the route checked the admin role.
pub async fn apply_manifests(state: &AppState, base_dir: Option<&str>, body: &[u8]) -> ApiResult {
    let sink = state
        .manifests
        .as_ref()
        .ok_or_else(|| ApiError::not_found("not_found", "no such route"))?;
    let yaml = std::str::from_utf8(body).map_err(|_| {
        ApiError::bad_request("malformed_manifest", "the manifest stream is not UTF-8")
    })?;
    let applied = sink.apply(yaml, base_dir).await?;
    Ok(ApiReply::accepted(applied))
}
