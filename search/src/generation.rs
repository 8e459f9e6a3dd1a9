//! What every query of one index generation shares: the fast-field columns of each segment
//! (opening them costs microseconds per column, per segment, per query otherwise) and the typo
//! expansions (typos, prefixes) of the words already asked. A commit makes a new generation; the old state goes
//! with the last query still using it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::columnar::{Column, StrColumn};
use tantivy::index::{SegmentId, SegmentReader};
use tantivy::schema::Field;
use tantivy::Searcher;

use crate::typos::{self, Expansion, Reach};

/// The words one query word reaches, shared by the queries that ask it.
type Expansions = Arc<Vec<Expansion>>;

/// Expansion lists kept per generation before the cache starts over.
const MAX_CACHED_WORDS: usize = 50_000;

#[derive(Clone)]
pub struct SegmentColumns {
    pub price: Column<i64>,
    pub starts_at: Column<i64>,
    pub lat: Column<f64>,
    pub lon: Column<f64>,
    pub key: Column<u64>,
    pub category: Option<StrColumn>,
    pub city: Option<StrColumn>,
    pub kind: Option<StrColumn>,
    pub name_key: Option<StrColumn>,
    pub name_words: Column<u64>,
}

impl SegmentColumns {
    pub fn open(reader: &SegmentReader) -> tantivy::Result<Self> {
        let ff = reader.fast_fields();
        Ok(Self {
            price: ff.i64("price")?,
            starts_at: ff.i64("starts_at")?,
            lat: ff.f64("lat")?,
            lon: ff.f64("lon")?,
            key: ff.u64("key")?,
            category: ff.str("category")?,
            city: ff.str("city")?,
            kind: ff.str("kind")?,
            name_key: ff.str("name_key")?,
            name_words: ff.u64("name_words")?,
        })
    }
}

pub struct Generation {
    pub id: u64,
    columns: HashMap<SegmentId, SegmentColumns>,
    expansions: Mutex<HashMap<(String, Reach), Expansions>>,
}

impl Generation {
    pub fn build(searcher: &Searcher) -> tantivy::Result<Self> {
        let mut columns = HashMap::new();
        for reader in searcher.segment_readers() {
            columns.insert(reader.segment_id(), SegmentColumns::open(reader)?);
        }
        Ok(Self {
            id: searcher.generation().generation_id(),
            columns,
            expansions: Mutex::new(HashMap::new()),
        })
    }

    pub fn columns(&self, reader: &SegmentReader) -> tantivy::Result<SegmentColumns> {
        match self.columns.get(&reader.segment_id()) {
            Some(c) => Ok(c.clone()),
            None => SegmentColumns::open(reader),
        }
    }

    /// The words of `field` that `word` reaches, remembered for this generation.
    pub fn expansions(
        &self,
        searcher: &Searcher,
        field: Field,
        word: &str,
        reach: Reach,
    ) -> tantivy::Result<Expansions> {
        let key = (word.to_owned(), reach);
        if let Some(found) = self.expansions.lock().get(&key) {
            return Ok(Arc::clone(found));
        }
        let found = Arc::new(typos::expansions(searcher, field, word, reach)?);
        let mut cache = self.expansions.lock();
        if cache.len() >= MAX_CACHED_WORDS {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&found));
        Ok(found)
    }
}
