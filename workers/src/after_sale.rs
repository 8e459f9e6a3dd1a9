//! After a product order is placed: cancellation before shipment, returns after delivery and
//! shipments leaving and arriving, decided by the payments worker (which owns the order and
//! its refunds) like the rest of the order. The decisions are core's
//! [`mercato_core::domain::orders`] plans.
//!
//! Each records its decision on the order first (compare-and-set), then moves the stock with
//! once-only changes and asks the provider for the refunds the order records as requested, so
//! a replay redoes only what had not been done.

use mercato_core::clock::now_ms;
use mercato_core::domain::commands::{Outcome, WarehouseMessage};
use mercato_core::domain::commerce::{order_of_shipment, warehouse_topic, ShipmentStatus};
use mercato_core::domain::orders::{after_sale, shipping};
use mercato_core::domain::purchase::Finish;
use mercato_core::domain::refusal::Refusal;
use mercato_core::repo::orders::{self, update_order};
use mercato_core::repo::stock::change_stock;
use mercato_core::repo::RepoResult;

use crate::goods::GoodsOrders;
use crate::runtime::Emit;

impl GoodsOrders {
    /// Cancels before shipment: stock goes back where it was (the reservation released, the
    /// sale undone, or the units back on the shelves they were allocated from), and a paid
    /// order is refunded in full. A replay redoes only what had not been done.
    pub async fn cancel(&self, order_id: &str, user_id: &str) -> RepoResult<(Outcome, Vec<Emit>)> {
        let decided = update_order(&*self.store, order_id, |o| {
            after_sale::cancel(o, user_id, now_ms())
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
            let from = after_sale::allocated_units(g, &line.sku);
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
            after_sale::take_return(o, user_id, return_id, items, reason, now_ms())
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

    /// A shipment leaves its warehouse (with its tracking number) or arrives; shipping takes
    /// its units off the warehouse's shelves, once per shipment, so a retried request or a
    /// replay after a crash redoes only that.
    pub async fn advance_shipment(
        &self,
        warehouse: &str,
        shipment_id: &str,
        to: ShipmentStatus,
        tracking_number: Option<&str>,
    ) -> RepoResult<Outcome> {
        let not_found = || {
            Outcome::Refused(Refusal::ShipmentNotFound {
                shipment: shipment_id.to_owned(),
                warehouse: warehouse.to_owned(),
            })
        };
        let Some(order_id) = order_of_shipment(shipment_id) else {
            return Ok(not_found());
        };
        let decided = update_order(&*self.store, order_id, |o| {
            shipping::advance(o, warehouse, shipment_id, to, tracking_number, now_ms())
        })
        .await?;
        let order = match decided {
            None => return Ok(not_found()),
            Some(Err(r)) => return Ok(r.into()),
            Some(Ok(o)) => o,
        };
        if to == ShipmentStatus::Shipped {
            let items = order
                .goods
                .as_deref()
                .and_then(|g| g.shipments.iter().find(|s| s.id == shipment_id))
                .map(|s| s.items.as_slice())
                .unwrap_or_default();
            let op = format!("ship/{shipment_id}");
            for (sku, q) in items {
                change_stock(&*self.store, sku, Some(&op), |level, _| {
                    level.ship(warehouse, *q);
                    (true, ())
                })
                .await?;
            }
        }
        Ok(Outcome::OrderUpdated(order))
    }
}
