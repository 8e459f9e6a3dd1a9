//! Allocating a paid product order to warehouses, as decisions: what to do with an order the
//! allocator is asked about, the warehouses it may draw from, what to ask of each SKU's stock
//! row, and the order as recorded once the stock has moved. The allocator worker loads the
//! rows, calls these, and writes what they return.

use std::collections::BTreeMap;

use crate::domain::commands::WarehouseMessage;
use crate::domain::commerce::allocation::{Plan, Source};
use crate::domain::commerce::stock::StockLevel;
use crate::domain::commerce::{
    shipment_id, warehouse_topic, Goods, Shipment, ShipmentStatus, WarehouseRecord,
};
use crate::geo::haversine_km;

use super::{Order, OrderStatus};

/// Units taken per warehouse: (warehouse, quantity).
pub type Takes = Vec<(String, u64)>;

/// What the allocator does with an order it is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Paid: split it across warehouses.
    Allocate,
    /// Allocated already (a replay after it was recorded): its sub-orders may not have gone
    /// out, so they are sent again.
    Resend,
    /// Cancelled or refunded meanwhile: anything an earlier attempt took goes back.
    PutBack,
    /// Not a product order, or not at a stage the allocator acts on.
    Nothing,
}

pub fn next(order: &Order) -> Next {
    if order.goods.is_none() {
        return Next::Nothing;
    }
    match order.status {
        OrderStatus::Paid => Next::Allocate,
        OrderStatus::Allocated => Next::Resend,
        OrderStatus::Cancelled | OrderStatus::Refunded => Next::PutBack,
        _ => Next::Nothing,
    }
}

/// The warehouses the planner may draw from: those known, with what each has available of
/// the order's SKUs (`levels`: each SKU's stock row) and its distance to `ship_to`.
pub fn sources(
    warehouses: &[WarehouseRecord],
    levels: &[(String, StockLevel)],
    ship_to: Option<(f64, f64)>,
) -> Vec<Source> {
    let mut available: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for (sku, level) in levels {
        for (w, stock) in &level.warehouses {
            if warehouses.iter().any(|x| x.name == *w) {
                available
                    .entry(w.as_str())
                    .or_default()
                    .insert(sku.clone(), stock.available);
            }
        }
    }
    warehouses
        .iter()
        .filter_map(|w| {
            let stock = available.remove(w.name.as_str())?;
            Some(Source {
                warehouse: w.name.clone(),
                distance_km: ship_to.map_or(0.0, |p| haversine_km(p, (w.lat, w.lon))),
                available: stock,
            })
        })
        .collect()
}

/// The order's lines as the planner takes them: (sku, quantity).
pub fn lines(goods: &Goods) -> Vec<(String, u64)> {
    goods
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect()
}

/// The warehouses nearest first: where a SKU's stock row looks when a planned warehouse has
/// run short since the plan.
pub fn nearest_first(sources: &[Source]) -> Vec<String> {
    let mut by_distance: Vec<&Source> = sources.iter().collect();
    by_distance.sort_by(|a, b| a.distance_km.total_cmp(&b.distance_km));
    by_distance
        .into_iter()
        .map(|s| s.warehouse.clone())
        .collect()
}

/// What the plan wants of one SKU: (warehouse, quantity), in the plan's order.
pub fn wished(plan: &Plan, sku: &str) -> Takes {
    plan.shipments
        .iter()
        .flat_map(|(w, items)| {
            items
                .iter()
                .filter(|(item, _)| item == sku)
                .map(|(_, q)| (w.clone(), *q))
        })
        .collect()
}

/// The shipments as the stock moves come back, SKU by SKU: each warehouse once, in the order
/// it first took something.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moved {
    pub shipments: Vec<(String, Vec<(String, u64)>)>,
    /// Per SKU, units no warehouse had when its stock row was changed.
    pub short: Vec<(String, u64)>,
}

impl Moved {
    /// Adds what one SKU's stock row gave (`takes`) and lacked (`missing`).
    pub fn add(&mut self, sku: &str, takes: Takes, missing: u64) {
        if missing > 0 {
            self.short.push((sku.to_owned(), missing));
        }
        for (w, q) in takes {
            match self.shipments.iter_mut().find(|(name, _)| *name == w) {
                Some((_, items)) => items.push((sku.to_owned(), q)),
                None => self.shipments.push((w, vec![(sku.to_owned(), q)])),
            }
        }
    }
}

/// Records the allocation on the order, if it is still paid (a cancellation may have got
/// there first): its shipments, any shortfall, and the status `allocated`. Whether it changed.
pub fn record(order: &mut Order, moved: &Moved, now_ms: u64) -> bool {
    if order.status != OrderStatus::Paid {
        return false;
    }
    let order_id = order.id.clone();
    let Some(g) = order.goods.as_deref_mut() else {
        return false;
    };
    g.shipments = moved
        .shipments
        .iter()
        .enumerate()
        .map(|(i, (w, items))| Shipment {
            id: shipment_id(&order_id, i + 1),
            warehouse: w.clone(),
            items: items.clone(),
            status: ShipmentStatus::Allocated,
            tracking_number: None,
            updated_ms: now_ms,
        })
        .collect();
    g.shortfall = moved.short.clone();
    order.status = OrderStatus::Allocated;
    true
}

/// Notes on the order what no warehouse can supply (it stays paid, flagged for admins).
/// Whether it changed.
pub fn note_shortfall(order: &mut Order, shortfall: &[(String, u64)]) -> bool {
    match order.goods.as_deref_mut() {
        Some(g) if g.shortfall != shortfall => {
            g.shortfall = shortfall.to_vec();
            true
        }
        _ => false,
    }
}

/// Each warehouse's sub-order, with the topic it goes on: one per shipment still allocated.
pub fn sub_orders(order: &Order) -> Vec<(String, WarehouseMessage)> {
    let Some(g) = order.goods.as_deref() else {
        return Vec::new();
    };
    g.shipments
        .iter()
        .filter(|s| s.status == ShipmentStatus::Allocated)
        .map(|s| {
            (
                warehouse_topic(&s.warehouse),
                WarehouseMessage::Ship {
                    order_id: order.id.clone(),
                    shipment: s.clone(),
                    address: g.shipping.clone(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
