//! The order plans against a model: whatever staff, shoppers and the provider do to a product
//! order, in whatever order and however often, it never refunds more than was paid, never
//! takes back more than was delivered, never ships what was cancelled, and a replay changes
//! nothing.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::after_sale::{cancel, take_return};
use super::settle::refunded;
use super::shipping::advance;
use super::{Order, OrderStatus};
use crate::domain::commerce::{Goods, GoodsLine, RefundState, Shipment, ShipmentStatus};
use crate::domain::Money;

const SKUS: [&str; 2] = ["mug", "tee"];
const PRICE: [i64; 2] = [1_200, 2_500];

/// A paid order allocated to `split` shipments: shipment i takes `split[i]` units of each SKU.
fn allocated(split: &[(u64, u64)]) -> Order {
    let quantity = |k: usize| {
        split
            .iter()
            .map(|s| if k == 0 { s.0 } else { s.1 })
            .sum::<u64>()
    };
    let lines: Vec<GoodsLine> = (0..2)
        .map(|k| GoodsLine {
            sku: SKUS[k].into(),
            name: SKUS[k].into(),
            quantity: quantity(k),
            unit_price: Money {
                amount: PRICE[k],
                currency: "EUR".into(),
            },
        })
        .collect();
    let total = lines
        .iter()
        .map(|l| l.unit_price.amount * l.quantity as i64)
        .sum();
    let shipments = split
        .iter()
        .enumerate()
        .map(|(i, (a, b))| Shipment {
            id: format!("o1.{i}"),
            warehouse: format!("w{i}"),
            items: [(SKUS[0].to_owned(), *a), (SKUS[1].to_owned(), *b)]
                .into_iter()
                .filter(|(_, q)| *q > 0)
                .collect(),
            status: ShipmentStatus::Allocated,
            tracking_number: None,
            updated_ms: 0,
        })
        .collect();
    Order {
        id: "o1".into(),
        user_id: "ada".into(),
        event_id: String::new(),
        hold_id: String::new(),
        items: Vec::new(),
        total: Money {
            amount: total,
            currency: "EUR".into(),
        },
        status: OrderStatus::Allocated,
        payment_id: Some("pay_1".into()),
        failure: None,
        refund: None,
        tickets: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
        goods: Some(Box::new(Goods {
            checkout_id: "co_1".into(),
            lines,
            shipments,
            ..Goods::default()
        })),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Ship(usize),
    Deliver(usize),
    Cancel,
    Return {
        id: u8,
        sku: usize,
        quantity: u64,
    },
    RefundConfirmed(usize),
    /// The provider reports refund i for one minor unit more than the order owes.
    RefundOfAnotherAmount(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3).prop_map(Op::Ship),
        (0usize..3).prop_map(Op::Deliver),
        Just(Op::Cancel),
        (0u8..4, 0usize..2, 0u64..5).prop_map(|(id, sku, quantity)| Op::Return {
            id,
            sku,
            quantity
        }),
        (0usize..4).prop_map(Op::RefundConfirmed),
        (0usize..4).prop_map(Op::RefundOfAnotherAmount),
    ]
}

/// Applies `op`; returns whether the plan changed the order, after checking that a plan that
/// says "no change" or refuses left it exactly as it was.
fn apply(order: &mut Order, op: &Op) -> bool {
    let before = order.clone();
    let mut next = order.clone();
    let changed = match op {
        Op::Ship(i) | Op::Deliver(i) => {
            let (to, tracking) = match op {
                Op::Ship(_) => (ShipmentStatus::Shipped, Some("TRK1")),
                _ => (ShipmentStatus::Delivered, None),
            };
            let (id, warehouse) = (format!("o1.{i}"), format!("w{i}"));
            advance(&mut next, &warehouse, &id, to, tracking, 1)
        }
        Op::Cancel => cancel(&mut next, "ada", 1),
        Op::Return { id, sku, quantity } => take_return(
            &mut next,
            "ada",
            &format!("ret_{id}"),
            &[(SKUS[*sku].to_owned(), *quantity)],
            "too big",
            1,
        ),
        Op::RefundConfirmed(i) | Op::RefundOfAnotherAmount(i) => {
            let (id, mut amount) = next
                .goods
                .as_deref()
                .and_then(|g| g.refunds.get(*i))
                .map(|r| (r.id.clone(), r.amount.clone()))
                .unwrap_or_else(|| (format!("unknown_{i}"), next.total.clone()));
            if matches!(op, Op::RefundOfAnotherAmount(_)) {
                amount.amount += 1;
            }
            // A refund the order is not owed changes nothing (checked below as "no change").
            Ok(refunded(&mut next, &id, &amount).unwrap_or(false))
        }
    };
    match changed {
        Ok(true) => {
            *order = next;
            true
        }
        Ok(false) => {
            assert_eq!(next, before, "{op:?} said nothing changed, and changed it");
            false
        }
        // A refusal's half-made changes are thrown away with the copy, as the worker does.
        Err(_) => false,
    }
}

fn delivered(order: &Order) -> BTreeMap<String, u64> {
    let mut units = BTreeMap::new();
    for s in &order.goods.as_deref().unwrap().shipments {
        if s.status == ShipmentStatus::Delivered {
            for (sku, q) in &s.items {
                *units.entry(sku.clone()).or_default() += q;
            }
        }
    }
    units
}

fn split() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..3, 0u64..3), 1..4)
        .prop_filter("something to ship", |s| s.iter().any(|(a, b)| a + b > 0))
}

proptest! {
    #[test]
    fn an_order_never_refunds_more_than_was_paid_nor_ships_what_was_cancelled(
        split in split(),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let mut order = allocated(&split);
        let mut cancelled = false;
        for op in &ops {
            if apply(&mut order, op) {
                // A replay of the same command is no change at all.
                prop_assert!(!matches!(op, Op::RefundOfAnotherAmount(_)), "a refund of another amount recorded");
                if !matches!(op, Op::RefundConfirmed(_)) {
                    prop_assert!(!apply(&mut order, op), "{:?} did something twice", op);
                }
            }
            let g = order.goods.as_deref().unwrap();
            let refunds: i64 = g.refunds.iter().map(|r| r.amount.amount).sum();
            prop_assert!(refunds <= order.total.amount, "refunds {} of {}", refunds, order.total.amount);
            let ids: HashSet<&str> = g.refunds.iter().map(|r| r.id.as_str()).collect();
            prop_assert_eq!(ids.len(), g.refunds.len(), "a refund owed twice");
            let mut returned: BTreeMap<String, u64> = BTreeMap::new();
            for r in &g.returns {
                for (sku, q, _) in &r.items {
                    *returned.entry(sku.clone()).or_default() += q;
                }
            }
            let delivered = delivered(&order);
            for (sku, q) in &returned {
                prop_assert!(*q <= delivered.get(sku).copied().unwrap_or(0), "{} returned beyond delivery", sku);
            }
            if order.status == OrderStatus::Cancelled {
                cancelled = true;
            }
            if cancelled {
                prop_assert!(g.shipments.iter().all(|s| s.status == ShipmentStatus::Cancelled), "shipped after cancelling");
                prop_assert!(g.returns.is_empty());
            }
            if order.status == OrderStatus::Delivered {
                prop_assert!(g.shipments.iter().all(|s| s.status == ShipmentStatus::Delivered));
            }
            if order.status == OrderStatus::Refunded {
                prop_assert!(g.refunds.iter().all(|r| r.state == RefundState::Refunded));
            }
        }
    }
}

/// The sum of an order's refunds stays within its charge, checked where a refund is owed: a
/// return or a cancellation that would pass it is refused and changes nothing.
#[test]
fn no_refund_is_owed_beyond_what_is_left_of_the_charge() {
    use super::settle::owe_refund;
    use crate::domain::commerce::Refund;
    use crate::domain::refusal::Refusal;

    // Two mugs, 2,400 charged, delivered; 2,000 of it owed back already (say, a goodwill
    // refund recorded by an older release).
    let mut order = allocated(&[(2, 0)]);
    for to in [ShipmentStatus::Shipped, ShipmentStatus::Delivered] {
        advance(&mut order, "w0", "o1.0", to, Some("TRK1"), 1).unwrap();
    }
    order.goods.as_deref_mut().unwrap().refunds.push(Refund {
        id: "goodwill".into(),
        amount: Money {
            amount: 2_000,
            currency: "EUR".into(),
        },
        reason: "goodwill".into(),
        state: RefundState::Requested,
        created_ms: 0,
    });
    let before = order.clone();
    let exceeds = Err(Refusal::RefundExceedsCharge {
        asked: 1_200,
        refundable: 400,
        currency: "EUR".into(),
    });
    let mut next = order.clone();
    let mug = [("mug".to_owned(), 1)];
    assert_eq!(
        take_return(&mut next, "ada", "ret_1", &mug, "too big", 1),
        exceeds
    );
    assert_eq!(next, before, "a refused return changed the order");

    let eur = |amount| Money {
        amount,
        currency: "EUR".into(),
    };
    assert!(owe_refund(&mut next, "r_401", &eur(401), "x", 1).is_err());
    assert!(owe_refund(
        &mut next,
        "r_usd",
        &Money {
            amount: 1,
            currency: "USD".into()
        },
        "x",
        1
    )
    .is_err());
    assert!(owe_refund(&mut next, "r_neg", &eur(-1), "x", 1).is_err());
    assert_eq!(next, before);
    assert_eq!(owe_refund(&mut next, "r_400", &eur(400), "x", 1), Ok(true));
    assert!(owe_refund(&mut next, "r_1", &eur(1), "x", 1).is_err());

    // A paid order whose charge is partly owed back already cannot be cancelled for all of it.
    let mut paid = allocated(&[(1, 0)]);
    let part = Refund {
        id: "goodwill".into(),
        amount: eur(1),
        reason: "goodwill".into(),
        state: RefundState::Refunded,
        created_ms: 0,
    };
    paid.goods.as_deref_mut().unwrap().refunds.push(part);
    let before = paid.clone();
    assert!(matches!(
        cancel(&mut paid, "ada", 1),
        Err(Refusal::RefundExceedsCharge { .. })
    ));
    assert_eq!(paid, before, "a refused cancellation changed the order");
}
