//! The ingest worker: validates and normalizes declared content, writes good products to the
//! store, emits change facts to the catalog topic, and sends every bad record to the
//! dead-letter topic (and the `rejected_records` table) with its reason and position.
//!
//! Exactly-once counts under at-least-once delivery: facts and dead letters are sent *before*
//! the rows they describe are written, so a replay after a crash either finds the rows absent
//! (and sends again: the index and the rejected table are idempotent) or finds them written (and
//! the facts already sent). Each partition counts only records past the offset its counts row
//! has reached.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use mercato_core::bus::{KeyedRecords, Record};
use mercato_core::clock::now_ms;
use mercato_core::codec::{decode, encode};
use mercato_core::domain::catalog::{
    excerpt, normalize_product, CatalogFact, IngestCounts, IngestRecord, NormalizeContext, Origin,
    Product, RecordError, RejectedRecord, REJECTED_EXCERPT,
};
use mercato_core::names::topics;
use mercato_core::repo::{catalog, RepoResult, Versioned};
use mercato_core::Ports;
use parking_lot::Mutex;

use crate::runtime::{BatchHandler, DeadLetter, Emit};

const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Concurrent reads of current product rows per batch (network engines need the overlap).
const READ_CONCURRENCY: usize = 64;

pub struct IngestWorker {
    ports: Ports,
    progress: Mutex<HashMap<String, Progress>>,
}

/// Per-inventory progress for the log: what this process ingested since the last line.
struct Progress {
    since: Instant,
    accepted: u64,
    rejected: u64,
}

/// What to do with one record.
enum Decision {
    Skip,
    Write(Product),
    Unchanged,
    Reject(RejectedRecord),
    Remove { sku: String },
}

/// The effects of a batch, gathered before any is applied.
#[derive(Default)]
struct Effects {
    facts: KeyedRecords,
    letters: KeyedRecords,
    /// SKUs written or removed: their final state is in the batch's view of the rows.
    touched: Vec<String>,
    rejected: Vec<RejectedRecord>,
    runtime_emits: Vec<Emit>,
    /// Per inventory: (accepted, rejected) in this batch, for the progress log.
    tally: HashMap<String, (u64, u64)>,
}

impl IngestWorker {
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            progress: Mutex::new(HashMap::new()),
        }
    }

    /// The current rows of every SKU the batch touches, read concurrently.
    async fn current_rows(
        &self,
        decoded: &[Decoded],
    ) -> RepoResult<HashMap<String, Option<Versioned<Product>>>> {
        let mut skus: Vec<String> = decoded
            .iter()
            .filter_map(|d| match (&d.record, &d.normalized) {
                (IngestRecord::Product { .. }, Some(Ok(p))) => Some(p.sku.clone()),
                (IngestRecord::Remove { sku, .. }, _) => Some(sku.clone()),
                _ => None,
            })
            .collect();
        skus.sort_unstable();
        skus.dedup();
        let store = &*self.ports.store;
        let rows: Vec<RepoResult<(String, Option<Versioned<Product>>)>> = stream::iter(skus)
            .map(|sku| async move {
                let row = catalog::load_product(store, &sku).await?;
                Ok((sku, row))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        rows.into_iter().collect()
    }

    async fn load_counts(&self, inventory: &str, partition: u32) -> RepoResult<IngestCounts> {
        Ok(
            catalog::load_counts(&*self.ports.store, inventory, partition)
                .await?
                .unwrap_or_default(),
        )
    }

    fn log_progress(&self, inventory: &str, accepted: u64, rejected: u64) {
        let mut all = self.progress.lock();
        let p = all.entry(inventory.to_owned()).or_insert_with(|| Progress {
            since: Instant::now(),
            accepted: 0,
            rejected: 0,
        });
        p.accepted += accepted;
        p.rejected += rejected;
        let elapsed = p.since.elapsed();
        if elapsed >= PROGRESS_EVERY {
            let rate = (p.accepted + p.rejected) as f64 / elapsed.as_secs_f64();
            tracing::info!(
                inventory,
                accepted = p.accepted,
                rejected = p.rejected,
                records_per_s = rate.round() as u64,
                "ingest progress"
            );
            p.since = Instant::now();
            p.accepted = 0;
            p.rejected = 0;
        }
    }
}

/// A record of the batch, decoded, and (a product) normalized once.
struct Decoded {
    index: usize,
    record: IngestRecord,
    normalized: Option<Result<Product, RecordError>>,
}

fn normalize(record: &IngestRecord) -> Option<Result<Product, RecordError>> {
    match record {
        IngestRecord::Product {
            origin,
            seller,
            currency,
            raw,
            ..
        } => Some(normalize_product(
            raw,
            NormalizeContext {
                seller,
                inventory: &origin.inventory,
                currency: currency.as_deref(),
            },
        )),
        _ => None,
    }
}

fn decide_product(
    origin: &Origin,
    raw: &[u8],
    normalized: Result<Product, RecordError>,
    duplicate_of: Option<u64>,
    rows: &HashMap<String, Option<Versioned<Product>>>,
) -> Decision {
    let reject = |code: &str, message: String| {
        Decision::Reject(RejectedRecord {
            origin: origin.clone(),
            code: code.to_owned(),
            message,
            excerpt: excerpt(raw, REJECTED_EXCERPT),
            at_ms: now_ms(),
        })
    };
    let product = match normalized {
        Ok(p) => p,
        Err(e) => return reject(e.code, e.message),
    };
    if let Some(first) = duplicate_of {
        return reject(
            "duplicate_sku",
            format!(
                "sku {} is also at position {first} of the same source",
                product.sku
            ),
        );
    }
    match rows.get(&product.sku).and_then(Option::as_ref) {
        Some(existing) if existing.value.inventory != product.inventory => reject(
            "sku_taken",
            format!(
                "sku {} belongs to inventory {} (seller {})",
                product.sku, existing.value.inventory, existing.value.seller
            ),
        ),
        Some(existing) if existing.value == product => Decision::Unchanged,
        _ => Decision::Write(product),
    }
}

#[async_trait]
impl BatchHandler for IngestWorker {
    async fn handle(&self, topic: &str, records: &[Record]) -> RepoResult<Vec<Emit>> {
        let Some(partition) = records.first().map(|r| r.partition) else {
            return Ok(Vec::new());
        };
        let mut effects = Effects::default();
        let mut decoded = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match decode::<IngestRecord>(&record.value) {
                Ok(r) => decoded.push(Decoded {
                    index: i,
                    normalized: normalize(&r),
                    record: r,
                }),
                Err(e) => {
                    effects
                        .runtime_emits
                        .push(Emit::dead_letter(record, topic, &e.to_string()))
                }
            }
        }
        let mut rows = self.current_rows(&decoded).await?;
        let mut counts: HashMap<String, IngestCounts> = HashMap::new();

        for Decoded {
            index: i,
            record,
            normalized,
        } in decoded
        {
            let offset = records[i].offset;
            let (inventory, generation) = match &record {
                IngestRecord::Product { origin, .. } => {
                    (origin.inventory.clone(), origin.generation)
                }
                IngestRecord::Remove {
                    inventory,
                    generation,
                    ..
                } => (inventory.clone(), *generation),
                IngestRecord::Event(doc) => {
                    let fact = CatalogFact::Upsert(doc.clone());
                    effects.facts.push((fact.key().into_bytes(), encode(&fact)));
                    continue;
                }
            };
            if !counts.contains_key(&inventory) {
                let loaded = self.load_counts(&inventory, partition).await?;
                counts.insert(inventory.clone(), loaded);
            }
            let Some(c) = counts.get_mut(&inventory) else {
                continue;
            };
            if generation < c.generation {
                continue; // a newer declaration of this inventory supersedes the record
            }
            if generation > c.generation {
                *c = IngestCounts {
                    generation,
                    through_offset: c.through_offset,
                    ..IngestCounts::default()
                };
            }
            let fresh = c.through_offset.is_none_or(|t| offset > t);
            let decision = match &record {
                IngestRecord::Product {
                    origin,
                    raw,
                    duplicate_of,
                    ..
                } => match normalized {
                    Some(n) => decide_product(origin, raw, n, *duplicate_of, &rows),
                    None => Decision::Skip,
                },
                IngestRecord::Remove { sku, .. } => {
                    // Counted whether or not a row was left to delete: the status compares it
                    // with the removals published.
                    c.removed += u64::from(fresh);
                    match rows.get(sku).and_then(Option::as_ref) {
                        Some(row) if row.value.inventory == inventory => {
                            Decision::Remove { sku: sku.clone() }
                        }
                        _ => Decision::Skip,
                    }
                }
                IngestRecord::Event(_) => Decision::Skip,
            };
            let tally = effects.tally.entry(inventory.clone()).or_default();
            match decision {
                Decision::Skip => {}
                Decision::Unchanged => {
                    c.unchanged += u64::from(fresh);
                    tally.0 += 1;
                }
                Decision::Write(product) => {
                    c.written += u64::from(fresh);
                    tally.0 += 1;
                    let fact = CatalogFact::Upsert(Box::new(product.catalog_doc()));
                    effects.facts.push((fact.key().into_bytes(), encode(&fact)));
                    // Later records of the batch see this one (an update right after a create).
                    effects.touched.push(product.sku.clone());
                    rows.insert(
                        product.sku.clone(),
                        Some(Versioned {
                            value: product,
                            version: 0,
                            expires_at_ms: None,
                        }),
                    );
                }
                Decision::Reject(rejected) => {
                    c.rejected += u64::from(fresh);
                    tally.1 += 1;
                    let letter = DeadLetter {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        reason: format!(
                            "{}: {} ({} generation {}, {} position {})",
                            rejected.code,
                            rejected.message,
                            rejected.origin.inventory,
                            rejected.origin.generation,
                            rejected.origin.source,
                            rejected.origin.position
                        ),
                        key: records[i].key.clone(),
                        value: records[i].value.clone(),
                    };
                    effects
                        .letters
                        .push((records[i].key.clone(), encode(&letter)));
                    effects.rejected.push(rejected);
                }
                Decision::Remove { sku } => {
                    let fact = CatalogFact::Remove {
                        kind: mercato_core::domain::catalog::DocKind::Product,
                        id: sku.clone(),
                    };
                    effects.facts.push((fact.key().into_bytes(), encode(&fact)));
                    rows.insert(sku.clone(), None);
                    effects.touched.push(sku);
                }
            }
            c.through_offset = Some(c.through_offset.map_or(offset, |t| t.max(offset)));
        }

        // Facts and letters first: see the module comment for why this order is exactly-once.
        let bus = &self.ports.bus;
        if !effects.facts.is_empty() {
            bus.send_batch(topics::CATALOG, std::mem::take(&mut effects.facts))
                .await?;
        }
        if !effects.letters.is_empty() {
            bus.send_batch(topics::DEAD_LETTERS, std::mem::take(&mut effects.letters))
                .await?;
        }
        self.write_effects(&effects, &rows, &counts, partition)
            .await?;
        for (inventory, (accepted, rejected)) in &effects.tally {
            self.log_progress(inventory, *accepted, *rejected);
        }
        Ok(effects.runtime_emits)
    }
}

impl IngestWorker {
    async fn write_effects(
        &self,
        effects: &Effects,
        rows: &HashMap<String, Option<Versioned<Product>>>,
        counts: &HashMap<String, IngestCounts>,
        partition: u32,
    ) -> RepoResult<()> {
        let store = &*self.ports.store;
        // A SKU may change twice in one batch (created, then removed): only its final state is
        // written, so different SKUs can go concurrently without reordering one SKU's writes.
        let mut touched: Vec<&String> = effects.touched.iter().collect();
        touched.sort_unstable();
        touched.dedup();
        // One bulk write per table: a batch of products is one round trip (and, embedded, one
        // group commit), not one per product.
        let products = touched.into_iter().map(|sku| {
            let product = rows.get(sku).and_then(Option::as_ref).map(|p| &p.value);
            (sku.as_str(), product)
        });
        let (products, rejected) = futures::join!(
            catalog::write_products(store, products),
            catalog::write_rejected(store, &effects.rejected)
        );
        products?;
        rejected?;
        // Counts last: once they cover an offset, a replay of it is not counted again.
        for (inventory, c) in counts {
            catalog::save_counts(store, inventory, partition, c).await?;
        }
        Ok(())
    }
}
