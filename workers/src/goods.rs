//! Product orders, decided by the payments worker beside ticket orders (same topic, keyed by
//! order id, so everything about one order is decided in order): pay for a checkout, settle
//! the charge into sold stock, cancel before shipment, take returns after delivery.
//!
//! Each step first records its decision on the order row (compare-and-set), then makes the
//! stock changes, each once-only: a crash between the two is repaired by the replay, which
//! finds the decision already made and makes the (idempotent) stock changes again.

use std::sync::Arc;

use mercato_core::clock::now_ms;
use mercato_core::commerce::{self, change_stock, update_order};
use mercato_core::domain::commands::{AllocateOrder, Outcome, WarehouseMessage};
use mercato_core::domain::commerce::stock::Conversion;
use mercato_core::domain::commerce::{
    self as goods, warehouse_topic, Address, Checkout, CheckoutState, CheckoutStatus, Goods,
    Refund, RefundState, Return, ShipmentStatus,
};
use mercato_core::domain::orders::{user_order_key, Order, OrderStatus};
use mercato_core::domain::payments::{
    PaymentMethod, PaymentProvider, ProviderEvent, ProviderEventKind,
};
use mercato_core::domain::Money;
use mercato_core::names::{tables, topics};
use mercato_core::repo::{self, RepoResult, Versioned};
use mercato_core::store::{Store, Write};

use crate::payments::{provider_down, refused};
use crate::runtime::Emit;

pub struct GoodsOrders {
    pub store: Arc<dyn Store>,
    pub provider: Arc<dyn PaymentProvider>,
}

pub async fn load_checkout(store: &dyn Store, id: &str) -> RepoResult<Option<Versioned<Checkout>>> {
    repo::get(store, tables::CHECKOUTS, id, "").await
}

/// Compare-and-set of a checkout row; false when it changed meanwhile.
pub async fn cas_checkout(store: &dyn Store, next: &Checkout, expected: u64) -> RepoResult<bool> {
    Ok(repo::cas(
        store,
        tables::CHECKOUTS,
        &next.id,
        expected,
        next,
        Some(goods::ROW_TTL),
    )
    .await?
    .is_some())
}

/// A refusal the shopper sees, for a decision closure.
struct Refusal(u16, &'static str, String);

impl From<Refusal> for Outcome {
    fn from(r: Refusal) -> Outcome {
        refused(r.0, r.1, &r.2)
    }
}

fn goods_of(order: &mut Order) -> Option<&mut Goods> {
    order.goods.as_deref_mut()
}

impl GoodsOrders {
    pub async fn place(
        &self,
        order_id: &str,
        user_id: &str,
        checkout_id: &str,
        method: &PaymentMethod,
        shipping: Option<Address>,
    ) -> RepoResult<Outcome> {
        if let Some(order) = commerce::load_order(&*self.store, order_id).await? {
            return Ok(Outcome::OrderAccepted(order.value));
        }
        let checkout = loop {
            let Some(c) = load_checkout(&*self.store, checkout_id).await? else {
                return Ok(refused(404, "checkout_not_found", "no such checkout"));
            };
            if c.value.user_id != user_id {
                return Ok(refused(404, "checkout_not_found", "no such checkout"));
            }
            match (&c.value.state, c.value.status(now_ms())) {
                (CheckoutState::Purchasing { order_id: o }, _) if o == order_id => break c.value,
                (_, CheckoutStatus::Expired) => {
                    return Ok(refused(
                        410,
                        "checkout_expired",
                        "the checkout has expired; its stock was released",
                    ))
                }
                (_, CheckoutStatus::Cancelled) => {
                    return Ok(refused(
                        409,
                        "checkout_cancelled",
                        "the checkout was cancelled",
                    ))
                }
                (_, CheckoutStatus::Purchased) => {
                    return Ok(refused(
                        409,
                        "checkout_purchased",
                        "the checkout was already paid for",
                    ))
                }
                (_, CheckoutStatus::Purchasing) => {
                    return Ok(refused(
                        409,
                        "checkout_being_purchased",
                        "another order is paying for this checkout",
                    ))
                }
                (_, CheckoutStatus::Active) => {
                    let mut next = c.value.clone();
                    next.state = CheckoutState::Purchasing {
                        order_id: order_id.to_owned(),
                    };
                    if cas_checkout(&*self.store, &next, c.version).await? {
                        break next;
                    }
                }
            }
        };
        let payment_id = self
            .provider
            .charge(order_id, order_id, &checkout.total, method)
            .await
            .map_err(provider_down)?;
        let now = now_ms();
        let order = Order {
            id: order_id.to_owned(),
            user_id: user_id.to_owned(),
            event_id: String::new(),
            hold_id: String::new(),
            items: Vec::new(),
            total: checkout.total.clone(),
            status: OrderStatus::PendingPayment,
            payment_id: Some(payment_id),
            failure: None,
            refund: None,
            tickets: Vec::new(),
            created_ms: now,
            updated_ms: now,
            goods: Some(Box::new(Goods {
                checkout_id: checkout.id.clone(),
                lines: checkout.lines.clone(),
                shipping,
                ..Goods::default()
            })),
        };
        repo::put(&*self.store, tables::ORDERS, order_id, "", &order, None).await?;
        self.store
            .put(
                tables::USER_ORDERS,
                user_id,
                &user_order_key(order.created_ms, order_id),
                order_id.as_bytes().to_vec(),
                None,
            )
            .await?;
        // What was bought leaves the cart (one partition: one batch).
        let bought = checkout
            .lines
            .iter()
            .map(|l| Write::Delete {
                clustering: l.sku.clone(),
            })
            .collect();
        self.store.batch(tables::CARTS, user_id, bought).await?;
        Ok(Outcome::OrderAccepted(order))
    }

    /// A provider event about a product order.
    pub async fn settle(&self, order: &Order, event: &ProviderEvent) -> RepoResult<Vec<Emit>> {
        let Some(g) = order.goods.as_deref() else {
            return Ok(Vec::new());
        };
        match event.kind {
            ProviderEventKind::ChargeSucceeded if order.status == OrderStatus::PendingPayment => {
                self.charge_succeeded(order, g, event).await
            }
            // A replay after the order was marked paid: the allocation request may not have
            // gone out before the crash (the allocator ignores a second one).
            ProviderEventKind::ChargeSucceeded if order.status == OrderStatus::Paid => {
                self.mark_purchased(&g.checkout_id, &order.id).await?;
                Ok(vec![allocate(&order.id)])
            }
            ProviderEventKind::ChargeSucceeded if order.status == OrderStatus::Cancelled => {
                // Cancelled while the charge was under way: give the money back.
                self.refund_whole(&order.id, event, "cancelled before the payment completed")
                    .await?;
                Ok(Vec::new())
            }
            ProviderEventKind::ChargeFailed if order.status == OrderStatus::PendingPayment => {
                update_order(&*self.store, &order.id, |o| {
                    if o.status != OrderStatus::PendingPayment {
                        return Ok::<bool, ()>(false);
                    }
                    o.status = OrderStatus::PaymentFailed;
                    o.failure = event.reason.clone().or(Some("declined".into()));
                    Ok(true)
                })
                .await?;
                self.reopen_checkout(&g.checkout_id, &order.id).await?;
                Ok(Vec::new())
            }
            ProviderEventKind::RefundSucceeded => {
                let refund_id = event
                    .refund_id
                    .clone()
                    .unwrap_or_else(|| event.payment_id.clone());
                update_order(&*self.store, &order.id, |o| {
                    let status = o.status;
                    let Some(g) = goods_of(o) else {
                        return Ok::<bool, ()>(false);
                    };
                    let Some(r) = g.refunds.iter_mut().find(|r| r.id == refund_id) else {
                        return Ok(false);
                    };
                    if r.state == RefundState::Refunded {
                        return Ok(false); // a redelivered webhook: recorded once
                    }
                    r.state = RefundState::Refunded;
                    let all_refunded = g.refunds.iter().all(|r| r.state == RefundState::Refunded);
                    let whole = status == OrderStatus::Cancelled
                        || (status == OrderStatus::Returned && g.all_returned());
                    if all_refunded && whole {
                        o.status = OrderStatus::Refunded;
                    }
                    Ok(true)
                })
                .await?;
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn charge_succeeded(
        &self,
        order: &Order,
        g: &Goods,
        event: &ProviderEvent,
    ) -> RepoResult<Vec<Emit>> {
        let mut lapsed = false;
        for line in &g.lines {
            let change = change_stock(&*self.store, &line.sku, None, |level, now| {
                let c = level.convert(&g.checkout_id, &order.id, now);
                (c == Conversion::Converted, c)
            })
            .await?;
            if change.value == Conversion::Lapsed {
                lapsed = true;
                break;
            }
        }
        if lapsed {
            // Undo what was converted and let go of what is still reserved.
            for line in &g.lines {
                change_stock(&*self.store, &line.sku, None, |level, now| {
                    let unsold = level.unsell(&order.id);
                    let released = level.release(&g.checkout_id, now);
                    (unsold || released, ())
                })
                .await?;
            }
            update_order(&*self.store, &order.id, |o| {
                if o.status != OrderStatus::PendingPayment {
                    return Ok::<bool, ()>(false);
                }
                o.status = OrderStatus::Expired;
                o.failure = Some("the checkout lapsed before the payment completed".into());
                Ok(true)
            })
            .await?;
            self.refund_whole(&order.id, event, "checkout lapsed")
                .await?;
            return Ok(Vec::new());
        }
        update_order(&*self.store, &order.id, |o| {
            if o.status != OrderStatus::PendingPayment {
                return Ok::<bool, ()>(false);
            }
            o.status = OrderStatus::Paid;
            Ok(true)
        })
        .await?;
        self.mark_purchased(&g.checkout_id, &order.id).await?;
        Ok(vec![allocate(&order.id)])
    }

    async fn mark_purchased(&self, checkout_id: &str, order_id: &str) -> RepoResult<()> {
        if let Some(c) = load_checkout(&*self.store, checkout_id).await? {
            if matches!(&c.value.state, CheckoutState::Purchasing { order_id: o } if o == order_id)
            {
                let mut next = c.value.clone();
                next.state = CheckoutState::Purchased {
                    order_id: order_id.to_owned(),
                };
                cas_checkout(&*self.store, &next, c.version).await?;
            }
        }
        Ok(())
    }

    /// Records a whole-order refund (once) and asks the provider for it.
    async fn refund_whole(
        &self,
        order_id: &str,
        event: &ProviderEvent,
        reason: &str,
    ) -> RepoResult<()> {
        let refund_id = event.payment_id.clone();
        update_order(&*self.store, order_id, |o| {
            let Some(g) = goods_of(o) else {
                return Ok::<bool, ()>(false);
            };
            if g.refunds.iter().any(|r| r.id == refund_id) {
                return Ok(false);
            }
            g.refunds.push(Refund {
                id: refund_id.clone(),
                amount: event.amount.clone(),
                reason: reason.to_owned(),
                state: RefundState::Requested,
                created_ms: now_ms(),
            });
            Ok(true)
        })
        .await?;
        self.provider
            .refund(&refund_id, order_id, &event.payment_id, &event.amount)
            .await
            .map_err(provider_down)
    }

    async fn reopen_checkout(&self, checkout_id: &str, order_id: &str) -> RepoResult<()> {
        if let Some(c) = load_checkout(&*self.store, checkout_id).await? {
            if matches!(&c.value.state, CheckoutState::Purchasing { order_id: o } if o == order_id)
            {
                let mut next = c.value.clone();
                next.state = CheckoutState::Active;
                cas_checkout(&*self.store, &next, c.version).await?;
            }
        }
        Ok(())
    }

    /// Cancels before shipment: stock goes back where it was (the reservation released, the
    /// sale undone, or the units back on the shelves they were allocated from), and a paid
    /// order is refunded in full. A replay redoes only what had not been done.
    pub async fn cancel(&self, order_id: &str, user_id: &str) -> RepoResult<(Outcome, Vec<Emit>)> {
        let decided = update_order(&*self.store, order_id, |o| {
            if o.user_id != user_id || o.goods.is_none() {
                return Err(Refusal(
                    404,
                    "order_not_found",
                    format!("no product order {order_id:?}"),
                ));
            }
            let paid = match o.status {
                OrderStatus::Cancelled | OrderStatus::Refunded => return Ok(false),
                OrderStatus::PendingPayment => false,
                OrderStatus::Paid | OrderStatus::Allocated => true,
                OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Returned => {
                    return Err(Refusal(
                        409,
                        "already_shipped",
                        "the order has shipped; return it after delivery instead".into(),
                    ))
                }
                OrderStatus::PaymentFailed | OrderStatus::Expired => {
                    return Err(Refusal(
                        409,
                        "not_cancellable",
                        "the order was never paid; there is nothing to cancel".into(),
                    ))
                }
            };
            let (payment_id, total) = (o.payment_id.clone(), o.total.clone());
            let Some(g) = goods_of(o) else {
                return Ok(false);
            };
            if g.shipments.iter().any(|s| {
                matches!(
                    s.status,
                    ShipmentStatus::Shipped | ShipmentStatus::Delivered
                )
            }) {
                return Err(Refusal(
                    409,
                    "already_shipped",
                    "part of the order has shipped; return it after delivery instead".into(),
                ));
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
            None => return Ok((refused(404, "order_not_found", "no such order"), Vec::new())),
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
        self.close_checkout(&g.checkout_id, order_id).await?;
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

    /// Asks the provider for every refund the order records as requested (idempotent per id).
    async fn request_refunds(&self, order: &Order) -> RepoResult<()> {
        let (Some(g), Some(payment_id)) = (order.goods.as_deref(), &order.payment_id) else {
            return Ok(());
        };
        for r in g
            .refunds
            .iter()
            .filter(|r| r.state == RefundState::Requested)
        {
            self.provider
                .refund(&r.id, &order.id, payment_id, &r.amount)
                .await
                .map_err(provider_down)?;
        }
        Ok(())
    }

    async fn close_checkout(&self, checkout_id: &str, order_id: &str) -> RepoResult<()> {
        if let Some(c) = load_checkout(&*self.store, checkout_id).await? {
            if matches!(&c.value.state, CheckoutState::Purchasing { order_id: o } | CheckoutState::Purchased { order_id: o } if o == order_id)
            {
                let mut next = c.value.clone();
                next.state = CheckoutState::Cancelled;
                cas_checkout(&*self.store, &next, c.version).await?;
            }
        }
        Ok(())
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
                return Err(Refusal(404, "order_not_found", format!("no product order {order_id:?}")));
            }
            let currency = o.total.currency.clone();
            let status = o.status;
            let Some(g) = goods_of(o) else { return Ok(false) };
            if g.returns.iter().any(|r| r.id == return_id) {
                return Ok(false);
            }
            if !matches!(status, OrderStatus::Delivered | OrderStatus::Shipped) || !g.shipments.iter().any(|s| s.status == ShipmentStatus::Delivered) {
                return Err(Refusal(409, "not_delivered", "items can be returned once they are delivered".into()));
            }
            let mut placed = Vec::new();
            for (sku, quantity) in items {
                let left = g.returnable(sku);
                let total: u64 = left.values().sum();
                if *quantity == 0 || *quantity > total {
                    return Err(Refusal(
                        422,
                        "invalid_return",
                        format!("{sku}: {quantity} to return, but {total} delivered and not yet returned"),
                    ));
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
            None => return Ok(refused(404, "order_not_found", "no such order")),
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

fn allocate(order_id: &str) -> Emit {
    Emit::new(
        topics::ALLOCATIONS,
        order_id.to_owned(),
        &AllocateOrder {
            order_id: order_id.to_owned(),
        },
    )
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
