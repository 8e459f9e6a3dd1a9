//! Publishing an Inventory's products to the ingest topic.
//!
//! The publisher reads the source as a stream (a million products never sit in memory as
//! JSON), keys each record by its SKU so one SKU's records stay in order, flags a SKU given twice
//! in one source, and, once every record is sent, sends removals for the SKUs the previous
//! declaration listed and this one does not. Its progress is kept in the inventory's row, so a
//! status (and `mercato apply`) can follow it.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mercato_core::bus::{Bus, KeyedRecords};
use mercato_core::clock::now_ms;
use mercato_core::codec::encode;
use mercato_core::domain::catalog::{
    peek_sku, IngestRecord, InventoryRecord, Origin, MAX_RECORD_BYTES,
};
use mercato_core::names::topics;
use mercato_core::repo::{catalog, RepoError};
use mercato_core::store::Store;
use mercato_crds::{InventorySpec, SourceFormat};
use sha2::{Digest, Sha256};

use crate::sources::{io, Source, SourceError};

const SEND_BATCH: usize = 2_000;
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// A JSON-array source is parsed whole; beyond this size, NDJSON is the format to use.
const MAX_JSON_ARRAY_BYTES: u64 = 512 * 1024 * 1024;

/// A digest of the declaration and the bytes of its source: equal digests mean nothing to do.
pub fn digest(spec_json: &str, source: Option<&Source>) -> Result<String, SourceError> {
    let mut hasher = Sha256::new();
    hasher.update(spec_json.as_bytes());
    if let Some(source) = source {
        let path = source.path();
        let mut file = source.open()?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(|cause| io(path, cause))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// One record of a source, as given.
struct RawRecord {
    position: u64,
    raw: Vec<u8>,
}

/// Publishes one generation of an inventory; see the module comment.
pub struct Publisher<'a> {
    pub bus: &'a dyn Bus,
    pub store: &'a dyn Store,
    pub record: InventoryRecord,
    pub spec: InventorySpec,
    /// The source file, checked against the policy, if the declaration names one.
    pub source: Option<Source>,
}

impl Publisher<'_> {
    pub async fn run(mut self) -> Result<InventoryRecord, RepoError> {
        let started = Instant::now();
        let outcome = self.publish_all().await;
        match outcome {
            Ok(()) => {
                self.record.publish.finished_ms = Some(now_ms());
                tracing::info!(
                    inventory = self.record.name,
                    generation = self.record.generation,
                    records = self.record.publish.published,
                    removals = self.record.publish.removals,
                    seconds = started.elapsed().as_secs_f64(),
                    "inventory published"
                );
            }
            Err(PublishError::Source(e)) => {
                tracing::warn!(inventory = self.record.name, error = %e, "inventory source unreadable");
                self.record.publish.error = Some(e.to_string());
            }
            Err(PublishError::Repo(e)) => return Err(e),
        }
        self.save().await?;
        Ok(self.record)
    }

    async fn save(&self) -> Result<(), RepoError> {
        catalog::save_inventory(self.store, &self.record).await
    }

    async fn publish_all(&mut self) -> Result<(), PublishError> {
        let mut skus: HashMap<String, u64> = HashMap::new();
        let mut batch: KeyedRecords = Vec::with_capacity(SEND_BATCH);
        let mut last_progress = Instant::now();
        let inline: Vec<RawRecord> = self
            .spec
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| RawRecord {
                position: i as u64 + 1,
                raw: serde_json::to_vec(p).unwrap_or_default(),
            })
            .collect();
        for r in inline {
            self.push(&mut batch, &mut skus, "inline", r).await?;
        }
        if let Some(source) = self.source.clone() {
            let label = self
                .spec
                .source
                .as_ref()
                .map_or_else(|| source.label(), |s| s.location().to_owned());
            let format = self
                .spec
                .source
                .as_ref()
                .map_or(SourceFormat::Ndjson, |s| s.format());
            let mut records = read_source(&source, format)?;
            while let Some(r) = records.next_record()? {
                self.push(&mut batch, &mut skus, &label, r).await?;
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = Instant::now();
                    self.save().await?;
                    tracing::info!(
                        inventory = self.record.name,
                        published = self.record.publish.published,
                        "publishing inventory"
                    );
                }
            }
        }
        self.flush(&mut batch).await?;
        self.finish(skus.into_keys().collect()).await
    }

    async fn push(
        &mut self,
        batch: &mut KeyedRecords,
        skus: &mut HashMap<String, u64>,
        source: &str,
        r: RawRecord,
    ) -> Result<(), PublishError> {
        let sku = peek_sku(&r.raw);
        let mut duplicate_of = None;
        let key = match &sku {
            Some(s) => {
                match skus.get(s) {
                    Some(first) => duplicate_of = Some(*first),
                    None => {
                        skus.insert(s.clone(), r.position);
                    }
                }
                s.clone()
            }
            None => format!("{}#{}", self.record.name, r.position),
        };
        let record = IngestRecord::Product {
            origin: Origin {
                inventory: self.record.name.clone(),
                generation: self.record.generation,
                source: source.to_owned(),
                position: r.position,
            },
            seller: self.record.seller.clone(),
            currency: self.spec.currency.clone(),
            raw: r.raw,
            duplicate_of,
        };
        batch.push((key.into_bytes(), encode(&record)));
        self.record.publish.published += 1;
        if batch.len() >= SEND_BATCH {
            self.flush(batch).await?;
        }
        Ok(())
    }

    async fn flush(&self, batch: &mut KeyedRecords) -> Result<(), PublishError> {
        if !batch.is_empty() {
            self.bus
                .send_batch(topics::INGEST, std::mem::take(batch))
                .await
                .map_err(RepoError::from)?;
        }
        Ok(())
    }

    /// Sends removals for SKUs the previous generation listed, then records this one's list.
    async fn finish(&mut self, listed: BTreeSet<String>) -> Result<(), PublishError> {
        let name = self.record.name.clone();
        let previous = catalog::listed_skus(self.store, &name).await?;
        let mut batch: KeyedRecords = Vec::with_capacity(SEND_BATCH);
        for sku in previous.difference(&listed) {
            let record = IngestRecord::Remove {
                inventory: name.clone(),
                generation: self.record.generation,
                sku: sku.clone(),
            };
            batch.push((sku.clone().into_bytes(), encode(&record)));
            self.record.publish.removals += 1;
            if batch.len() >= SEND_BATCH {
                self.flush(&mut batch).await?;
            }
        }
        self.flush(&mut batch).await?;
        catalog::save_listed_skus(self.store, &name, self.record.generation, &listed).await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Records of a source file, one at a time.
enum SourceRecords {
    Lines {
        reader: BufReader<std::fs::File>,
        line: u64,
        path: PathBuf,
    },
    Items(std::vec::IntoIter<RawRecord>),
}

fn read_source(source: &Source, format: SourceFormat) -> Result<SourceRecords, SourceError> {
    let path = source.path();
    let file = source.open()?;
    match format {
        SourceFormat::Ndjson => Ok(SourceRecords::Lines {
            reader: BufReader::with_capacity(1 << 20, file),
            line: 0,
            path: path.to_owned(),
        }),
        SourceFormat::Json => {
            let size = file.metadata().map_err(|e| io(path, e))?.len();
            if size > MAX_JSON_ARRAY_BYTES {
                return Err(SourceError::Invalid(format!(
                    "{}: a JSON array of {size} bytes; sources this large must be NDJSON",
                    source.label()
                )));
            }
            let mut text = Vec::with_capacity(size as usize);
            BufReader::new(file)
                .read_to_end(&mut text)
                .map_err(|e| io(path, e))?;
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(&text).map_err(|e| {
                    SourceError::Invalid(format!(
                        "{}: not a JSON array of products: {e}",
                        source.label()
                    ))
                })?;
            let records: Vec<RawRecord> = items
                .into_iter()
                .enumerate()
                .map(|(i, raw)| RawRecord {
                    position: i as u64 + 1,
                    raw: raw.get().as_bytes().to_vec(),
                })
                .collect();
            Ok(SourceRecords::Items(records.into_iter()))
        }
    }
}

impl SourceRecords {
    /// The next record; blank lines are not records.
    fn next_record(&mut self) -> Result<Option<RawRecord>, SourceError> {
        match self {
            SourceRecords::Items(items) => Ok(items.next()),
            SourceRecords::Lines { reader, line, path } => loop {
                let mut buf = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| io(path, e))?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                if buf.len() > MAX_RECORD_BYTES {
                    // Keep the head: the worker refuses it as too long, and the excerpt shows it.
                    buf.truncate(MAX_RECORD_BYTES);
                }
                return Ok(Some(RawRecord {
                    position: *line,
                    raw: buf,
                }));
            },
        }
    }
}
