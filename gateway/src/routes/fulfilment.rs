//! After payment: cancellations, returns, and warehouse staff shipping and delivering
//! shipments (all decided by the payments worker, which owns the order and its refunds),
//! sellers' low-stock alerts, and the admins' view of orders no warehouse could supply.

use mercato_core::clock::to_rfc3339;
use mercato_core::codec::encode;
use mercato_core::domain::catalog::is_sku;
use mercato_core::domain::commands::{AllocateOrder, Outcome, PaymentCommand};
use mercato_core::domain::commerce::{order_of_shipment, ShipmentStatus};
use mercato_core::domain::orders::OrderStatus;
use mercato_core::domain::refusal::Refusal;
use mercato_core::domain::users::Role;
use mercato_core::names::topics;
use mercato_core::repo::orders::{flagged_page, load_order};
use mercato_core::repo::stock::alerts_page;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;

use super::holds::{command, other_outcome};
use super::orders::order_view;
use super::{decode_cursor, encode_cursor, limit, Query};
use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::idempotency::Keyed;
use crate::state::AppState;

/// Items a return may list, and the longest reason kept.
const MAX_RETURN_ITEMS: usize = 100;
const MAX_REASON: usize = 500;

fn staff(state: &AppState, auth: Option<&str>) -> Result<Caller, ApiError> {
    let caller = state.keys.caller(auth)?;
    match caller.role {
        Role::Admin | Role::Seller => Ok(caller),
        Role::Shopper => Err(ApiError::forbidden(
            "warehouse and seller endpoints need the seller or admin role",
        )),
    }
}

pub async fn cancel(state: &AppState, caller: Caller, order_id: &str) -> ApiResult {
    let owner = owner_of(state, &caller, order_id).await?;
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = PaymentCommand::Cancel {
        command_id: command_id.clone(),
        order_id: order_id.to_owned(),
        user_id: owner,
    };
    match command(state, topics::PAYMENTS, order_id, &command_id, encode(&cmd)).await? {
        Outcome::OrderUpdated(o) => Ok(ApiReply::ok(order_view(&o))),
        other => Err(other_outcome(other)),
    }
}

/// The order's owner, if the caller may act on it (its owner, or an admin).
async fn owner_of(state: &AppState, caller: &Caller, order_id: &str) -> Result<String, ApiError> {
    match load_order(&*state.ports.store, order_id).await? {
        Some(o) if caller.can_see(&o.value.user_id) && o.value.goods.is_some() => {
            Ok(o.value.user_id)
        }
        Some(o) if caller.can_see(&o.value.user_id) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_product_order",
            "ticket orders are not cancelled or returned here",
        )),
        _ => Err(ApiError::not_found(
            "order_not_found",
            format!("no order {order_id:?}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnItem {
    sku: String,
    quantity: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReturn {
    items: Vec<ReturnItem>,
    #[serde(default)]
    reason: String,
}

pub async fn create_return(
    state: &AppState,
    caller: Caller,
    keyed: Option<Keyed>,
    order_id: &str,
    body: &[u8],
) -> ApiResult {
    let req: NewReturn = parse_json(body)?;
    if req.items.is_empty() || req.items.len() > MAX_RETURN_ITEMS {
        return Err(ApiError::bad_request(
            "invalid_return",
            format!("a return lists 1 to {MAX_RETURN_ITEMS} items"),
        ));
    }
    if let Some(bad) = req
        .items
        .iter()
        .find(|i| !is_sku(&i.sku) || i.quantity == 0)
    {
        return Err(ApiError::bad_request(
            "invalid_return",
            format!(
                "{:?}: each item needs a SKU and a quantity of at least 1",
                bad.sku
            ),
        ));
    }
    let owner = owner_of(state, &caller, order_id).await?;
    let mut items: Vec<(String, u64)> = Vec::new();
    for i in req.items {
        match items.iter_mut().find(|(s, _)| *s == i.sku) {
            Some((_, q)) => {
                *q = q.checked_add(i.quantity).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_return",
                        format!("{:?}: the quantities do not add up to a number", i.sku),
                    )
                })?
            }
            None => items.push((i.sku, i.quantity)),
        }
    }
    let return_id = match keyed {
        Some(k) => k.derived_id("ret_"),
        None => format!("ret_{}", uuid::Uuid::now_v7().simple()),
    };
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = PaymentCommand::Return {
        command_id: command_id.clone(),
        order_id: order_id.to_owned(),
        user_id: owner,
        return_id: return_id.clone(),
        items,
        reason: req.reason.chars().take(MAX_REASON).collect(),
    };
    match command(state, topics::PAYMENTS, order_id, &command_id, encode(&cmd)).await? {
        Outcome::OrderUpdated(o) => {
            let ret = o
                    .goods
                    .as_deref()
                    .and_then(|g| g.returns.iter().find(|r| r.id == return_id))
                    .map(|r| json!({
                        "id": r.id,
                        "items": r.items.iter().map(|(sku, q, w)| json!({"sku": sku, "quantity": q, "warehouse": w})).collect::<Vec<_>>(),
                        "reason": r.reason,
                        "refund_id": r.refund_id,
                        "created_at": to_rfc3339(r.created_ms),
                    }));
            Ok(ApiReply::created(
                json!({"return": ret, "order": order_view(&o)}),
            ))
        }
        other => Err(other_outcome(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipBody {
    tracking_number: String,
}

/// A shipment leaves (`ship`, with its tracking number) or arrives (`deliver`). The order's
/// status follows its shipments; shipping takes the units off the warehouse's shelves.
pub async fn advance(
    state: &AppState,
    auth: Option<&str>,
    warehouse: &str,
    shipment_id: &str,
    to: ShipmentStatus,
    body: &[u8],
) -> ApiResult {
    staff(state, auth)?;
    let tracking = if to == ShipmentStatus::Shipped {
        let b: ShipBody = parse_json(body)?;
        let t = b.tracking_number.trim().to_owned();
        if t.is_empty() || t.len() > 100 {
            return Err(ApiError::bad_request(
                "invalid_tracking_number",
                "a tracking number has 1-100 characters",
            ));
        }
        Some(t)
    } else {
        None
    };
    let order_id = order_of_shipment(shipment_id).ok_or_else(|| {
        ApiError::from(Refusal::ShipmentNotFound {
            shipment: shipment_id.to_owned(),
            warehouse: warehouse.to_owned(),
        })
    })?;
    // The payments worker owns the order: it decides the move with the order's other
    // commands, in order, and takes shipped units off the shelves.
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = PaymentCommand::AdvanceShipment {
        command_id: command_id.clone(),
        order_id: order_id.to_owned(),
        warehouse: warehouse.to_owned(),
        shipment_id: shipment_id.to_owned(),
        to,
        tracking_number: tracking,
    };
    match command(state, topics::PAYMENTS, order_id, &command_id, encode(&cmd)).await? {
        Outcome::OrderUpdated(o) => Ok(ApiReply::ok(order_view(&o))),
        other => Err(other_outcome(other)),
    }
}

pub async fn seller_alerts(
    state: &AppState,
    auth: Option<&str>,
    seller: &str,
    q: &Query,
) -> ApiResult {
    staff(state, auth)?;
    let limit = limit(q)?;
    let after = decode_cursor(q)?;
    let (alerts, next) = alerts_page(&*state.ports.store, seller, after.as_deref(), limit).await?;
    let next = next.as_deref().map(encode_cursor);
    let alerts: Vec<_> = alerts
        .iter()
        .map(|a| {
            json!({
                "sku": a.sku, "inventory": a.inventory, "available": a.available,
                "threshold": a.threshold, "at": to_rfc3339(a.at_ms),
            })
        })
        .collect();
    Ok(ApiReply::ok(
        json!({"seller": seller, "alerts": alerts, "next_cursor": next}),
    ))
}

fn admin(state: &AppState, auth: Option<&str>) -> Result<Caller, ApiError> {
    let caller = state.keys.caller(auth)?;
    if caller.role == Role::Admin {
        Ok(caller)
    } else {
        Err(ApiError::forbidden("this endpoint needs the admin role"))
    }
}

/// Paid orders no warehouse could supply in full.
pub async fn flagged_orders(state: &AppState, auth: Option<&str>, q: &Query) -> ApiResult {
    admin(state, auth)?;
    let limit = limit(q)?;
    let after = decode_cursor(q)?;
    let (ids, next) = flagged_page(&*state.ports.store, after.as_deref(), limit).await?;
    let mut orders = Vec::new();
    for id in &ids {
        // The index may run ahead of an order being flagged or lag behind one no longer
        // flagged; the order's own shortfall decides.
        if let Some(o) = load_order(&*state.ports.store, id).await? {
            if o.value
                .goods
                .as_deref()
                .is_some_and(|g| !g.shortfall.is_empty())
            {
                orders.push(order_view(&o.value));
            }
        }
    }
    let next = next.as_deref().map(encode_cursor);
    Ok(ApiReply::ok(json!({"orders": orders, "next_cursor": next})))
}

/// Asks the allocator to try a paid order again (after stock arrived).
pub async fn reallocate(state: &AppState, auth: Option<&str>, order_id: &str) -> ApiResult {
    admin(state, auth)?;
    let order = load_order(&*state.ports.store, order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order_not_found", format!("no order {order_id:?}")))?;
    if order.value.status != OrderStatus::Paid || order.value.goods.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_awaiting_allocation",
            "only paid product orders wait for allocation",
        ));
    }
    state
        .ports
        .bus
        .send(
            topics::ALLOCATIONS,
            order_id.as_bytes(),
            encode(&AllocateOrder {
                order_id: order_id.to_owned(),
            }),
        )
        .await?;
    Ok(ApiReply::accepted(
        json!({"order_id": order_id, "status": "allocation requested"}),
    ))
}
