//! Applying a Warehouse: its counts go into each SKU's stock row (so the aggregated stock of
//! a SKU is always the sum over its warehouses), SKUs it no longer lists are withdrawn, and
//! its sub-order topic exists.

use futures::stream::{self, StreamExt, TryStreamExt};
use mercato_core::clock::now_ms;
use mercato_core::domain::commerce::{DeclaredStock, WarehouseRecord};
use mercato_core::repo::stock::{alert_if_low, change_stock};
use mercato_core::repo::{warehouses, RepoResult};
use mercato_core::Ports;
use mercato_crds::WarehouseSpec;

/// Stock rows changed at once while applying: enough to hide store latency, few enough not
/// to starve shoppers of the store.
const CONCURRENCY: usize = 32;

pub fn record(name: &str, spec: &WarehouseSpec) -> WarehouseRecord {
    WarehouseRecord {
        name: name.to_owned(),
        lat: spec.location.lat,
        lon: spec.location.lon,
        city: spec.location.city.clone(),
        skus: spec.stock.len() as u64,
        units: spec.units(),
        // Serializing a validated spec to JSON cannot fail: it has only plain fields.
        spec_json: serde_json::to_string(spec).unwrap_or_default(),
        generation: 0,
        applied_ms: 0,
    }
}

/// Sets this warehouse's counts of each SKU (`Some((physical, available))`) or withdraws the
/// SKU from it (`None`), alerting sellers whose stock fell to their threshold.
async fn take_stock(
    ports: &Ports,
    warehouse: &str,
    takes: Vec<(String, Option<(u64, u64)>)>,
) -> RepoResult<()> {
    stream::iter(takes)
        .map(|(sku, counts)| {
            // Owned items and ports: the futures must be `Send` for any lifetime.
            let (warehouse, ports) = (warehouse.to_owned(), ports.clone());
            async move {
                let change = change_stock(&*ports.store, &sku, None, |level, _| {
                    let changed = match counts {
                        Some((physical, available)) => {
                            level.declare(&warehouse, physical, available)
                        }
                        None => level.withdraw(&warehouse),
                    };
                    (changed, ())
                })
                .await?;
                alert_if_low(
                    &*ports.store,
                    &*ports.bus,
                    &sku,
                    change.before,
                    change.after,
                )
                .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_alert| async { Ok(()) })
        .await
}

/// Applies the declaration; returns `created`, `configured` or `unchanged`.
pub async fn apply(
    ports: &Ports,
    mut record: WarehouseRecord,
    spec: &WarehouseSpec,
) -> RepoResult<&'static str> {
    let store = &*ports.store;
    let current = warehouses::load(store, &record.name).await?;
    let action = match &current {
        Some(c) if c.value.spec_json == record.spec_json => return Ok("unchanged"),
        Some(_) => "configured",
        None => "created",
    };
    let name = record.name.clone();
    let listed: std::collections::HashSet<&str> =
        spec.stock.iter().map(|e| e.sku.as_str()).collect();
    let withdrawn: Vec<String> = warehouses::declared_skus(store, &name)
        .await?
        .into_iter()
        .filter(|sku| !listed.contains(sku.as_str()))
        .collect();
    let takes = spec
        .stock
        .iter()
        .map(|e| {
            let counts = Some((e.physical, e.available()));
            (e.sku.clone(), counts)
        })
        .chain(withdrawn.iter().map(|sku| (sku.clone(), None)));
    take_stock(ports, &name, takes.collect()).await?;
    record.generation = current.map_or(1, |c| c.value.generation + 1);
    record.applied_ms = now_ms();
    let declared = spec.stock.iter().map(|e| {
        let stock = DeclaredStock {
            physical: e.physical,
            available: e.available(),
        };
        (e.sku.clone(), stock)
    });
    warehouses::save(store, &record, declared, withdrawn).await?;
    Ok(action)
}
