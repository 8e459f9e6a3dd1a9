//! After a product order is placed: cancellation before shipment and returns after delivery,
//! as pure changes of the order's row. The payments worker writes the row, then moves the
//! stock and asks the provider for the refunds the order records as requested.

use std::collections::HashSet;

use super::settle::{may_refund, owe_refund, refundable};
use super::{Order, OrderStatus};
use crate::domain::commerce::{Goods, Return, ShipmentStatus};
use crate::domain::refusal::Refusal;
use crate::domain::Money;

/// Cancels `user_id`'s product order before anything ships: its shipments are cancelled, and
/// a paid order is owed its whole charge back (a pending charge is refunded when, if, it
/// succeeds). Ok(false) when it is cancelled already.
pub fn cancel(order: &mut Order, user_id: &str, now_ms: u64) -> Result<bool, Refusal> {
    if order.user_id != user_id || order.goods.is_none() {
        return Err(Refusal::OrderNotFound);
    }
    let paid = match order.status {
        OrderStatus::Cancelled | OrderStatus::Refunded => return Ok(false),
        OrderStatus::PendingPayment => false,
        OrderStatus::Paid | OrderStatus::Allocated => true,
        OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Returned => {
            return Err(Refusal::AlreadyShipped { partly: false })
        }
        OrderStatus::PaymentFailed | OrderStatus::Expired => return Err(Refusal::NotCancellable),
    };
    if paid {
        // Checked before anything changes: a cancellation refunds the whole charge.
        may_refund(order, &order.total)?;
    }
    let Some(g) = order.goods.as_deref_mut() else {
        return Err(Refusal::OrderNotFound);
    };
    if g.shipments.iter().any(|s| {
        matches!(
            s.status,
            ShipmentStatus::Shipped | ShipmentStatus::Delivered
        )
    }) {
        return Err(Refusal::AlreadyShipped { partly: true });
    }
    for s in &mut g.shipments {
        s.status = ShipmentStatus::Cancelled;
        s.updated_ms = now_ms;
    }
    if let (true, Some(payment_id)) = (paid, order.payment_id.clone()) {
        let total = order.total.clone();
        owe_refund(order, &payment_id, &total, "cancelled", now_ms)?;
    }
    order.status = OrderStatus::Cancelled;
    Ok(true)
}

/// Where a cancelled order's units of `sku` go back to: each shipment's warehouse and count.
/// Empty when nothing was allocated (the units are still a reservation or a sale).
pub fn allocated_units(g: &Goods, sku: &str) -> Vec<(String, u64)> {
    g.shipments
        .iter()
        .flat_map(|s| {
            s.items
                .iter()
                .filter(|(item, _)| item == sku)
                .map(|(_, q)| (s.warehouse.clone(), *q))
        })
        .collect()
}

/// Takes delivered `items` (SKU, quantity; each SKU once) of `user_id`'s order back as return
/// `return_id`: each unit to the warehouse it came from, refunded at the price paid. Ok(false)
/// when that return was taken before (a replay or a retried request).
pub fn take_return(
    order: &mut Order,
    user_id: &str,
    return_id: &str,
    items: &[(String, u64)],
    reason: &str,
    now_ms: u64,
) -> Result<bool, Refusal> {
    if order.user_id != user_id || order.goods.is_none() {
        return Err(Refusal::OrderNotFound);
    }
    let currency = order.total.currency.clone();
    let status = order.status;
    let refundable = refundable(order);
    let Some(g) = order.goods.as_deref_mut() else {
        return Err(Refusal::OrderNotFound);
    };
    if g.returns.iter().any(|r| r.id == return_id) {
        return Ok(false);
    }
    if !matches!(status, OrderStatus::Delivered | OrderStatus::Shipped)
        || !g
            .shipments
            .iter()
            .any(|s| s.status == ShipmentStatus::Delivered)
    {
        return Err(Refusal::NotDelivered);
    }
    // Each SKU once: two lines of one SKU would each be checked against what is left before
    // the other and refund it twice. The gateway merges them; a command from anywhere else
    // is refused.
    let mut skus = HashSet::new();
    if let Some((sku, _)) = items.iter().find(|(sku, _)| !skus.insert(sku.as_str())) {
        return Err(Refusal::ReturnListsSkuTwice { sku: sku.clone() });
    }
    let mut placed = Vec::new();
    for (sku, quantity) in items {
        let left = g.returnable(sku);
        let total: u64 = left.values().sum();
        if *quantity == 0 || *quantity > total {
            return Err(Refusal::ReturnExceedsDelivered {
                sku: sku.clone(),
                asked: *quantity,
                returnable: total,
            });
        }
        let mut need = *quantity;
        for (warehouse, q) in left {
            let take = q.min(need);
            if take > 0 {
                placed.push((sku.clone(), take, warehouse));
                need -= take;
            }
        }
    }
    let amount = return_amount(g, items, &currency);
    if amount.amount > refundable {
        return Err(Refusal::RefundExceedsCharge {
            asked: amount.amount,
            refundable,
            currency,
        });
    }
    g.returns.push(Return {
        id: return_id.to_owned(),
        items: placed,
        reason: reason.to_owned(),
        refund_id: return_id.to_owned(),
        created_ms: now_ms,
    });
    if g.all_returned() {
        order.status = OrderStatus::Returned;
    }
    owe_refund(
        order,
        return_id,
        &amount,
        &format!("return: {reason}"),
        now_ms,
    )?;
    Ok(true)
}

/// What a return refunds: each item at the price paid.
pub fn return_amount(g: &Goods, items: &[(String, u64)], currency: &str) -> Money {
    Money {
        amount: items
            .iter()
            .map(|(sku, q)| g.unit_price(sku).map_or(0, |p| p.amount * *q as i64))
            .sum(),
        currency: currency.to_owned(),
    }
}
