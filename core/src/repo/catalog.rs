//! The catalog's rows, and the only place that knows their keys:
//! - `products`: one per SKU, as the catalog sells it;
//! - `inventories`: each inventory's declaration and how its publishing stands (partition
//!   `all`, one row per inventory);
//! - `inventory_skus`: the SKUs an inventory's last generation listed, in sorted chunks, so
//!   the next generation can remove the ones it no longer lists;
//! - `rejected`: ingest records refused, per inventory, by generation, source and position;
//! - `ingest_counts`: what each ingest partition did with an inventory's records.
//!
//! Writers: the ingest worker writes products, rejected records and counts; the local
//! reconciler (the operator, on a cluster) writes inventory records and SKU lists when it
//! applies an Inventory. Everyone else reads.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{self as repo, decode_row, RepoError, RepoResult, Versioned};
use crate::codec::encode;
use crate::domain::catalog::{
    IngestCounts, InventoryRecord, InventoryStatus, Origin, Product, RejectedRecord,
};
use crate::names::tables;
use crate::store::{scan_all, PartitionWrite, Store, Write};

/// The single partition of the inventories table (admins list all of them).
const INVENTORIES_PARTITION: &str = "all";
/// Rejected records are kept this long for admins to look at.
const REJECTED_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// SKUs per row of an inventory's SKU list.
const SKU_CHUNK: usize = 10_000;

pub async fn load_product(store: &dyn Store, sku: &str) -> RepoResult<Option<Versioned<Product>>> {
    repo::get(store, tables::PRODUCTS, sku, "").await
}

/// Writes each SKU's product as it now is (`None`: no longer sold), in one group commit.
pub async fn write_products<'a>(
    store: &dyn Store,
    products: impl Iterator<Item = (&'a str, Option<&'a Product>)>,
) -> RepoResult<()> {
    let writes = products
        .map(|(sku, product)| PartitionWrite {
            partition: sku.to_owned(),
            write: match product {
                Some(p) => Write::Put {
                    clustering: String::new(),
                    value: encode(p),
                    ttl: None,
                },
                None => Write::Delete {
                    clustering: String::new(),
                },
            },
        })
        .collect();
    store.write_many(tables::PRODUCTS, writes).await?;
    Ok(())
}

/// Keeps refused ingest records for admins, in one group commit.
pub async fn write_rejected(store: &dyn Store, records: &[RejectedRecord]) -> RepoResult<()> {
    let writes = records
        .iter()
        .map(|r| PartitionWrite {
            partition: r.origin.inventory.clone(),
            write: Write::Put {
                clustering: rejected_key(&r.origin),
                value: encode(r),
                ttl: Some(REJECTED_TTL),
            },
        })
        .collect();
    store.write_many(tables::REJECTED, writes).await?;
    Ok(())
}

/// A page of one generation of an inventory's rejected records, after `cursor`, and where
/// the next page starts (`None` at the generation's end).
pub async fn rejected_page(
    store: &dyn Store,
    inventory: &str,
    generation: u64,
    cursor: Option<&str>,
    limit: usize,
) -> RepoResult<(Vec<RejectedRecord>, Option<String>)> {
    let prefix = rejected_prefix(generation);
    let after = cursor.map_or_else(|| prefix.clone(), str::to_owned);
    let page = store
        .scan(tables::REJECTED, inventory, Some(&after), limit)
        .await?;
    let mut records = Vec::with_capacity(page.rows.len());
    let mut last = None;
    for row in page.rows {
        if !row.clustering.starts_with(&prefix) {
            last = None;
            break;
        }
        last = Some(row.clustering.clone());
        records.push(decode_row::<RejectedRecord>(tables::REJECTED, row)?.value);
    }
    let next = if page.next.is_some() && records.len() == limit {
        last
    } else {
        None
    };
    Ok((records, next))
}

/// What ingest partition `partition` has counted of an inventory's records so far.
pub async fn load_counts(
    store: &dyn Store,
    inventory: &str,
    partition: u32,
) -> RepoResult<Option<IngestCounts>> {
    Ok(repo::get::<IngestCounts>(
        store,
        tables::INGEST_COUNTS,
        inventory,
        &counts_key(partition),
    )
    .await?
    .map(|v| v.value))
}

pub async fn save_counts(
    store: &dyn Store,
    inventory: &str,
    partition: u32,
    counts: &IngestCounts,
) -> RepoResult<()> {
    repo::put(
        store,
        tables::INGEST_COUNTS,
        inventory,
        &counts_key(partition),
        counts,
        None,
    )
    .await?;
    Ok(())
}

/// What each ingest partition did with an inventory's records.
pub async fn ingest_counts(store: &dyn Store, inventory: &str) -> RepoResult<Vec<IngestCounts>> {
    // One row per ingest partition: far fewer than a page.
    let page = store
        .scan(tables::INGEST_COUNTS, inventory, None, 1024)
        .await?;
    page.rows
        .into_iter()
        .map(|row| Ok(decode_row(tables::INGEST_COUNTS, row)?.value))
        .collect()
}

pub async fn load_inventory(store: &dyn Store, name: &str) -> RepoResult<Option<InventoryRecord>> {
    Ok(
        repo::get::<InventoryRecord>(store, tables::INVENTORIES, INVENTORIES_PARTITION, name)
            .await?
            .map(|v| v.value),
    )
}

pub async fn save_inventory(store: &dyn Store, record: &InventoryRecord) -> RepoResult<()> {
    repo::put(
        store,
        tables::INVENTORIES,
        INVENTORIES_PARTITION,
        &record.name,
        record,
        None,
    )
    .await?;
    Ok(())
}

/// A page of inventories by name after `cursor`, and the next page's cursor.
pub async fn inventory_page(
    store: &dyn Store,
    cursor: Option<&str>,
    limit: usize,
) -> RepoResult<(Vec<InventoryRecord>, Option<String>)> {
    repo::page(
        store,
        tables::INVENTORIES,
        INVENTORIES_PARTITION,
        cursor,
        limit,
        |row| {
            Ok(Some(
                decode_row::<InventoryRecord>(tables::INVENTORIES, row)?.value,
            ))
        },
    )
    .await
}

/// An inventory's latest declaration and how its ingest stands, or `None` if it is unknown.
pub async fn inventory_status(
    store: &dyn Store,
    name: &str,
) -> RepoResult<Option<InventoryStatus>> {
    let Some(record) = load_inventory(store, name).await? else {
        return Ok(None);
    };
    let counts = ingest_counts(store, name).await?;
    Ok(Some(InventoryStatus::new(&record, &counts)))
}

/// The SKUs one generation of an inventory lists, in sorted chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SkuChunk {
    generation: u64,
    skus: Vec<String>,
}

/// The SKUs an inventory's last recorded generation listed.
pub async fn listed_skus(store: &dyn Store, inventory: &str) -> RepoResult<BTreeSet<String>> {
    let mut listed = BTreeSet::new();
    for row in scan_all(store, tables::INVENTORY_SKUS, inventory, 64).await? {
        listed.extend(
            decode_row::<SkuChunk>(tables::INVENTORY_SKUS, row)?
                .value
                .skus,
        );
    }
    Ok(listed)
}

/// Records the SKUs `generation` of an inventory lists, replacing the previous list.
pub async fn save_listed_skus(
    store: &dyn Store,
    inventory: &str,
    generation: u64,
    listed: &BTreeSet<String>,
) -> RepoResult<()> {
    let old_chunks: Vec<String> = scan_all(store, tables::INVENTORY_SKUS, inventory, 64)
        .await?
        .into_iter()
        .map(|row| row.clustering)
        .collect();
    let listed: Vec<String> = listed.iter().cloned().collect();
    let mut written = 0;
    for (i, skus) in listed.chunks(SKU_CHUNK).enumerate() {
        let chunk = SkuChunk {
            generation,
            skus: skus.to_vec(),
        };
        repo::put(
            store,
            tables::INVENTORY_SKUS,
            inventory,
            &format!("{i:06}"),
            &chunk,
            None,
        )
        .await?;
        written += 1;
    }
    for stale in old_chunks.iter().skip(written) {
        store
            .delete(tables::INVENTORY_SKUS, inventory, stale)
            .await
            .map_err(RepoError::from)?;
    }
    Ok(())
}

/// Clustering key of a rejected record: listed by generation, then source, then position (an
/// inline record and line 1 of the file are both at position 1).
fn rejected_key(origin: &Origin) -> String {
    format!(
        "{}{}/{:012}",
        rejected_prefix(origin.generation),
        origin.source,
        origin.position
    )
}

/// The clustering prefix of one generation's rejected records.
fn rejected_prefix(generation: u64) -> String {
    format!("{generation:010}/")
}

/// Clustering key of an ingest partition's counts row.
fn counts_key(partition: u32) -> String {
    format!("p{partition:04}")
}

crate::first_layout!(SkuChunk);
