//! Readiness, the payment provider's webhook, and local administration.
//!
//! The webhook handler is the only writer of the `webhook_events` table: it claims each
//! provider event id before queueing the event and keeps it for a week, so a repeated callback,
//! concurrent or not, is acknowledged without being queued again.

use mercato_core::clock::now_ms;
use mercato_core::codec::encode;
use mercato_core::domain::commands::PaymentCommand;
use mercato_core::domain::payments::{verify, ProviderEvent};
use mercato_core::names::{tables, topics};
use mercato_core::repo::once::{self, Claimed, OnceRow};
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
/// How long a delivery's claim holds before another delivery of the event may take it over. A
/// process killed between claim and queue leaves its claim behind: the provider's redelivery
/// then waits this long, so it is short, and queueing is bounded well below it
/// ([`QUEUE_TIMEOUT`]) so that a live holder has finished or given up by then.
const WEBHOOK_CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest a delivery waits for the bus to take the event.
const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    // Once per event id, of any number of deliveries, however concurrent: the delivery whose
    // claim is written queues it; a failure to queue gives the claim back, so the provider's
    // redelivery queues it then.
    let store = &*state.ports.store;
    let id = event.id.clone();
    let row = OnceRow {
        table: tables::WEBHOOK_EVENTS,
        partition: &id,
        clustering: "",
        ttl: Some(WEBHOOK_EVENT_TTL),
        stale_after: WEBHOOK_CLAIM_STALE,
    };
    let claim = match once::claim(store, row, false).await? {
        Claimed::Act(claim) => claim,
        Claimed::Done { .. } => {
            return Ok(ApiReply::ok(json!({"received": true, "duplicate": true})))
        }
        // Not acknowledged: the delivery at work may still fail and give its claim back, and
        // an acknowledged provider would never deliver again. Asked again, this one finds the
        // event queued (a duplicate) or the claim free.
        Claimed::InProgress { .. } => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook_in_progress",
                "another delivery of this event is being queued; deliver it again",
            );
            e.retry_after_secs = Some(1);
            return Err(e);
        }
    };
    let key = event.order_id.clone();
    let cmd = PaymentCommand::Provider(event);
    let queued = tokio::time::timeout(
        QUEUE_TIMEOUT,
        state
            .ports
            .bus
            .send(topics::PAYMENTS, key.as_bytes(), encode(&cmd)),
    )
    .await;
    let failed = match queued {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(ApiError::from(e)),
        Err(_) => Some(ApiError::unavailable(
            "bus_unavailable",
            format!(
                "the bus did not take the event within {} s",
                QUEUE_TIMEOUT.as_secs()
            ),
        )),
    };
    if let Some(e) = failed {
        // Given back: the provider's redelivery queues it (a send that timed out but landed
        // is queued twice, which the payments worker answers once).
        once::give_back(store, row, claim).await?;
        return Err(e);
    }
    once::finish(store, row, claim).await?;
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
