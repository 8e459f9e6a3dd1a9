//! `/cart` and `/checkouts`: the shopper's cart (one per user, in the store, so every device
//! sees the same), and checkouts that reserve its lines for a while, decided by the checkout
//! worker.

use mercato_core::clock::{now_ms, to_rfc3339};
use mercato_core::codec::encode;
use mercato_core::domain::catalog::{is_sku, Product};
use mercato_core::domain::commands::{CheckoutCommand, Outcome};
use mercato_core::domain::commerce::{
    total, CartLine, Checkout, CheckoutState, GoodsLine, MAX_CART_LINES, MAX_LINE_QUANTITY,
};
use mercato_core::names::topics;
use mercato_core::repo::stock::load_stock;
use mercato_core::repo::{carts, catalog, checkouts};
use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;

use super::holds::{command, other_outcome};
use crate::auth::Caller;
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::idempotency::Keyed;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQuantity {
    quantity: u64,
}

async fn product(state: &AppState, sku: &str) -> Result<Option<Product>, ApiError> {
    Ok(catalog::load_product(&*state.ports.store, sku)
        .await?
        .map(|v| v.value))
}

/// Units a shopper can still put in a checkout.
pub async fn available(state: &AppState, sku: &str) -> Result<u64, ApiError> {
    Ok(load_stock(&*state.ports.store, sku)
        .await?
        .map_or(0, |s| s.value.available(now_ms())))
}

async fn cart_lines(state: &AppState, user_id: &str) -> Result<Vec<(String, CartLine)>, ApiError> {
    Ok(carts::lines(&*state.ports.store, user_id, MAX_CART_LINES + 1).await?)
}

/// A cart line with its product as the catalog has it now (`None`: no longer sold).
type PricedLine = (String, CartLine, Option<Product>);

async fn priced_cart(state: &AppState, user_id: &str) -> Result<Vec<PricedLine>, ApiError> {
    let lines = cart_lines(state, user_id).await?;
    let products =
        futures::future::try_join_all(lines.iter().map(|(sku, _)| product(state, sku))).await?;
    Ok(lines
        .into_iter()
        .zip(products)
        .map(|((sku, line), p)| (sku, line, p))
        .collect())
}

/// The cart priced now: products that disappeared from the catalog are shown, unpriced, so
/// the shopper knows why checkout refuses them.
fn cart_view(lines: &[PricedLine]) -> ApiResult {
    let mut items = Vec::new();
    let mut amount = 0i64;
    let mut currency: Option<String> = None;
    for (sku, line, product) in lines {
        match product {
            Some(p) => {
                amount += p.price.amount * line.quantity as i64;
                currency.get_or_insert_with(|| p.price.currency.clone());
                items.push(json!({
                    "sku": sku, "name": p.name, "quantity": line.quantity, "price": p.price,
                    "line_total": {"amount": p.price.amount * line.quantity as i64, "currency": p.price.currency},
                }));
            }
            None => items.push(
                json!({"sku": sku, "quantity": line.quantity, "price": null, "unavailable": true}),
            ),
        }
    }
    Ok(ApiReply::ok(json!({
        "items": items,
        "total": {"amount": amount, "currency": currency},
    })))
}

pub async fn get_cart(state: &AppState, auth: Option<&str>) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    cart_view(&priced_cart(state, &caller.user_id).await?)
}

pub async fn set_item(state: &AppState, auth: Option<&str>, sku: &str, body: &[u8]) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let req: SetQuantity = parse_json(body)?;
    if !is_sku(sku) {
        return Err(ApiError::not_found(
            "product_not_found",
            format!("no product {sku:?}"),
        ));
    }
    if req.quantity > MAX_LINE_QUANTITY {
        return Err(ApiError::bad_request(
            "invalid_quantity",
            format!("a cart line holds at most {MAX_LINE_QUANTITY} units"),
        ));
    }
    let store = &*state.ports.store;
    if req.quantity == 0 {
        carts::remove_line(store, &caller.user_id, sku).await?;
        return cart_view(&priced_cart(state, &caller.user_id).await?);
    }
    let (mut lines, p, available) = tokio::try_join!(
        priced_cart(state, &caller.user_id),
        product(state, sku),
        available(state, sku),
    )?;
    let p =
        p.ok_or_else(|| ApiError::not_found("product_not_found", format!("no product {sku:?}")))?;
    let others = lines.iter().filter(|(s, _, _)| s != sku).count();
    if others >= MAX_CART_LINES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cart_full",
            format!("a cart holds at most {MAX_CART_LINES} products"),
        ));
    }
    if let Some(other) = lines
        .iter()
        .filter(|(s, _, _)| s != sku)
        .find_map(|(_, _, o)| o.as_ref())
    {
        if other.price.currency != p.price.currency {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "currency_mismatch",
                format!(
                    "the cart is in {}; {sku} is priced in {}",
                    other.price.currency, p.price.currency
                ),
            ));
        }
    }
    if req.quantity > available {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!("{available} of {sku} available, {} asked for", req.quantity),
        )
        .with_details(json!({"sku": sku, "requested": req.quantity, "available": available})));
    }
    let line = CartLine {
        quantity: req.quantity,
        added_ms: now_ms(),
    };
    carts::set_line(store, &caller.user_id, sku, &line).await?;
    match lines.iter_mut().find(|(s, _, _)| s == sku) {
        Some(existing) => existing.1 = line,
        None => {
            let at = lines.partition_point(|(s, _, _)| s.as_str() < sku);
            lines.insert(at, (sku.to_owned(), line, Some(p)));
        }
    }
    cart_view(&lines)
}

pub fn checkout_view(c: &Checkout) -> Value {
    json!({
        "id": c.id,
        "status": c.status(now_ms()),
        "items": c.lines.iter().map(|l| json!({
            "sku": l.sku, "name": l.name, "quantity": l.quantity, "price": l.unit_price,
        })).collect::<Vec<_>>(),
        "total": c.total,
        "created_at": to_rfc3339(c.created_ms),
        "expires_at": to_rfc3339(c.expires_at_ms),
        "order_id": match &c.state {
            CheckoutState::Purchasing { order_id } | CheckoutState::Purchased { order_id } => Some(order_id),
            _ => None,
        },
    })
}

/// Makes a checkout of the caller's cart.
pub(super) async fn create_checkout(
    state: &AppState,
    caller: Caller,
    keyed: Option<Keyed>,
    body: &[u8],
) -> ApiResult {
    // The checkout is made from the cart; a body, if any, must be an empty object.
    if !body.iter().all(u8::is_ascii_whitespace) {
        let _: serde_json::Map<String, Value> =
            parse_json(body).and_then(|m: serde_json::Map<String, Value>| {
                if m.is_empty() {
                    Ok(m)
                } else {
                    Err(ApiError::bad_request(
                        "invalid_request",
                        "a checkout is made from the cart; send no body or {}",
                    ))
                }
            })?;
    }
    let cart = priced_cart(state, &caller.user_id).await?;
    if cart.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cart_empty",
            "the cart is empty",
        ));
    }
    let mut lines = Vec::with_capacity(cart.len());
    let mut gone = Vec::new();
    for (sku, line, product) in cart {
        match product {
            Some(p) => lines.push(GoodsLine {
                sku,
                name: p.name,
                quantity: line.quantity,
                unit_price: p.price,
            }),
            None => gone.push(sku),
        }
    }
    if !gone.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "product_unavailable",
            "some products in the cart are no longer sold; remove them first",
        )
        .with_details(json!({"skus": gone})));
    }
    let currency = lines
        .first()
        .map(|l| l.unit_price.currency.clone())
        .unwrap_or_default();
    let now = now_ms();
    let id = match keyed {
        Some(k) => k.derived_id("chk_"),
        None => format!("chk_{}", uuid::Uuid::now_v7().simple()),
    };
    let checkout = Checkout {
        id,
        user_id: caller.user_id.clone(),
        total: total(&lines, &currency),
        lines,
        created_ms: now,
        expires_at_ms: now + state.config.checkout_ttl.as_millis() as u64,
        state: CheckoutState::Active,
    };
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = CheckoutCommand::Reserve {
        command_id: command_id.clone(),
        checkout,
    };
    match command(
        state,
        topics::CHECKOUTS,
        &caller.user_id,
        &command_id,
        encode(&cmd),
    )
    .await?
    {
        Outcome::CheckoutPlaced(c) => Ok(ApiReply::created(checkout_view(&c))),
        Outcome::InsufficientStock { short } => {
            let skus: Vec<&str> = short.iter().map(|(s, _)| s.as_str()).collect();
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_stock",
                format!("not enough stock of {}", skus.join(", ")),
            )
            .with_details(json!({
                "short": short.iter().map(|(sku, available)| json!({"sku": sku, "available": available})).collect::<Vec<_>>(),
            })))
        }
        other => Err(other_outcome(other)),
    }
}

async fn owned_checkout(state: &AppState, caller: &Caller, id: &str) -> Result<Checkout, ApiError> {
    match checkouts::load(&*state.ports.store, id).await? {
        Some(c) if caller.can_see(&c.value.user_id) => Ok(c.value),
        _ => Err(ApiError::not_found(
            "checkout_not_found",
            format!("no checkout {id:?}"),
        )),
    }
}

pub async fn get_checkout(state: &AppState, auth: Option<&str>, id: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    Ok(ApiReply::ok(checkout_view(
        &owned_checkout(state, &caller, id).await?,
    )))
}

pub async fn delete_checkout(state: &AppState, auth: Option<&str>, id: &str) -> ApiResult {
    let caller = state.keys.caller(auth)?;
    let checkout = owned_checkout(state, &caller, id).await?;
    let command_id = format!("cmd_{}", uuid::Uuid::new_v4().simple());
    let cmd = CheckoutCommand::Release {
        command_id: command_id.clone(),
        checkout_id: checkout.id.clone(),
        user_id: checkout.user_id.clone(),
    };
    match command(
        state,
        topics::CHECKOUTS,
        &checkout.user_id,
        &command_id,
        encode(&cmd),
    )
    .await?
    {
        Outcome::CheckoutReleased => Ok(ApiReply::no_content()),
        other => Err(other_outcome(other)),
    }
}
