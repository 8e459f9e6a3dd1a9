//! The allocator worker: splits each paid product order across warehouses (fewest shipments,
//! then nearest to the shipping address, spilling over), moves the stock from the SKUs' sold
//! lines onto those warehouses, records the shipments on the order and sends each warehouse
//! its sub-order on its own topic.
//!
//! The stock moves come first, each once-only with the takes it made kept beside the stock
//! row; then the order turns `allocated` by compare-and-set, only if it is still `paid`. If a
//! cancellation got there first, the allocator puts back what it took. A crash anywhere
//! replays the order, and the recorded takes make the replay decide exactly as before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mercato_core::bus::Record;
use mercato_core::clock::now_ms;
use mercato_core::codec::decode;
use mercato_core::domain::commands::{AllocateOrder, WarehouseMessage};
use mercato_core::domain::commerce::allocation::{plan, Source};
use mercato_core::domain::commerce::{
    shipment_id, warehouse_topic, Goods, Shipment, ShipmentStatus, WarehouseRecord,
};
use mercato_core::domain::orders::{Order, OrderStatus};
use mercato_core::geo::haversine_km;
use mercato_core::names::topics;
use mercato_core::repo::orders::{self, load_order, update_order};
use mercato_core::repo::stock::{change_stock, load_stock};
use mercato_core::repo::{warehouses, RepoResult};
use mercato_core::store::Store;
use parking_lot::Mutex;

use crate::runtime::{BatchHandler, Emit};

/// How stale the list of warehouses (names and places) may be.
const WAREHOUSES_MAX_AGE: Duration = Duration::from_secs(2);

type Takes = Vec<(String, u64)>;

pub struct AllocatorWorker {
    store: Arc<dyn Store>,
    warehouses: Mutex<Option<(Instant, Arc<Vec<WarehouseRecord>>)>>,
}

fn alloc_op(order_id: &str) -> String {
    format!("alloc/{order_id}")
}

impl AllocatorWorker {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            warehouses: Mutex::new(None),
        }
    }

    async fn warehouses(&self) -> RepoResult<Arc<Vec<WarehouseRecord>>> {
        if let Some((at, list)) = &*self.warehouses.lock() {
            if at.elapsed() < WAREHOUSES_MAX_AGE {
                return Ok(Arc::clone(list));
            }
        }
        let list = Arc::new(warehouses::all(&*self.store).await?);
        *self.warehouses.lock() = Some((Instant::now(), Arc::clone(&list)));
        Ok(list)
    }

    async fn allocate(&self, order_id: &str) -> RepoResult<Vec<Emit>> {
        let Some(order) = load_order(&*self.store, order_id).await? else {
            return Ok(Vec::new());
        };
        let order = order.value;
        let Some(g) = order.goods.as_deref() else {
            return Ok(Vec::new());
        };
        match order.status {
            OrderStatus::Paid => {}
            // A replay after the order was recorded: the sub-orders may not have gone out.
            OrderStatus::Allocated => return Ok(sub_orders(&order, g)),
            // Cancelled meanwhile: put back anything an earlier attempt took.
            OrderStatus::Cancelled | OrderStatus::Refunded => {
                self.put_back(&order, g).await?;
                return Ok(Vec::new());
            }
            _ => return Ok(Vec::new()),
        }
        let warehouses = self.warehouses().await?;
        let ship_to = g.shipping.as_ref().and_then(|a| a.point());
        let mut available: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for line in &g.lines {
            if let Some(level) = load_stock(&*self.store, &line.sku).await? {
                for (w, s) in &level.value.warehouses {
                    if let Some(name) = warehouses.iter().find(|x| x.name == *w) {
                        available
                            .entry(name.name.as_str())
                            .or_default()
                            .insert(line.sku.clone(), s.available);
                    }
                }
            }
        }
        let sources: Vec<Source> = warehouses
            .iter()
            .filter_map(|w| {
                let stock = available.remove(w.name.as_str())?;
                Some(Source {
                    warehouse: w.name.clone(),
                    distance_km: ship_to.map_or(0.0, |p| haversine_km(p, (w.lat, w.lon))),
                    available: stock,
                })
            })
            .collect();
        let lines: Vec<(String, u64)> = g
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity))
            .collect();
        let planned = plan(&lines, &sources);
        if !planned.shortfall.is_empty() {
            return self.flag(&order, planned.shortfall).await;
        }
        let nearest: Vec<String> = {
            let mut s: Vec<&Source> = sources.iter().collect();
            s.sort_by(|a, b| a.distance_km.total_cmp(&b.distance_km));
            s.into_iter().map(|s| s.warehouse.clone()).collect()
        };
        // Move the stock, SKU by SKU, keeping what each move took.
        let mut shipments: Vec<(String, Vec<(String, u64)>)> = Vec::new();
        let mut short = Vec::new();
        for line in &g.lines {
            let wished: Takes = planned
                .shipments
                .iter()
                .flat_map(|(w, items)| {
                    items
                        .iter()
                        .filter(|(sku, _)| *sku == line.sku)
                        .map(|(_, q)| (w.clone(), *q))
                })
                .collect();
            let change = change_stock(
                &*self.store,
                &line.sku,
                Some(&alloc_op(order_id)),
                |level, _| {
                    let (takes, missing) = level.allocate_from(order_id, &wished, &nearest);
                    (!takes.is_empty(), (takes, missing))
                },
            )
            .await?;
            let (takes, missing): (Takes, u64) = change.value;
            if missing > 0 {
                short.push((line.sku.clone(), missing));
            }
            for (w, q) in takes {
                match shipments.iter_mut().find(|(name, _)| *name == w) {
                    Some((_, items)) => items.push((line.sku.clone(), q)),
                    None => shipments.push((w, vec![(line.sku.clone(), q)])),
                }
            }
        }
        let now = now_ms();
        if !short.is_empty() {
            orders::flag(&*self.store, order_id).await?;
        }
        let recorded = update_order(&*self.store, order_id, |o| {
            if o.status != OrderStatus::Paid {
                return Ok::<bool, ()>(false);
            }
            let Some(g) = o.goods.as_deref_mut() else {
                return Ok(false);
            };
            g.shipments = shipments
                .iter()
                .enumerate()
                .map(|(i, (w, items))| Shipment {
                    id: shipment_id(order_id, i + 1),
                    warehouse: w.clone(),
                    items: items.clone(),
                    status: ShipmentStatus::Allocated,
                    tracking_number: None,
                    updated_ms: now,
                })
                .collect();
            g.shortfall = short.clone();
            o.status = OrderStatus::Allocated;
            Ok(true)
        })
        .await?;
        match recorded {
            Some(Ok(o)) if o.status == OrderStatus::Allocated => {
                if short.is_empty() && !g.shortfall.is_empty() {
                    // Flagged by an earlier attempt; supplied in full now.
                    orders::unflag(&*self.store, order_id).await?;
                }
                let emits = o
                    .goods
                    .as_deref()
                    .map(|g| sub_orders(&o, g))
                    .unwrap_or_default();
                tracing::debug!(order = order_id, shipments = emits.len(), "allocated");
                Ok(emits)
            }
            Some(Ok(o)) => {
                // Cancelled while the stock moved: put it back.
                if let Some(g) = o.goods.as_deref() {
                    self.put_back(&o, g).await?;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Gives back, once, what the allocation of a cancelled order had taken.
    async fn put_back(&self, order: &Order, g: &Goods) -> RepoResult<()> {
        for line in &g.lines {
            let Some((takes, _)) = mercato_core::repo::stock::once_value::<(Takes, u64)>(
                &*self.store,
                &line.sku,
                &alloc_op(&order.id),
            )
            .await?
            else {
                continue;
            };
            if takes.is_empty() {
                continue;
            }
            change_stock(
                &*self.store,
                &line.sku,
                Some(&format!("unalloc/{}", order.id)),
                |level, _| {
                    for (w, q) in &takes {
                        level.restock(w, *q, false);
                    }
                    (true, ())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// No warehouse can supply the order in full: it stays paid, flagged for admins.
    async fn flag(&self, order: &Order, shortfall: Vec<(String, u64)>) -> RepoResult<Vec<Emit>> {
        tracing::warn!(
            order = order.id,
            ?shortfall,
            "no warehouse can supply the order; flagged"
        );
        orders::flag(&*self.store, &order.id).await?;
        update_order(&*self.store, &order.id, |o| {
            let Some(g) = o.goods.as_deref_mut() else {
                return Ok::<bool, ()>(false);
            };
            if g.shortfall == shortfall {
                return Ok(false);
            }
            g.shortfall = shortfall.clone();
            Ok(true)
        })
        .await?;
        Ok(Vec::new())
    }
}

/// Each warehouse's sub-order, on its own topic.
fn sub_orders(order: &Order, g: &Goods) -> Vec<Emit> {
    g.shipments
        .iter()
        .filter(|s| s.status == ShipmentStatus::Allocated)
        .map(|s| {
            Emit::to(
                warehouse_topic(&s.warehouse),
                order.id.clone(),
                &WarehouseMessage::Ship {
                    order_id: order.id.clone(),
                    shipment: s.clone(),
                    address: g.shipping.clone(),
                },
            )
        })
        .collect()
}

#[async_trait]
impl BatchHandler for AllocatorWorker {
    async fn handle(&self, _topic: &str, records: &[Record]) -> RepoResult<Vec<Emit>> {
        crate::runtime::per_key(records, |r| async move {
            match decode::<AllocateOrder>(&r.value) {
                Ok(cmd) => self.allocate(&cmd.order_id).await,
                Err(e) => Ok(vec![Emit::dead_letter(
                    r,
                    topics::ALLOCATIONS,
                    &e.to_string(),
                )]),
            }
        })
        .await
    }
}
