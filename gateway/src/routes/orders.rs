//! `POST/GET /orders`: an order pays for a hold; the payments worker decides and settles it.

use mercato_core::clock::to_rfc3339;
use mercato_core::codec::encode;
use mercato_core::domain::commands::{Outcome, PaymentCommand};
use mercato_core::domain::orders::{created_from_key, Order};
use mercato_core::names::{tables, topics};
use mercato_core::repo;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;

use super::holds::{command, other_outcome};
use super::{decode_cursor, encode_cursor, limit, Query};
use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::idempotency::{self, Keyed};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payment {
    card_number: String,
    #[serde(default)]
    #[allow(dead_code)]
    cardholder: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    #[serde(default)]
    hold_id: Option<String>,
    #[serde(default)]
    checkout_id: Option<String>,
    payment: Payment,
    #[serde(default)]
    #[allow(dead_code)]
    shipping_address: Option<Value>,
}

pub fn order_view(o: &Order) -> Value {
    json!({
        "id": o.id,
        "status": o.status,
        "event_id": o.event_id,
        "hold_id": o.hold_id,
        "items": o.items.iter().map(|i| json!({"seat_id": i.seat_id, "price": i.price})).collect::<Vec<_>>(),
        "total": o.total,
        "tickets": o.tickets.iter().map(|t| json!({"id": t.id, "seat_id": t.seat_id, "code": t.code})).collect::<Vec<_>>(),
        "shipments": [],
        "payment_id": o.payment_id,
        "failure": o.failure,
        "refund": o.refund,
        "created_at": to_rfc3339(o.created_ms),
        "updated_at": to_rfc3339(o.updated_ms),
    })
}

pub async fn create(
    state: &AppState,
    auth: Option<&str>,
    key: Option<&str>,
    body: &[u8],
) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let keyed = Keyed::for_post(&caller.user_id, key, "/api/v1/orders", body)?;
    idempotency::run(
        &*state.ports.store,
        keyed.as_ref(),
        place(state, &caller, keyed.as_ref(), body),
    )
    .await
}

async fn place(state: &AppState, caller: &Caller, keyed: Option<&Keyed>, body: &[u8]) -> ApiResult {
    let req: NewOrder = parse_json(body)?;
    let hold_id = match (req.hold_id, req.checkout_id) {
        (Some(h), None) => h,
        (None, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "checkout_not_supported",
                "product checkouts are not available yet; order tickets with a hold_id",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of hold_id and checkout_id",
            ))
        }
    };
    let method = state
        .provider
        .tokenize(&req.payment.card_number)
        .map_err(|e| ApiError::bad_request("invalid_card", e.to_string()))?;
    let order_id = match keyed {
        Some(k) => k.derived_id("ord_"),
        None => format!("ord_{}", uuid::Uuid::now_v7().simple()),
    };
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = PaymentCommand::PlaceOrder {
        command_id: command_id.clone(),
        order_id: order_id.clone(),
        user_id: caller.user_id.clone(),
        hold_id,
        method,
    };
    match command(
        state,
        topics::PAYMENTS,
        &order_id,
        &command_id,
        encode(&cmd),
    )
    .await?
    {
        Outcome::OrderAccepted(order) => Ok(ApiReply::accepted(order_view(&order))),
        other => Err(other_outcome(other)),
    }
}

pub async fn get(state: &AppState, auth: Option<&str>, id: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    match repo::get::<Order>(&*state.ports.store, tables::ORDERS, id, "").await? {
        Some(o) if caller.can_see(&o.value.user_id) => Ok(ApiReply::ok(order_view(&o.value))),
        _ => Err(ApiError::not_found(
            "order_not_found",
            format!("no order {id:?}"),
        )),
    }
}

fn time_filter(q: &Query, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis().max(0) as u64)
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_time",
                        format!("{name} must be an RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

/// The caller's orders, newest first, optionally within `from..to`.
pub async fn list(state: &AppState, auth: Option<&str>, q: &Query) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let limit = limit(q)?;
    let from = time_filter(q, "from")?;
    let to = time_filter(q, "to")?;
    let mut after = decode_cursor(q)?;
    let mut orders = Vec::new();
    let mut next_cursor = None;
    'pages: loop {
        let page = state
            .ports
            .store
            .scan(
                tables::USER_ORDERS,
                &caller.user_id,
                after.as_deref(),
                limit,
            )
            .await?;
        for row in &page.rows {
            let created = created_from_key(&row.clustering).unwrap_or(0);
            if from.is_some_and(|f| created < f) {
                break 'pages; // newest first: everything further is older still
            }
            if to.is_some_and(|t| created > t) {
                continue;
            }
            let id = String::from_utf8_lossy(&row.value);
            if let Some(o) =
                repo::get::<Order>(&*state.ports.store, tables::ORDERS, &id, "").await?
            {
                orders.push(order_view(&o.value));
            }
            if orders.len() == limit {
                next_cursor = Some(encode_cursor(&row.clustering));
                break 'pages;
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok(ApiReply::ok(
        json!({"orders": orders, "next_cursor": next_cursor}),
    ))
}
