//! A signed refund event the order is not owed changes nothing: the payments worker, fed
//! provider events for orders in the store, records a refund only when its id and amount are
//! the ones the order owes (for a ticket order, its whole total).

use std::sync::Arc;

use mercato_core::bus::Record;
use mercato_core::codec::encode;
use mercato_core::domain::commands::PaymentCommand;
use mercato_core::domain::commerce::{Goods, GoodsLine, Refund, RefundState};
use mercato_core::domain::orders::{Order, OrderStatus, RefundStatus};
use mercato_core::domain::payments::{ProviderEvent, ProviderEventKind};
use mercato_core::domain::Money;
use mercato_core::names::topics;
use mercato_core::repo::orders;
use mercato_core::store::{EmbeddedStore, Store};
use mercato_workers::payments::PaymentsWorker;
use mercato_workers::sandbox::SandboxProvider;
use mercato_workers::BatchHandler;

fn eur(amount: i64) -> Money {
    Money {
        amount,
        currency: "EUR".into(),
    }
}

fn order(id: &str, status: OrderStatus, goods: Option<Goods>) -> Order {
    Order {
        id: id.into(),
        user_id: "ada".into(),
        event_id: String::new(),
        hold_id: String::new(),
        items: Vec::new(),
        total: eur(2_400),
        status,
        payment_id: Some(format!("pay_{id}")),
        failure: None,
        refund: goods.is_none().then_some(RefundStatus::Requested),
        tickets: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
        goods: goods.map(Box::new),
    }
}

/// A cancelled product order owed two refunds: 1,200 under `r1` and 1,200 under `r2`.
fn cancelled_goods() -> Order {
    let refund = |id: &str| Refund {
        id: id.into(),
        amount: eur(1_200),
        reason: "cancelled".into(),
        state: RefundState::Requested,
        created_ms: 0,
    };
    order(
        "o_goods",
        OrderStatus::Cancelled,
        Some(Goods {
            checkout_id: "co_1".into(),
            lines: vec![GoodsLine {
                sku: "mug".into(),
                name: "Mug".into(),
                quantity: 2,
                unit_price: eur(1_200),
            }],
            refunds: vec![refund("r1"), refund("r2")],
            ..Goods::default()
        }),
    )
}

fn refund_event(order: &Order, n: u32, refund_id: Option<&str>, amount: Money) -> Record {
    let event = ProviderEvent {
        id: format!("evt_{n}"),
        kind: ProviderEventKind::RefundSucceeded,
        order_id: order.id.clone(),
        payment_id: order.payment_id.clone().unwrap_or_default(),
        amount,
        reason: None,
        refund_id: refund_id.map(str::to_owned),
    };
    Record {
        partition: 0,
        offset: u64::from(n),
        timestamp_ms: 0,
        key: order.id.clone().into_bytes(),
        value: encode(&PaymentCommand::Provider(event)),
    }
}

async fn stored(store: &dyn Store, id: &str) -> (Order, u64) {
    let row = orders::load_order(store, id)
        .await
        .unwrap()
        .expect("the order");
    (row.value, row.version)
}

#[tokio::test]
async fn a_refund_event_the_order_is_not_owed_changes_nothing() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    let provider = Arc::new(SandboxProvider::new(Arc::clone(&store), b"k".to_vec()));
    let worker = PaymentsWorker::new(Arc::clone(&store), provider);
    let goods = cancelled_goods();
    let tickets = order("o_tickets", OrderStatus::Expired, None);
    for o in [&goods, &tickets] {
        orders::create_order(&*store, o).await.unwrap();
    }
    let before_goods = stored(&*store, &goods.id).await;
    let before_tickets = stored(&*store, &tickets.id).await;

    let mismatched = [
        // r1 is owed 1,200: not 1,300, nor 1,100, nor the whole order.
        refund_event(&goods, 1, Some("r1"), eur(1_300)),
        refund_event(&goods, 2, Some("r1"), eur(1_100)),
        refund_event(&goods, 3, Some("r1"), eur(2_400)),
        // A refund the order never asked for.
        refund_event(&goods, 4, Some("r9"), eur(1_200)),
        // The right amount in another currency.
        refund_event(
            &goods,
            5,
            Some("r1"),
            Money {
                amount: 1_200,
                currency: "USD".into(),
            },
        ),
        // A ticket order is refunded whole or not at all.
        refund_event(&tickets, 6, None, eur(100)),
        refund_event(&tickets, 7, None, eur(2_399)),
    ];
    for record in &mismatched {
        worker
            .handle(topics::PAYMENTS, std::slice::from_ref(record))
            .await
            .unwrap();
    }
    assert_eq!(stored(&*store, &goods.id).await, before_goods);
    assert_eq!(stored(&*store, &tickets.id).await, before_tickets);

    // The refunds owed, as owed, are recorded; the order is refunded once both are through.
    worker
        .handle(
            topics::PAYMENTS,
            &[refund_event(&goods, 8, Some("r1"), eur(1_200))],
        )
        .await
        .unwrap();
    let (after_one, _) = stored(&*store, &goods.id).await;
    assert_eq!(after_one.status, OrderStatus::Cancelled);
    worker
        .handle(
            topics::PAYMENTS,
            &[refund_event(&goods, 9, Some("r2"), eur(1_200))],
        )
        .await
        .unwrap();
    let (after_both, _) = stored(&*store, &goods.id).await;
    assert_eq!(after_both.status, OrderStatus::Refunded);
    let g = after_both.goods.as_deref().unwrap();
    assert!(g.refunds.iter().all(|r| r.state == RefundState::Refunded));

    worker
        .handle(
            topics::PAYMENTS,
            &[refund_event(&tickets, 10, None, eur(2_400))],
        )
        .await
        .unwrap();
    let (tickets_after, _) = stored(&*store, &tickets.id).await;
    assert_eq!(tickets_after.refund, Some(RefundStatus::Refunded));
}
