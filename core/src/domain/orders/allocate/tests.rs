//! Allocation as the worker runs it, without the store: the plan, then each SKU's stock row
//! moved, then the order recorded. Against a model: an order is supplied in full exactly when
//! the warehouses hold enough of every SKU, no warehouse gives more than it has, the stock lost
//! is the stock shipped, and recording twice changes nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::domain::commerce::allocation::plan;
use crate::domain::commerce::stock::{SoldLine, WarehouseStock};
use crate::domain::commerce::{Address, GoodsLine};
use crate::domain::Money;

const SKUS: [&str; 2] = ["mug", "tee"];

fn warehouse(name: &str, lat: f64, lon: f64) -> WarehouseRecord {
    WarehouseRecord {
        name: name.into(),
        lat,
        lon,
        city: None,
        skus: 0,
        units: 0,
        spec_json: String::new(),
        generation: 1,
        applied_ms: 0,
    }
}

fn paid(quantities: &[u64], status: OrderStatus) -> Order {
    let lines = quantities
        .iter()
        .zip(SKUS)
        .filter(|(q, _)| **q > 0)
        .map(|(q, sku)| GoodsLine {
            sku: sku.into(),
            name: sku.into(),
            quantity: *q,
            unit_price: Money {
                amount: 100,
                currency: "EUR".into(),
            },
        })
        .collect();
    Order {
        id: "o1".into(),
        user_id: "ada".into(),
        event_id: String::new(),
        hold_id: String::new(),
        items: Vec::new(),
        total: Money {
            amount: 0,
            currency: "EUR".into(),
        },
        status,
        payment_id: None,
        failure: None,
        refund: None,
        tickets: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
        goods: Some(Box::new(Goods {
            checkout_id: "co_1".into(),
            lines,
            shipping: Some(Address {
                lat: Some(51.5),
                lon: Some(-0.1),
                fields: BTreeMap::new(),
            }),
            ..Goods::default()
        })),
    }
}

/// Each SKU's stock row: `stock[w][k]` units of SKU k available in warehouse w, and the
/// order's units of it sold and waiting.
fn levels(stock: &[[u64; 2]], order: &Order) -> Vec<(String, StockLevel)> {
    let goods = order.goods.as_deref().expect("a product order");
    goods
        .lines
        .iter()
        .map(|line| {
            let k = SKUS
                .iter()
                .position(|s| *s == line.sku)
                .expect("a known SKU");
            let warehouses = stock
                .iter()
                .enumerate()
                .map(|(w, units)| {
                    let stock = WarehouseStock {
                        physical: units[k],
                        available: units[k],
                        ..WarehouseStock::default()
                    };
                    (format!("w{w}"), stock)
                })
                .collect();
            let level = StockLevel {
                warehouses,
                sold: vec![SoldLine {
                    order_id: order.id.clone(),
                    quantity: line.quantity,
                }],
                ..StockLevel::default()
            };
            (line.sku.clone(), level)
        })
        .collect()
}

/// What the allocator worker does, store aside: the moved stock, and the order after.
fn allocate(stock: &[[u64; 2]], order: &Order) -> (Plan, Moved, Vec<(String, StockLevel)>, Order) {
    let known: Vec<WarehouseRecord> = (0..stock.len())
        .map(|w| warehouse(&format!("w{w}"), 50.0 + w as f64, 0.0))
        .collect();
    let mut rows = levels(stock, order);
    let goods = order.goods.as_deref().expect("a product order");
    let ship_to = goods.shipping.as_ref().and_then(Address::point);
    let sources = sources(&known, &rows, ship_to);
    let planned = plan(&lines(goods), &sources);
    let nearest = nearest_first(&sources);
    let mut moved = Moved::default();
    let mut after = order.clone();
    if planned.shortfall.is_empty() {
        for (sku, level) in &mut rows {
            let (takes, missing) = level.allocate_from(&order.id, &wished(&planned, sku), &nearest);
            moved.add(sku, takes, missing);
        }
        assert!(record(&mut after, &moved, 7));
    } else {
        note_shortfall(&mut after, &planned.shortfall);
    }
    (planned, moved, rows, after)
}

#[test]
fn what_the_allocator_does_follows_the_order_status() {
    assert_eq!(next(&paid(&[1, 0], OrderStatus::Paid)), Next::Allocate);
    assert_eq!(next(&paid(&[1, 0], OrderStatus::Allocated)), Next::Resend);
    assert_eq!(next(&paid(&[1, 0], OrderStatus::Cancelled)), Next::PutBack);
    assert_eq!(next(&paid(&[1, 0], OrderStatus::Refunded)), Next::PutBack);
    assert_eq!(next(&paid(&[1, 0], OrderStatus::Shipped)), Next::Nothing);
    let mut tickets = paid(&[1, 0], OrderStatus::Paid);
    tickets.goods = None;
    assert_eq!(next(&tickets), Next::Nothing);
}

#[test]
fn one_warehouse_that_has_everything_ships_it_all_in_one_sub_order() {
    let order = paid(&[2, 1], OrderStatus::Paid);
    let (_, moved, _, after) = allocate(&[[0, 0], [5, 5], [1, 1]], &order);
    assert_eq!(
        moved.shipments,
        [(
            "w1".to_owned(),
            vec![("mug".to_owned(), 2), ("tee".to_owned(), 1)]
        )]
    );
    assert_eq!(after.status, OrderStatus::Allocated);
    let sent = sub_orders(&after);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, warehouse_topic("w1"));
}

#[test]
fn an_order_no_warehouse_can_supply_stays_paid_with_its_shortfall_noted_once() {
    let order = paid(&[3, 0], OrderStatus::Paid);
    let (planned, _, _, mut after) = allocate(&[[1, 0], [1, 0]], &order);
    assert_eq!(planned.shortfall, [("mug".to_owned(), 1)]);
    assert_eq!(after.status, OrderStatus::Paid);
    assert_eq!(
        after.goods.as_deref().map(|g| g.shortfall.clone()),
        Some(vec![("mug".to_owned(), 1)])
    );
    assert!(
        !note_shortfall(&mut after, &planned.shortfall),
        "noted once"
    );
    assert!(sub_orders(&after).is_empty());
}

#[test]
fn a_cancelled_order_is_not_recorded_as_allocated() {
    let mut order = paid(&[1, 0], OrderStatus::Cancelled);
    let mut moved = Moved::default();
    moved.add("mug", vec![("w0".into(), 1)], 0);
    assert!(!record(&mut order, &moved, 7));
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert!(order
        .goods
        .as_deref()
        .is_some_and(|g| g.shipments.is_empty()));
}

proptest! {
    #[test]
    fn allocation_ships_exactly_what_the_stock_lost_and_never_more_than_there_was(
        stock in proptest::collection::vec([0u64..6, 0u64..6], 1..5),
        quantities in [0u64..8, 0u64..8],
    ) {
        prop_assume!(quantities.iter().any(|q| *q > 0));
        let order = paid(&quantities, OrderStatus::Paid);
        let (planned, moved, rows, after) = allocate(&stock, &order);
        let enough = (0..2).all(|k| stock.iter().map(|w| w[k]).sum::<u64>() >= quantities[k]);
        prop_assert_eq!(planned.shortfall.is_empty(), enough);
        if !enough {
            prop_assert_eq!(after.status, OrderStatus::Paid);
            return Ok(());
        }
        prop_assert!(moved.short.is_empty());
        prop_assert_eq!(after.status, OrderStatus::Allocated);
        let goods = after.goods.as_deref().expect("a product order");
        for (k, sku) in SKUS.iter().enumerate() {
            let shipped: u64 = goods
                .shipments
                .iter()
                .flat_map(|s| &s.items)
                .filter(|(item, _)| item == sku)
                .map(|(_, q)| q)
                .sum();
            prop_assert_eq!(shipped, quantities[k], "{} shipped in full", sku);
            if let Some((_, level)) = rows.iter().find(|(s, _)| s == sku) {
                for (w, units) in stock.iter().enumerate() {
                    let name = format!("w{w}");
                    let left = level.warehouses.get(&name).map_or(0, |s| s.available);
                    let from_here: u64 = goods
                        .shipments
                        .iter()
                        .filter(|s| s.warehouse == name)
                        .flat_map(|s| &s.items)
                        .filter(|(item, _)| item == sku)
                        .map(|(_, q)| q)
                        .sum();
                    prop_assert!(from_here <= units[k], "{} gave more than it had", name);
                    prop_assert_eq!(left + from_here, units[k], "stock lost is stock shipped");
                }
                prop_assert!(level.sold.is_empty(), "the sold line is taken off");
            }
        }
        let mut ids: Vec<&str> = goods.shipments.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), goods.shipments.len());
        prop_assert_eq!(sub_orders(&after).len(), goods.shipments.len());
        let mut again = after.clone();
        prop_assert!(!record(&mut again, &moved, 9), "a replay records nothing");
        prop_assert_eq!(again, after);
    }
}
