//! Product orders, decided by the payments worker beside ticket orders (same topic, keyed by
//! order id, so everything about one order is decided in order): pay for a checkout and settle
//! the charge into sold stock. Cancellations and returns are in [`crate::after_sale`].
//!
//! Every step is safe to replay after a crash: stock changes are idempotent (a reservation per
//! checkout, a sold line per order), and the order's status moves by compare-and-set only from
//! the status the step expects; a replay that finds the status already moved redoes what may
//! not have happened after it (marking the checkout purchased, requesting the allocation).

use std::sync::Arc;

use mercato_core::clock::now_ms;
use mercato_core::repo::orders::{self, update_order};
use mercato_core::repo::stock::change_stock;
use mercato_core::repo::{carts, checkouts};

use mercato_core::domain::commands::{AllocateOrder, Outcome};
use mercato_core::domain::commerce::stock::Conversion;
use mercato_core::domain::commerce::{Address, Goods, Refund, RefundState};
use mercato_core::domain::orders::{Order, OrderStatus};
use mercato_core::domain::payments::{
    PaymentMethod, PaymentProvider, ProviderEvent, ProviderEventKind,
};
use mercato_core::domain::purchase::{self, Finish};
use mercato_core::domain::Money;
use mercato_core::names::topics;
use mercato_core::repo::RepoResult;
use mercato_core::store::Store;

use crate::payments::provider_down;
use crate::runtime::Emit;

pub struct GoodsOrders {
    pub store: Arc<dyn Store>,
    pub provider: Arc<dyn PaymentProvider>,
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
        if let Some(order) = orders::load_order(&*self.store, order_id).await? {
            // A replay: redo what may not have happened after the order row was written.
            self.after_placing(&order.value).await?;
            return Ok(Outcome::OrderAccepted(order.value));
        }
        let store = &*self.store;
        let taken = crate::purchase::take(
            || checkouts::load(store, checkout_id),
            |next, version| async move {
                Ok(checkouts::cas(store, &next, version).await?.then_some(next))
            },
            user_id,
            order_id,
        )
        .await?;
        let checkout = match taken {
            Ok(checkout) => checkout,
            Err(refusal) => return Ok(Outcome::Refused(refusal)),
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
        orders::create_order(&*self.store, &order).await?;
        self.after_placing(&order).await?;
        Ok(Outcome::OrderAccepted(order))
    }

    /// The order in its user's history, and what it bought out of the cart (one partition:
    /// one batch). Both are idempotent, so a replayed placement does them again.
    async fn after_placing(&self, order: &Order) -> RepoResult<()> {
        let Some(g) = order.goods.as_deref() else {
            return Ok(());
        };
        let bought = g.lines.iter().map(|l| l.sku.as_str());
        tokio::try_join!(
            orders::index_order(&*self.store, order),
            carts::remove_bought(&*self.store, &order.user_id, bought),
        )?;
        Ok(())
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
                self.finish_checkout(&g.checkout_id, &order.id, Finish::Bought)
                    .await?;
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
                self.finish_checkout(&g.checkout_id, &order.id, Finish::Declined)
                    .await?;
                Ok(Vec::new())
            }
            ProviderEventKind::RefundSucceeded => {
                let refund_id = event
                    .refund_id
                    .clone()
                    .unwrap_or_else(|| event.payment_id.clone());
                update_order(&*self.store, &order.id, |o| {
                    let status = o.status;
                    let Some(g) = o.goods.as_deref_mut() else {
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
        self.finish_checkout(&g.checkout_id, &order.id, Finish::Bought)
            .await?;
        Ok(vec![allocate(&order.id)])
    }

    /// Moves the checkout an order pays for on as its payment ends (see
    /// [`purchase::finish`]), if the order still holds it.
    pub(crate) async fn finish_checkout(
        &self,
        checkout_id: &str,
        order_id: &str,
        how: Finish,
    ) -> RepoResult<()> {
        if let Some(c) = checkouts::load(&*self.store, checkout_id).await? {
            if let Some(next) = purchase::finish(&c.value, order_id, how) {
                checkouts::cas(&*self.store, &next, c.version).await?;
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
        let recorded = update_order(&*self.store, order_id, |o| {
            let Some(g) = o.goods.as_deref_mut() else {
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
        match recorded {
            Some(Ok(order)) => self.request_refunds(&order).await,
            _ => Ok(()),
        }
    }

    /// Asks the provider for every refund the order records as requested (idempotent per id).
    pub(crate) async fn request_refunds(&self, order: &Order) -> RepoResult<()> {
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
