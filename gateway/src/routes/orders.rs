//! `POST/GET /orders`: an order pays for a hold; the payments worker decides and settles it.

use mercato_core::clock::to_rfc3339;
use mercato_core::codec::encode;
use mercato_core::domain::commands::{Outcome, PaymentCommand};
use mercato_core::domain::commerce::{Address, Goods};
use mercato_core::domain::orders::Order;
use mercato_core::names::topics;
use mercato_core::repo::orders::{history_page, load_order};
use serde::Deserialize;
use serde_json::{json, Value};

use super::holds::{command, other_outcome};
use super::{decode_cursor, encode_cursor, limit, Query};
use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::idempotency::Keyed;
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
    shipping_address: Option<Value>,
}

fn goods_view(o: &Order, g: &Goods) -> Value {
    json!({
        "id": o.id,
        "type": "product",
        "status": o.status,
        "checkout_id": g.checkout_id,
        "items": g.lines.iter().map(|l| json!({"sku": l.sku, "name": l.name, "quantity": l.quantity, "price": l.unit_price})).collect::<Vec<_>>(),
        "total": o.total,
        "tickets": [],
        "shipping_address": g.shipping.as_ref().map(address_json),
        "shipments": g.shipments.iter().map(|s| json!({
            "id": s.id, "warehouse": s.warehouse, "status": s.status,
            "tracking_number": s.tracking_number,
            "items": s.items.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
            "updated_at": to_rfc3339(s.updated_ms),
        })).collect::<Vec<_>>(),
        "shortfall": g.shortfall.iter().map(|(sku, q)| json!({"sku": sku, "missing": q})).collect::<Vec<_>>(),
        "refunds": g.refunds.iter().map(|r| json!({
            "id": r.id, "amount": r.amount, "reason": r.reason, "status": r.state,
            "created_at": to_rfc3339(r.created_ms),
        })).collect::<Vec<_>>(),
        "returns": g.returns.iter().map(|r| json!({
            "id": r.id, "reason": r.reason, "refund_id": r.refund_id,
            "items": r.items.iter().map(|(sku, q, w)| json!({"sku": sku, "quantity": q, "warehouse": w})).collect::<Vec<_>>(),
            "created_at": to_rfc3339(r.created_ms),
        })).collect::<Vec<_>>(),
        "payment_id": o.payment_id,
        "failure": o.failure,
        "created_at": to_rfc3339(o.created_ms),
        "updated_at": to_rfc3339(o.updated_ms),
    })
}

fn address_json(a: &Address) -> Value {
    let mut m: serde_json::Map<String, Value> = a
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if let (Some(lat), Some(lon)) = (a.lat, a.lon) {
        m.insert("lat".into(), json!(lat));
        m.insert("lon".into(), json!(lon));
    }
    Value::Object(m)
}

/// A shipping address: string fields as given, plus `lat`/`lon` for the nearest warehouse.
fn parse_address(v: &Value) -> Result<Address, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_address", m);
    let Value::Object(fields) = v else {
        return Err(bad("shipping_address must be an object".into()));
    };
    if fields.len() > 20 {
        return Err(bad("shipping_address has at most 20 fields".into()));
    }
    let mut a = Address::default();
    for (k, v) in fields {
        match (k.as_str(), v) {
            ("lat", Value::Number(n)) => match n.as_f64() {
                Some(x) if (-90.0..=90.0).contains(&x) => a.lat = Some(x),
                _ => return Err(bad(format!("lat {n} is not a latitude"))),
            },
            ("lon", Value::Number(n)) => match n.as_f64() {
                Some(x) if (-180.0..=180.0).contains(&x) => a.lon = Some(x),
                _ => return Err(bad(format!("lon {n} is not a longitude"))),
            },
            (_, Value::String(s)) if s.len() <= 200 && k.len() <= 40 => {
                a.fields.insert(k.clone(), s.clone());
            }
            _ => {
                return Err(bad(format!(
                    "{k}: fields are strings of at most 200 characters, and lat/lon numbers"
                )))
            }
        }
    }
    if a.lat.is_some() != a.lon.is_some() {
        return Err(bad("give both lat and lon, or neither".into()));
    }
    Ok(a)
}

pub fn order_view(o: &Order) -> Value {
    if let Some(g) = o.goods.as_deref() {
        return goods_view(o, g);
    }
    json!({
        "type": "tickets",
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

pub(super) async fn place(
    state: &AppState,
    caller: Caller,
    keyed: Option<Keyed>,
    body: &[u8],
) -> ApiResult {
    let req: NewOrder = parse_json(body)?;
    let shipping = req
        .shipping_address
        .as_ref()
        .map(parse_address)
        .transpose()?;
    let method = state
        .provider
        .tokenize(&req.payment.card_number)
        .map_err(|e| ApiError::bad_request("invalid_card", e.to_string()))?;
    let order_id = match keyed {
        Some(k) => k.derived_id("ord_"),
        None => format!("ord_{}", uuid::Uuid::now_v7().simple()),
    };
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = match (req.hold_id, req.checkout_id) {
        (Some(hold_id), None) => PaymentCommand::PlaceOrder {
            command_id: command_id.clone(),
            order_id: order_id.clone(),
            user_id: caller.user_id.clone(),
            hold_id,
            method,
        },
        (None, Some(checkout_id)) => PaymentCommand::PlaceGoodsOrder {
            command_id: command_id.clone(),
            order_id: order_id.clone(),
            user_id: caller.user_id.clone(),
            checkout_id,
            method,
            shipping,
        },
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of hold_id and checkout_id",
            ))
        }
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
    match load_order(&*state.ports.store, id).await? {
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
    let mut cursor = decode_cursor(q)?;
    let mut orders = Vec::new();
    let mut next_cursor = None;
    'pages: loop {
        let (entries, next) = history_page(
            &*state.ports.store,
            &caller.user_id,
            cursor.as_deref(),
            to,
            limit,
        )
        .await?;
        for entry in entries {
            if from.is_some_and(|f| entry.created_ms < f) {
                break 'pages; // newest first: everything further is older still
            }
            if let Some(o) = load_order(&*state.ports.store, &entry.order_id).await? {
                orders.push(order_view(&o.value));
            }
            if orders.len() == limit {
                next_cursor = Some(encode_cursor(&entry.cursor));
                break 'pages;
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Ok(ApiReply::ok(
        json!({"orders": orders, "next_cursor": next_cursor}),
    ))
}
