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
    Return { id: u8, sku: usize, quantity: u64 },
    RefundConfirmed(usize),
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
        Op::RefundConfirmed(i) => {
            let id = next
                .goods
                .as_deref()
                .and_then(|g| g.refunds.get(*i))
                .map(|r| r.id.clone())
                .unwrap_or_default();
            Ok(refunded(&mut next, &id))
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
