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
use mercato_core::domain::commerce::{Address, Goods, RefundState};
use mercato_core::domain::orders::settle::{self, Settlement};
use mercato_core::domain::orders::{place, Order};
use mercato_core::domain::payments::{PaymentMethod, PaymentProvider, ProviderEvent};
use mercato_core::domain::purchase::{self, Finish};
use mercato_core::names::topics;
use mercato_core::repo::RepoResult;
use mercato_core::store::Store;

use crate::payments::{not_owed, provider_down};
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
        let mut order = place::goods_order(order_id, user_id, &checkout, shipping, now_ms());
        order.payment_id = Some(
            self.provider
                .charge(order_id, order_id, &order.total, method)
                .await
                .map_err(provider_down)?,
        );
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
        match settle::settlement(order, event) {
            Settlement::Sell => self.charge_succeeded(order, g, event).await,
            Settlement::AfterPaid => {
                self.finish_checkout(&g.checkout_id, &order.id, Finish::Bought)
                    .await?;
                Ok(vec![allocate(&order.id)])
            }
            Settlement::RefundCancelled => {
                self.refund_whole(&order.id, event, "cancelled before the payment completed")
                    .await?;
                Ok(Vec::new())
            }
            Settlement::Decline => {
                let reason = event.reason.as_deref();
                update_order(&*self.store, &order.id, |o| {
                    Ok::<_, ()>(settle::declined(o, reason))
                })
                .await?;
                self.finish_checkout(&g.checkout_id, &order.id, Finish::Declined)
                    .await?;
                Ok(Vec::new())
            }
            Settlement::Refunded => {
                let refund_id = settle::refund_id(event);
                let recorded = update_order(&*self.store, &order.id, |o| {
                    settle::refunded(o, refund_id, &event.amount)
                })
                .await?;
                if let Some(Err(mismatch)) = recorded {
                    not_owed(event, &mismatch);
                }
                Ok(Vec::new())
            }
            Settlement::Nothing => Ok(Vec::new()),
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
            update_order(&*self.store, &order.id, |o| Ok::<_, ()>(settle::lapsed(o))).await?;
            self.refund_whole(&order.id, event, "checkout lapsed")
                .await?;
            return Ok(Vec::new());
        }
        update_order(&*self.store, &order.id, |o| {
            Ok::<_, ()>(settle::paid(o, String::new))
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
        let recorded = update_order(&*self.store, order_id, |o| {
            settle::owe_refund(o, &event.payment_id, &event.amount, reason, now_ms())
        })
        .await?;
        match recorded {
            Some(Ok(order)) => self.request_refunds(&order).await,
            Some(Err(refusal)) => {
                tracing::warn!(order = order_id, %refusal, "a whole refund not recorded");
                Ok(())
            }
            None => Ok(()),
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
