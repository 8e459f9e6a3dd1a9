//! The allocator worker: splits each paid product order across warehouses (fewest shipments,
//! then nearest to the shipping address, spilling over), moves the stock from the SKUs' sold
//! lines onto those warehouses, records the shipments on the order and sends each warehouse
//! its sub-order on its own topic.
//!
//! The stock moves come first, each once-only with the takes it made kept beside the stock
//! row; then the order turns `allocated` by compare-and-set, only if it is still `paid`. If a
//! cancellation got there first, the allocator puts back what it took. A crash anywhere
//! replays the order, and the recorded takes make the replay decide exactly as before.
//!
//! Every decision (what to do with the order, the warehouses to draw from, the plan, what to
//! ask of each stock row, the order as recorded, the sub-orders) is in
//! `mercato_core::domain::orders::allocate` and `domain::commerce`; this module loads and
//! writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mercato_core::bus::Record;
use mercato_core::clock::now_ms;
use mercato_core::codec::decode;
use mercato_core::domain::commands::AllocateOrder;
use mercato_core::domain::commerce::allocation::plan;
use mercato_core::domain::commerce::{Goods, WarehouseRecord};
use mercato_core::domain::orders::allocate::{self, Moved, Next, Takes};
use mercato_core::domain::orders::{Order, OrderStatus};
use mercato_core::names::topics;
use mercato_core::repo::orders::{self, load_order, update_order};
use mercato_core::repo::stock::{change_stock, load_stock};
use mercato_core::repo::{warehouses, RepoResult};
use mercato_core::store::Store;
use parking_lot::Mutex;

use crate::runtime::{BatchHandler, Emit};

/// How stale the list of warehouses (names and places) may be.
const WAREHOUSES_MAX_AGE: Duration = Duration::from_secs(2);

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
        let g = match (allocate::next(&order), order.goods.as_deref()) {
            (Next::Allocate, Some(g)) => g,
            (Next::Resend, _) => return Ok(sub_orders(&order)),
            (Next::PutBack, Some(g)) => {
                self.put_back(&order, g).await?;
                return Ok(Vec::new());
            }
            _ => return Ok(Vec::new()),
        };
        let warehouses = self.warehouses().await?;
        let mut levels = Vec::with_capacity(g.lines.len());
        for line in &g.lines {
            if let Some(level) = load_stock(&*self.store, &line.sku).await? {
                levels.push((line.sku.clone(), level.value));
            }
        }
        let ship_to = g.shipping.as_ref().and_then(|a| a.point());
        let sources = allocate::sources(&warehouses, &levels, ship_to);
        let planned = plan(&allocate::lines(g), &sources);
        if !planned.shortfall.is_empty() {
            return self.flag(&order, planned.shortfall).await;
        }
        let nearest = allocate::nearest_first(&sources);
        // Move the stock, SKU by SKU, keeping what each move took.
        let mut moved = Moved::default();
        for line in &g.lines {
            let wished = allocate::wished(&planned, &line.sku);
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
            moved.add(&line.sku, takes, missing);
        }
        if !moved.short.is_empty() {
            orders::flag(&*self.store, order_id).await?;
        }
        let now = now_ms();
        let recorded = update_order(&*self.store, order_id, |o| {
            Ok::<bool, ()>(allocate::record(o, &moved, now))
        })
        .await?;
        match recorded {
            Some(Ok(o)) if o.status == OrderStatus::Allocated => {
                if moved.short.is_empty() && !g.shortfall.is_empty() {
                    // Flagged by an earlier attempt; supplied in full now.
                    orders::unflag(&*self.store, order_id).await?;
                }
                let emits = sub_orders(&o);
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
            Ok::<bool, ()>(allocate::note_shortfall(o, &shortfall))
        })
        .await?;
        Ok(Vec::new())
    }
}

/// Each warehouse's sub-order, on its own topic.
fn sub_orders(order: &Order) -> Vec<Emit> {
    allocate::sub_orders(order)
        .into_iter()
        .map(|(topic, message)| Emit::to(topic, order.id.clone(), &message))
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
