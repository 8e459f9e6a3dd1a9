//! The catalog: products as stored, the records that travel from a declaration to the ingest
//! worker, the change facts the indexer consumes, and the bookkeeping that makes an ingest's
//! counts add up exactly.

mod normalize;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use normalize::{
    clean_text, is_sku, minor_digits, normalize_product, peek_sku, NormalizeContext, RecordError,
    MAX_RECORD_BYTES,
};

use crate::domain::Money;

/// Where a record came from, so a rejected one can be found and fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub inventory: String,
    pub generation: u64,
    /// `inline`, or the file's path as the manifest named it.
    pub source: String,
    /// The 1-based line (NDJSON) or array item (JSON) of the record in its source.
    pub position: u64,
}

/// A record on the ingest topic, keyed by SKU (or by origin when no SKU can be read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IngestRecord {
    /// One product exactly as the seller gave it: validation is the ingest worker's job.
    Product {
        origin: Origin,
        seller: String,
        /// The currency of prices given as plain numbers.
        currency: Option<String>,
        raw: Vec<u8>,
        /// Set when an earlier record of the same source has the same SKU.
        duplicate_of: Option<u64>,
    },
    /// A product the latest declaration of its inventory no longer lists.
    Remove {
        inventory: String,
        generation: u64,
        sku: String,
    },
    /// An event to catalogue (its seats are not catalog material).
    Event(Box<CatalogDoc>),
}

/// A product as stored: normalized, owned by one inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub seller: String,
    pub inventory: String,
    pub name: String,
    pub description: String,
    /// Lowercase path segments, outermost first: `["books", "science fiction"]`.
    pub category: Vec<String>,
    pub price: Money,
    pub attributes: BTreeMap<String, AttrValue>,
}

impl Product {
    pub fn category_path(&self) -> String {
        self.category.join("/")
    }

    pub fn catalog_doc(&self) -> CatalogDoc {
        let mut body = Vec::with_capacity(1 + self.attributes.len());
        if !self.description.is_empty() {
            body.push(self.description.clone());
        }
        for (key, value) in &self.attributes {
            if let AttrValue::Text(text) = value {
                body.push(format!("{key} {text}"));
            }
        }
        CatalogDoc {
            kind: DocKind::Product,
            id: self.sku.clone(),
            name: self.name.clone(),
            body: body.join("\n"),
            category: self.category.clone(),
            city: None,
            geo: None,
            price: Some(self.price.clone()),
            price_max: None,
            starts_at_ms: None,
            seller: Some(self.seller.clone()),
            venue: None,
        }
    }
}

/// An attribute value. A tagged enum, not JSON: rows are postcard, which needs a known shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl AttrValue {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AttrValue::Text(t) => serde_json::Value::String(t.clone()),
            AttrValue::Number(n) => serde_json::json!(n),
            AttrValue::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DocKind {
    Event,
    Product,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Event => "event",
            DocKind::Product => "product",
        }
    }

    pub fn parse(s: &str) -> Option<DocKind> {
        match s {
            "event" => Some(DocKind::Event),
            "product" => Some(DocKind::Product),
            _ => None,
        }
    }
}

/// What the search index holds for one event or product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogDoc {
    pub kind: DocKind,
    pub id: String,
    pub name: String,
    /// Searchable text besides the name: description, performers, attribute values.
    pub body: String,
    pub category: Vec<String>,
    pub city: Option<String>,
    /// (lat, lon) in degrees.
    pub geo: Option<(f64, f64)>,
    /// The price, or an event's cheapest tier.
    pub price: Option<Money>,
    /// An event's dearest tier, in the same currency.
    pub price_max: Option<i64>,
    pub starts_at_ms: Option<i64>,
    pub seller: Option<String>,
    pub venue: Option<String>,
}

/// A change fact on the catalog topic, keyed by `<kind>:<id>`; the index is their fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CatalogFact {
    Upsert(Box<CatalogDoc>),
    Remove { kind: DocKind, id: String },
}

impl CatalogFact {
    pub fn key(&self) -> String {
        match self {
            CatalogFact::Upsert(doc) => doc_key(doc.kind, &doc.id),
            CatalogFact::Remove { kind, id } => doc_key(*kind, id),
        }
    }
}

pub fn doc_key(kind: DocKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

/// An Inventory as the local reconciler keeps it: its declaration and how far publishing its
/// records has come. The ingest side of the counts is in [`IngestCounts`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryRecord {
    pub name: String,
    pub seller: String,
    pub seller_name: String,
    pub low_stock_threshold: u32,
    pub generation: u64,
    /// The declaration as JSON, its source path made absolute (a restart resumes from it).
    pub spec_json: String,
    /// A digest of the declaration and its source file: an unchanged apply does nothing.
    pub digest: String,
    pub publish: PublishState,
}

/// Where an inventory's latest declaration stands, summed over every ingest partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryStatus {
    pub name: String,
    pub seller: String,
    pub generation: u64,
    /// `publishing`, `ingesting`, `ready` or `failed`.
    pub state: &'static str,
    pub published: u64,
    /// Known once publishing finished: every record of the declaration.
    pub records: Option<u64>,
    pub accepted: u64,
    pub written: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub removed: u64,
    pub removals: u64,
    pub error: Option<String>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
}

impl InventoryStatus {
    /// Sums the counts rows of the record's generation (rows of older ones are ignored).
    pub fn new(record: &InventoryRecord, rows: &[IngestCounts]) -> Self {
        let mut sum = IngestCounts::default();
        for c in rows.iter().filter(|c| c.generation == record.generation) {
            sum.add(c);
        }
        let p = &record.publish;
        let records = p.finished_ms.map(|_| p.published);
        let done = records.is_some_and(|n| sum.accepted() + sum.rejected >= n)
            && sum.removed >= p.removals;
        let state = if p.error.is_some() {
            "failed"
        } else if p.finished_ms.is_none() {
            "publishing"
        } else if done {
            "ready"
        } else {
            "ingesting"
        };
        Self {
            name: record.name.clone(),
            seller: record.seller.clone(),
            generation: record.generation,
            state,
            published: p.published,
            records,
            accepted: sum.accepted(),
            written: sum.written,
            unchanged: sum.unchanged,
            rejected: sum.rejected,
            removed: sum.removed,
            removals: p.removals,
            error: p.error.clone(),
            started_ms: p.started_ms,
            finished_ms: p.finished_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PublishState {
    pub started_ms: u64,
    /// Product records sent to the ingest topic so far.
    pub published: u64,
    /// Removals sent for products the declaration no longer lists.
    pub removals: u64,
    /// Set once every record is sent: then `published` is the generation's record count.
    pub finished_ms: Option<u64>,
    /// Why publishing stopped early (an unreadable source), if it did.
    pub error: Option<String>,
}

/// What one ingest partition did with one generation of an inventory. Each partition's worker
/// owns its row, and counts only records past `through_offset`, so a replayed batch is never
/// counted twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IngestCounts {
    pub generation: u64,
    /// Products new or changed.
    pub written: u64,
    /// Products identical to what the store held (nothing to re-index).
    pub unchanged: u64,
    pub rejected: u64,
    pub removed: u64,
    pub through_offset: Option<u64>,
}

impl IngestCounts {
    pub fn accepted(&self) -> u64 {
        self.written + self.unchanged
    }

    pub fn add(&mut self, other: &IngestCounts) {
        self.written += other.written;
        self.unchanged += other.unchanged;
        self.rejected += other.rejected;
        self.removed += other.removed;
    }
}

/// A rejected record, as the dead-letter listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub origin: Origin,
    pub code: String,
    pub message: String,
    /// The record as given, cut to [`REJECTED_EXCERPT`] bytes.
    pub excerpt: String,
    pub at_ms: u64,
}

pub const REJECTED_EXCERPT: usize = 1024;

/// Cuts text to at most `max` bytes on a character boundary.
pub fn excerpt(raw: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

crate::first_layout!(
    CatalogFact,
    IngestRecord,
    InventoryRecord,
    IngestCounts,
    RejectedRecord,
    Product
);
