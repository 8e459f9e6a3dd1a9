//! After a product order is placed: cancellation before shipment and returns after delivery,
//! decided by the payments worker (which owns the refunds) like the rest of the order.
//!
//! Each records its decision on the order first (compare-and-set), then moves the stock with
//! once-only changes and asks the provider for the refunds the order records as requested, so
//! a replay redoes only what had not been done.

use mercato_core::clock::now_ms;
use mercato_core::domain::commands::{Outcome, WarehouseMessage};
use mercato_core::domain::commerce::{
    warehouse_topic, Refund, RefundState, Return, ShipmentStatus,
};
use mercato_core::domain::orders::OrderStatus;
use mercato_core::domain::purchase::Finish;
use mercato_core::repo::orders::{self, update_order};
use mercato_core::repo::stock::change_stock;
use mercato_core::repo::RepoResult;

use crate::goods::{return_amount, GoodsOrders};
use crate::runtime::Emit;
use mercato_core::domain::refusal::Refusal;

impl GoodsOrders {
    /// Cancels before shipment: stock goes back where it was (the reservation released, the
    /// sale undone, or the units back on the shelves they were allocated from), and a paid
    /// order is refunded in full. A replay redoes only what had not been done.
    pub async fn cancel(&self, order_id: &str, user_id: &str) -> RepoResult<(Outcome, Vec<Emit>)> {
        let decided = update_order(&*self.store, order_id, |o| {
            if o.user_id != user_id || o.goods.is_none() {
                return Err(Refusal::OrderNotFound);
            }
            let paid = match o.status {
                OrderStatus::Cancelled | OrderStatus::Refunded => return Ok(false),
                OrderStatus::PendingPayment => false,
                OrderStatus::Paid | OrderStatus::Allocated => true,
                OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Returned => {
                    return Err(Refusal::AlreadyShipped { partly: false })
                }
                OrderStatus::PaymentFailed | OrderStatus::Expired => {
                    return Err(Refusal::NotCancellable)
                }
            };
            let (payment_id, total) = (o.payment_id.clone(), o.total.clone());
            let Some(g) = o.goods.as_deref_mut() else {
                return Ok(false);
            };
            if g.shipments.iter().any(|s| {
                matches!(
                    s.status,
                    ShipmentStatus::Shipped | ShipmentStatus::Delivered
                )
            }) {
                return Err(Refusal::AlreadyShipped { partly: true });
            }
            let now = now_ms();
            for s in &mut g.shipments {
                s.status = ShipmentStatus::Cancelled;
                s.updated_ms = now;
            }
            // A pending charge is refunded when (if) it succeeds; see `settle`.
            if let (true, Some(payment_id)) = (paid, payment_id) {
                g.refunds.push(Refund {
                    id: payment_id,
                    amount: total,
                    reason: "cancelled".into(),
                    state: RefundState::Requested,
                    created_ms: now,
                });
            }
            o.status = OrderStatus::Cancelled;
            Ok(true)
        })
        .await?;
        let order = match decided {
            None => return Ok((Outcome::Refused(Refusal::OrderNotFound), Vec::new())),
            Some(Err(r)) => return Ok((r.into(), Vec::new())),
            Some(Ok(o)) => o,
        };
        let Some(g) = order.goods.as_deref() else {
            return Ok((Outcome::OrderUpdated(order), Vec::new()));
        };
        for line in &g.lines {
            let from: Vec<(String, u64)> = g
                .shipments
                .iter()
                .flat_map(|s| {
                    s.items
                        .iter()
                        .filter(|(sku, _)| *sku == line.sku)
                        .map(|(_, q)| (s.warehouse.clone(), *q))
                })
                .collect();
            let op = format!("cancel/{order_id}");
            change_stock(&*self.store, &line.sku, Some(&op), |level, now| {
                if level.unsell(&order.id) {
                    return (true, ()); // sold, not yet allocated
                }
                if level.release(&g.checkout_id, now) {
                    return (true, ()); // still a reservation: the payment was pending
                }
                for (warehouse, q) in &from {
                    level.restock(warehouse, *q, false);
                }
                (!from.is_empty(), ())
            })
            .await?;
        }
        self.finish_checkout(&g.checkout_id, order_id, Finish::Cancelled)
            .await?;
        if !g.shortfall.is_empty() {
            // It was waiting for stock; admins need not look at it any more.
            orders::unflag(&*self.store, order_id).await?;
        }
        self.request_refunds(&order).await?;
        let emits = g
            .shipments
            .iter()
            .map(|s| {
                Emit::to(
                    warehouse_topic(&s.warehouse),
                    order_id.to_owned(),
                    &WarehouseMessage::Cancel {
                        order_id: order_id.to_owned(),
                        shipment_id: s.id.clone(),
                    },
                )
            })
            .collect();
        Ok((Outcome::OrderUpdated(order), emits))
    }

    /// Takes delivered items back: each unit to the warehouse it came from, refunded at the
    /// price paid. The return's id makes a replay (or a retried request) a no-op.
    pub async fn take_return(
        &self,
        order_id: &str,
        user_id: &str,
        return_id: &str,
        items: &[(String, u64)],
        reason: &str,
    ) -> RepoResult<Outcome> {
        let decided = update_order(&*self.store, order_id, |o| {
            if o.user_id != user_id || o.goods.is_none() {
                return Err(Refusal::OrderNotFound);
            }
            let currency = o.total.currency.clone();
            let status = o.status;
            let Some(g) = o.goods.as_deref_mut() else {
                return Ok(false);
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
            // Each SKU once: two lines of one SKU would each be checked against what is left
            // before the other and refund it twice. The gateway merges them; a command from
            // anywhere else is refused.
            let mut skus = std::collections::HashSet::new();
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
            let now = now_ms();
            g.refunds.push(Refund {
                id: return_id.to_owned(),
                amount,
                reason: format!("return: {reason}"),
                state: RefundState::Requested,
                created_ms: now,
            });
            g.returns.push(Return {
                id: return_id.to_owned(),
                items: placed,
                reason: reason.to_owned(),
                refund_id: return_id.to_owned(),
                created_ms: now,
            });
            if g.all_returned() {
                o.status = OrderStatus::Returned;
            }
            Ok(true)
        })
        .await?;
        let order = match decided {
            None => return Ok(Outcome::Refused(Refusal::OrderNotFound)),
            Some(Err(r)) => return Ok(r.into()),
            Some(Ok(o)) => o,
        };
        if let Some(ret) = order
            .goods
            .as_deref()
            .and_then(|g| g.returns.iter().find(|r| r.id == return_id))
        {
            for (sku, quantity, warehouse) in &ret.items {
                let op = format!("return/{return_id}/{warehouse}");
                change_stock(&*self.store, sku, Some(&op), |level, _| {
                    level.restock(warehouse, *quantity, true);
                    (true, ())
                })
                .await?;
            }
        }
        self.request_refunds(&order).await?;
        Ok(Outcome::OrderUpdated(order))
    }
}
