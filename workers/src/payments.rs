//! The payments worker: turns a hold into an order, charges it through the provider, and settles
//! the order when the provider's verified webhook arrives.
//!
//! Everything about one order is keyed by its id, so it lands on one partition and is decided in
//! order: the order is accepted before its charge's webhook is handled. On success the held seats
//! become sold only if they are still claimed by that same hold (compare-and-set on the claim's
//! version); if the hold lapsed first, whatever was converted is undone, the order is `expired`
//! and the charge refunded.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mercato_core::bus::Record;
use mercato_core::clock::now_ms;
use mercato_core::codec::decode;

use mercato_core::domain::commands::{CommandResult, Outcome, PaymentCommand, SeatChangeKind};
use mercato_core::domain::holds::{sale_of, Hold, SectionSale};
use mercato_core::domain::orders::settle::{self, Settlement};
use mercato_core::domain::orders::{place, Order};
use mercato_core::domain::payments::{
    self, PaymentError, PaymentMethod, PaymentProvider, ProviderEvent,
};
use mercato_core::domain::purchase::{self, Finish};
use mercato_core::domain::refusal::Refusal;
use mercato_core::domain::seats::by_section;
use mercato_core::names::topics;
use mercato_core::repo::{self, orders, EventCache, RepoError, RepoResult, Versioned};
use mercato_core::store::Store;

use crate::goods::GoodsOrders;
use crate::runtime::{BatchHandler, Emit};
use crate::seat_changes::seat_change;

pub struct PaymentsWorker {
    store: Arc<dyn Store>,
    events: EventCache,
    provider: Arc<dyn PaymentProvider>,
    goods: GoodsOrders,
}

pub(crate) fn provider_down(e: PaymentError) -> RepoError {
    // Retried with the whole batch: charges and refunds are idempotent per order.
    RepoError::Upstream {
        service: "payment provider",
        cause: std::sync::Arc::new(e),
    }
}

/// A signed refund event the order is not owed (another amount, an unknown refund): nothing
/// changes, and an operator is told.
pub(crate) fn not_owed(event: &ProviderEvent, mismatch: &settle::RefundMismatch) {
    tracing::warn!(
        order = event.order_id,
        event = event.id,
        %mismatch,
        "a signed refund webhook the order is not owed; ignored"
    );
}

/// A ticket order's seats, heard as sold.
fn seats_sold(order: &Order) -> Emit {
    let seats: Vec<String> = order.items.iter().map(|i| i.seat_id.clone()).collect();
    seat_change(
        &order.event_id,
        &seats,
        SeatChangeKind::Sold,
        &order.hold_id,
    )
}

fn result(command_id: String, outcome: Outcome) -> Emit {
    let result = CommandResult {
        command_id: command_id.clone(),
        outcome,
    };
    Emit::new(topics::RESULTS, command_id, &result)
}

impl PaymentsWorker {
    pub fn new(store: Arc<dyn Store>, provider: Arc<dyn PaymentProvider>) -> Self {
        Self {
            events: EventCache::new(Arc::clone(&store), Duration::from_secs(5)),
            goods: GoodsOrders {
                store: Arc::clone(&store),
                provider: Arc::clone(&provider),
            },
            store,
            provider,
        }
    }

    async fn decide(&self, record: &Record) -> RepoResult<Vec<Emit>> {
        let command = match decode::<PaymentCommand>(&record.value) {
            Ok(c) => c,
            Err(e) => {
                return Ok(vec![Emit::dead_letter(
                    record,
                    topics::PAYMENTS,
                    &e.to_string(),
                )])
            }
        };
        match command {
            PaymentCommand::PlaceOrder {
                command_id,
                order_id,
                user_id,
                hold_id,
                method,
            } => {
                let outcome = self
                    .place_order(&order_id, &user_id, &hold_id, &method)
                    .await?;
                Ok(vec![result(command_id, outcome)])
            }
            PaymentCommand::Provider(event) => self.settle(&event).await,
            PaymentCommand::PlaceGoodsOrder {
                command_id,
                order_id,
                user_id,
                checkout_id,
                method,
                shipping,
            } => {
                let outcome = self
                    .goods
                    .place(&order_id, &user_id, &checkout_id, &method, shipping)
                    .await?;
                Ok(vec![result(command_id, outcome)])
            }
            PaymentCommand::Cancel {
                command_id,
                order_id,
                user_id,
            } => {
                let (outcome, mut emits) = self.goods.cancel(&order_id, &user_id).await?;
                emits.push(result(command_id, outcome));
                Ok(emits)
            }
            PaymentCommand::AdvanceShipment {
                command_id,
                warehouse,
                shipment_id,
                to,
                tracking_number,
                ..
            } => {
                let outcome = self
                    .goods
                    .advance_shipment(&warehouse, &shipment_id, to, tracking_number.as_deref())
                    .await?;
                Ok(vec![result(command_id, outcome)])
            }
            PaymentCommand::Return {
                command_id,
                order_id,
                user_id,
                return_id,
                items,
                reason,
            } => {
                let outcome = self
                    .goods
                    .take_return(&order_id, &user_id, &return_id, &items, &reason)
                    .await?;
                Ok(vec![result(command_id, outcome)])
            }
        }
    }

    async fn place_order(
        &self,
        order_id: &str,
        user_id: &str,
        hold_id: &str,
        method: &PaymentMethod,
    ) -> RepoResult<Outcome> {
        if let Some(order) = self.order(order_id).await? {
            // A replay: the crash may have come between the order row and its history entry.
            orders::index_order(&*self.store, &order.value).await?;
            return Ok(Outcome::OrderAccepted(order.value));
        }
        let store = &*self.store;
        let taken = crate::purchase::take(
            || repo::holds::load(store, hold_id),
            |next, version| async move {
                let written = repo::holds::cas(store, &next, version).await?;
                Ok(written.map(|_| next))
            },
            user_id,
            order_id,
        )
        .await?;
        let hold = match taken {
            Ok(hold) => hold,
            Err(refusal) => return Ok(Outcome::Refused(refusal)),
        };
        let Some(spec) = self.events.get(&hold.event_id).await? else {
            return Ok(Outcome::Refused(Refusal::EventNotFound));
        };
        let mut order = place::ticket_order(order_id, user_id, &hold, &spec, now_ms());
        order.payment_id = Some(
            self.provider
                .charge(order_id, order_id, &order.total, method)
                .await
                .map_err(provider_down)?,
        );
        // The order row first: the user's index pointing at a missing order would be a lie.
        orders::create_order(&*self.store, &order).await?;
        orders::index_order(&*self.store, &order).await?;
        Ok(Outcome::OrderAccepted(order))
    }

    async fn order(&self, order_id: &str) -> RepoResult<Option<Versioned<Order>>> {
        orders::load_order(&*self.store, order_id).await
    }

    async fn settle(&self, event: &ProviderEvent) -> RepoResult<Vec<Emit>> {
        let Some(order) = self.order(&event.order_id).await? else {
            tracing::warn!(
                order = event.order_id,
                event = event.id,
                "webhook for an unknown order; ignored"
            );
            return Ok(Vec::new());
        };
        let o = &order.value;
        if let Err(mismatch) = payments::check_event(event, o.payment_id.as_deref(), &o.total) {
            tracing::warn!(
                order = event.order_id,
                event = event.id,
                %mismatch,
                "a signed webhook that does not match its order; ignored"
            );
            return Ok(Vec::new());
        }
        if order.value.goods.is_some() {
            return self.goods.settle(&order.value, event).await;
        }
        let mut next = order.value.clone();
        let mut emits = Vec::new();
        match settle::settlement(&next, event) {
            Settlement::Sell => {
                let hold = repo::holds::load(&*self.store, &next.hold_id).await?;
                let sold = match &hold {
                    Some(h) => self.convert_seats(&h.value, &next.id).await?,
                    None => false,
                };
                if sold {
                    settle::paid(&mut next, ticket_code);
                    if let Some(h) = hold {
                        if let Some(bought) = purchase::finish(&h.value, &next.id, Finish::Bought) {
                            repo::holds::cas(&*self.store, &bought, h.version).await?;
                        }
                    }
                    emits.push(seats_sold(&next));
                } else {
                    settle::lapsed(&mut next);
                    self.provider
                        .refund(
                            &event.payment_id,
                            &next.id,
                            &event.payment_id,
                            &event.amount,
                        )
                        .await
                        .map_err(provider_down)?;
                }
            }
            Settlement::Decline => {
                settle::declined(&mut next, event.reason.as_deref());
                self.reopen_hold(&next.hold_id, &next.id).await?;
            }
            Settlement::Refunded => {
                let refund_id = settle::refund_id(event);
                if let Err(mismatch) = settle::refunded(&mut next, refund_id, &event.amount) {
                    not_owed(event, &mismatch);
                    return Ok(Vec::new());
                }
            }
            // The order is paid already: a batch handled again after failing past that write
            // (or a duplicate webhook). Redo what follows the payment, which is idempotent: the
            // hold bought, and its seats heard as sold.
            Settlement::AfterPaid => {
                if let Some(h) = repo::holds::load(&*self.store, &next.hold_id).await? {
                    if let Some(bought) = purchase::finish(&h.value, &next.id, Finish::Bought) {
                        repo::holds::cas(&*self.store, &bought, h.version).await?;
                    }
                }
                return Ok(vec![seats_sold(&next)]);
            }
            // A duplicate webhook, or one about a settled order: nothing changes.
            Settlement::Nothing | Settlement::RefundCancelled => return Ok(Vec::new()),
        }
        next.updated_ms = now_ms();
        if !orders::cas_order(&*self.store, &next, order.version).await? {
            // Only this partition's worker writes an order after it is placed, so this means a
            // second replica owns the partition too: fail the batch and let it be replayed.
            return Err(RepoError::Contended {
                what: format!("order {} (changed while it was being settled)", next.id),
            });
        }
        Ok(emits)
    }

    /// Turns every seat claimed by `hold` into a sale for `order_id`, all or none. Returns false
    /// (with nothing sold) if any seat is no longer held by that hold.
    async fn convert_seats(&self, hold: &Hold, order_id: &str) -> RepoResult<bool> {
        let seats = hold.seats();
        let mut converted = Vec::new();
        let mut ok = true;
        for (section, group) in by_section(&seats) {
            let ids: Vec<String> = group.iter().map(ToString::to_string).collect();
            let holders =
                repo::holds::claims_of(&*self.store, &hold.event_id, &section, &ids).await?;
            match sale_of(hold, order_id, &holders) {
                Some(SectionSale {
                    already_sold: done,
                    to_sell: changes,
                }) => {
                    match repo::holds::replace_claims(
                        &*self.store,
                        &hold.event_id,
                        &section,
                        &changes,
                    )
                    .await?
                    {
                        Some(sold) => converted.push((section, [done, sold].concat())),
                        None => {
                            converted.push((section, done));
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            }
            if !ok {
                break;
            }
        }
        if !ok {
            // Undo the part that was sold: those seats belonged to a hold that lapsed elsewhere.
            for (section, claims) in converted {
                repo::holds::release_claims(&*self.store, &hold.event_id, &section, &claims)
                    .await?;
            }
        }
        Ok(ok)
    }

    /// After a declined payment the shopper may try another card while the hold lives.
    async fn reopen_hold(&self, hold_id: &str, order_id: &str) -> RepoResult<()> {
        if let Some(h) = repo::holds::load(&*self.store, hold_id).await? {
            if let Some(next) = purchase::finish(&h.value, order_id, Finish::Declined) {
                repo::holds::cas(&*self.store, &next, h.version).await?;
            }
        }
        Ok(())
    }
}

/// An unguessable code for the ticket's barcode. Random is safe here: a replayed settlement
/// finds the order already paid and changes nothing.
fn ticket_code() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("TKT-{}", &id[..16])
}

#[async_trait]
impl BatchHandler for PaymentsWorker {
    async fn handle(&self, _topic: &str, records: &[Record]) -> RepoResult<Vec<Emit>> {
        // In order per order id (its webhook must find the order it settles); different
        // orders concurrently.
        crate::runtime::per_key(records, |r| self.decide(r)).await
    }
    fn poisoned(&self, record: &Record, error: &RepoError) -> Vec<Emit> {
        decode::<PaymentCommand>(&record.value)
            .ok()
            .and_then(|c| c.command_id().map(str::to_owned))
            .map(|id| crate::runtime::poisoned_result(&id, error))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mercato_core::codec::encode;
    use mercato_core::domain::commands::SeatChange;
    use mercato_core::domain::orders::{OrderItem, OrderStatus};
    use mercato_core::domain::payments::ProviderEventKind;
    use mercato_core::domain::Money;
    use mercato_core::store::EmbeddedStore;

    use super::*;
    use crate::sandbox::SandboxProvider;

    /// A charge settled again for a ticket order already paid (its batch handled again after
    /// the order was written, its emits lost) says again that the seats are sold, in their
    /// canonical spelling.
    #[tokio::test]
    async fn a_paid_ticket_order_settled_again_is_heard_as_sold_again() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
        let provider = Arc::new(SandboxProvider::new(Arc::clone(&store), b"k".to_vec()));
        let worker = PaymentsWorker::new(Arc::clone(&store), provider);
        let eur = |amount| Money {
            amount,
            currency: "EUR".into(),
        };
        let item = |seat: &str| OrderItem {
            seat_id: seat.into(),
            price: eur(100),
        };
        let order = Order {
            id: "o1".into(),
            user_id: "ada".into(),
            event_id: "gig".into(),
            hold_id: "hold-gig.pit.abc".into(),
            // An order from before seat ids were canonical.
            items: vec![item("PIT-01-1"), item("pit-1-2")],
            total: eur(200),
            status: OrderStatus::Paid,
            payment_id: Some("pay_1".into()),
            failure: None,
            refund: None,
            tickets: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
            goods: None,
        };
        orders::create_order(&*store, &order).await.unwrap();
        let event = ProviderEvent {
            id: "evt_1".into(),
            kind: ProviderEventKind::ChargeSucceeded,
            order_id: "o1".into(),
            payment_id: "pay_1".into(),
            amount: eur(200),
            reason: None,
            refund_id: None,
        };
        let record = Record {
            partition: 0,
            offset: 0,
            timestamp_ms: 0,
            key: b"o1".to_vec(),
            value: encode(&PaymentCommand::Provider(event)),
        };
        let emits = worker.handle(topics::PAYMENTS, &[record]).await.unwrap();
        let changes: Vec<SeatChange> = emits
            .iter()
            .filter(|e| e.topic == topics::SEAT_CHANGES)
            .map(|e| decode(&e.value).unwrap())
            .collect();
        assert_eq!(
            changes,
            [SeatChange {
                event_id: "gig".into(),
                seat_ids: vec!["pit-1-1".into(), "pit-1-2".into()],
                change: SeatChangeKind::Sold,
                hold_id: Some("hold-gig.pit.abc".into()),
            }]
        );
        let (after, _) = {
            let row = orders::load_order(&*store, "o1").await.unwrap().unwrap();
            (row.value, row.version)
        };
        assert_eq!(after.status, OrderStatus::Paid, "nothing else changes");
    }
}
