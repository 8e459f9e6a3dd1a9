//! The rows of warehouses, and the only place that knows their keys: `warehouses` (partition
//! `all`, one row per warehouse: where it is and what it declared) and `warehouse_skus` (per
//! warehouse, the counts it declared of each SKU, so the next declaration knows what it
//! withdrew). The local reconciler (the operator, on a cluster) writes both when it applies a
//! Warehouse; the allocator reads the list.

use crate::codec::encode;
use crate::domain::commerce::{DeclaredStock, WarehouseRecord};
use crate::names::tables;
use crate::store::{scan_all, PartitionWrite, Store, Write};

use super::{self as repo, decode_row, RepoResult, Versioned};

/// The single partition of the warehouse list.
const PARTITION: &str = "all";

pub async fn load(store: &dyn Store, name: &str) -> RepoResult<Option<Versioned<WarehouseRecord>>> {
    repo::get(store, tables::WAREHOUSES, PARTITION, name).await
}

/// Every warehouse (an installation has a handful to hundreds).
pub async fn all(store: &dyn Store) -> RepoResult<Vec<WarehouseRecord>> {
    scan_all(store, tables::WAREHOUSES, PARTITION, 500)
        .await?
        .into_iter()
        .map(|row| decode_row::<WarehouseRecord>(tables::WAREHOUSES, row).map(|r| r.value))
        .collect()
}

/// The SKUs a warehouse declared last time.
pub async fn declared_skus(store: &dyn Store, warehouse: &str) -> RepoResult<Vec<String>> {
    Ok(scan_all(store, tables::WAREHOUSE_SKUS, warehouse, 1_000)
        .await?
        .into_iter()
        .map(|r| r.clustering)
        .collect())
}

/// Records a warehouse's declaration: its counts per SKU, the SKUs it `withdrew`, then its
/// row (last, so a crash before it applies the declaration again).
pub async fn save(
    store: &dyn Store,
    record: &WarehouseRecord,
    declared: impl Iterator<Item = (String, DeclaredStock)>,
    withdrew: Vec<String>,
) -> RepoResult<()> {
    let partition = &record.name;
    let mut writes: Vec<PartitionWrite> = declared
        .map(|(sku, stock)| PartitionWrite {
            partition: partition.clone(),
            write: Write::Put {
                clustering: sku,
                value: encode(&stock),
                ttl: None,
            },
        })
        .collect();
    writes.extend(withdrew.into_iter().map(|sku| PartitionWrite {
        partition: partition.clone(),
        write: Write::Delete { clustering: sku },
    }));
    store.write_many(tables::WAREHOUSE_SKUS, writes).await?;
    repo::put(
        store,
        tables::WAREHOUSES,
        PARTITION,
        partition,
        record,
        None,
    )
    .await?;
    Ok(())
}
