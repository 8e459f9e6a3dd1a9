//! One pass over the matching documents computes everything an answer needs: the filters the
//! posting lists cannot express (price, date, distance), the total, the facet counts and the
//! page of hits after the cursor. Every sort ends with the document's key, so the order is
//! total and a cursor never skips or repeats a hit.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, StrColumn, TermOrdHit};
use tantivy::index::SegmentReader;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal};

use crate::generation::Generation;
use crate::request::{haversine_km, Cursor, Near, SearchRequest, Sort};

/// Filters applied from fast fields.
#[derive(Debug, Clone)]
pub struct FastFilters {
    pub price: Option<(i64, i64)>,
    pub date: Option<(i64, i64)>,
    pub near: Option<Near>,
    /// Applied from the columns here when a text query drives the search: intersecting a
    /// word's postings with those of `type=product` (nearly every document) costs far more.
    pub kind: Option<&'static str>,
    pub category: Option<String>,
}

impl FastFilters {
    pub fn of(r: &SearchRequest) -> Self {
        let range = |a: Option<i64>, b: Option<i64>| {
            (a.is_some() || b.is_some()).then(|| (a.unwrap_or(i64::MIN), b.unwrap_or(i64::MAX)))
        };
        Self {
            price: range(r.price_min, r.price_max),
            date: range(r.from_ms, r.to_ms),
            near: r.near,
            kind: r.kind.map(|k| k.as_str()),
            category: r.category.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub rank: f64,
    pub key: u64,
    pub doc: DocAddress,
    pub score: Score,
    pub distance_km: Option<f64>,
}

impl Candidate {
    fn order(&self, other: &Self) -> Ordering {
        self.rank
            .total_cmp(&other.rank)
            .then(self.key.cmp(&other.key))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.order(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order(other)
    }
}

#[derive(Debug, Default)]
pub struct Fruit {
    pub total: u64,
    /// Up to `limit + 1` hits in order: the extra one says there is a next page.
    pub hits: Vec<Candidate>,
    pub categories: HashMap<String, u64>,
    pub cities: HashMap<String, u64>,
    pub kinds: HashMap<String, u64>,
}

pub struct SearchCollector {
    /// Whether scores mean anything: without words to match, every document scores alike.
    pub scored: bool,
    pub generation: Arc<Generation>,
    pub filters: FastFilters,
    pub sort: Sort,
    pub after: Option<Cursor>,
    /// How many hits to keep (the page size plus one).
    pub keep: usize,
    /// The query's words as a name would come to them ([`crate::schema::words_of`]): a
    /// product of exactly that name ranks first by relevance.
    pub exact_name: Option<String>,
    /// The query's distinct words (0 without a text query): how much of a name they cover
    /// breaks ties of relevance.
    pub query_words: usize,
}

/// What covering a whole name adds to the rank by relevance, in proportion to the part of
/// the name covered: below the word tiers of the query (see `SearchIndex::text_query`),
/// above BM25, so "Lywel" ranks above "Venbarka Lywel Dafacorki" for `lywel`.
const NAME_COVERED: f64 = 500.0;

/// What naming a product exactly adds to its rank by relevance: more than any BM25 score, so
/// an exact name is first, always.
const EXACT_NAME: f64 = 1.0e9;

impl Collector for SearchCollector {
    type Fruit = Fruit;
    type Child = SegmentSearch;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentSearch> {
        let c = self.generation.columns(reader)?;
        let with_counts = |col: Option<StrColumn>| {
            col.filter(|c| c.num_terms() > 0).map(|c| {
                // One value that every document has (all products, say): counted from the
                // total at the end instead of document by document.
                let constant =
                    c.num_terms() == 1 && c.ords().get_cardinality() == Cardinality::Full;
                let n = c.num_terms();
                Facet {
                    column: c,
                    counts: vec![0; n],
                    constant,
                }
            })
        };
        let kind_filter = match (self.filters.kind, &c.kind) {
            (None, _) => OrdFilter::Any,
            (Some(k), Some(col)) => OrdFilter::exact(col, k)?,
            (Some(_), None) => OrdFilter::Nothing,
        };
        let category_filter = match (&self.filters.category, &c.category) {
            (None, _) => OrdFilter::Any,
            (Some(path), Some(col)) => OrdFilter::path(col, path)?,
            (Some(_), None) => OrdFilter::Nothing,
        };
        let exact_name = match (&self.exact_name, c.name_key, self.sort) {
            (Some(name), Some(col), Sort::Relevance) => {
                col.dictionary().term_ord(name)?.map(|ord| (col, ord))
            }
            _ => None,
        };
        Ok(SegmentSearch {
            segment,
            exact_name,
            query_words: self.query_words,
            name_words: c.name_words,
            kind_filter,
            category_filter,
            filters: self.filters.clone(),
            sort: self.sort,
            after: self.after.map(|c| (c.rank, c.key)),
            keep: self.keep,
            price: c.price,
            starts_at: c.starts_at,
            lat: c.lat,
            lon: c.lon,
            key: c.key,
            category: with_counts(c.category),
            city: with_counts(c.city),
            kind: with_counts(c.kind),
            total: 0,
            heap: BinaryHeap::new(),
            docs: Vec::with_capacity(BLOCK),
            scores: Vec::with_capacity(BLOCK),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored && self.sort == Sort::Relevance
    }

    fn merge_fruits(&self, fruits: Vec<Fruit>) -> tantivy::Result<Fruit> {
        let mut out = Fruit::default();
        for f in fruits {
            out.total += f.total;
            out.hits.extend(f.hits);
            for (target, source) in [
                (&mut out.categories, f.categories),
                (&mut out.cities, f.cities),
                (&mut out.kinds, f.kinds),
            ] {
                for (k, v) in source {
                    *target.entry(k).or_default() += v;
                }
            }
        }
        out.hits.sort_unstable();
        out.hits.truncate(self.keep);
        Ok(out)
    }
}

/// A facet's column in one segment, and its counts by term ordinal.
pub struct Facet {
    column: StrColumn,
    counts: Vec<u64>,
    constant: bool,
}

/// Documents are gathered in blocks and their columns read a block at a time: one call per
/// column per block instead of one per document.
const BLOCK: usize = 64;

/// Which term ordinals of a column pass a filter, in one segment.
#[derive(Debug, Clone)]
enum OrdFilter {
    Any,
    Nothing,
    /// The ordinal of the exact term, and a range of ordinals below it (`books/...`).
    Ords {
        exact: Option<u64>,
        below: std::ops::Range<u64>,
    },
}

impl OrdFilter {
    fn exact(col: &StrColumn, term: &str) -> tantivy::Result<Self> {
        Ok(OrdFilter::Ords {
            exact: col.dictionary().term_ord(term)?,
            below: 0..0,
        })
    }

    /// The path itself and every path under it: "books" and "books/..." (the terms from
    /// "books/" up to "books0", '0' being the byte after '/').
    fn path(col: &StrColumn, path: &str) -> tantivy::Result<Self> {
        let dict = col.dictionary();
        let ord_at = |key: String| -> tantivy::Result<u64> {
            Ok(match dict.term_ord_or_next(key)? {
                TermOrdHit::Exact(o) | TermOrdHit::Next(o) => o,
            })
        };
        Ok(OrdFilter::Ords {
            exact: dict.term_ord(path)?,
            below: ord_at(format!("{path}/"))?..ord_at(format!("{path}0"))?,
        })
    }

    fn passes(&self, ord: Option<u64>) -> bool {
        match self {
            OrdFilter::Any => true,
            OrdFilter::Nothing => false,
            OrdFilter::Ords { exact, below } => {
                ord.is_some_and(|o| Some(o) == *exact || below.contains(&o))
            }
        }
    }

    fn is_any(&self) -> bool {
        matches!(self, OrdFilter::Any)
    }
}

pub struct SegmentSearch {
    segment: SegmentOrdinal,
    /// The name column and the ordinal of the exact name asked for, where this segment has
    /// a product of that name.
    exact_name: Option<(StrColumn, u64)>,
    query_words: usize,
    name_words: Column<u64>,
    kind_filter: OrdFilter,
    category_filter: OrdFilter,
    filters: FastFilters,
    sort: Sort,
    after: Option<(f64, u64)>,
    keep: usize,
    price: Column<i64>,
    starts_at: Column<i64>,
    lat: Column<f64>,
    lon: Column<f64>,
    key: Column<u64>,
    category: Option<Facet>,
    city: Option<Facet>,
    kind: Option<Facet>,
    total: u64,
    /// A max-heap of the best `keep` candidates: its top is the worst kept.
    heap: BinaryHeap<Candidate>,
    docs: Vec<DocId>,
    scores: Vec<Score>,
}

fn in_range(v: Option<i64>, range: Option<(i64, i64)>) -> bool {
    match range {
        None => true,
        Some((lo, hi)) => v.is_some_and(|v| (lo..=hi).contains(&v)),
    }
}

/// Reads one column for a block of documents (`None` where a document has no value).
fn read<T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static>(
    col: &Column<T>,
    docs: &[DocId],
    out: &mut Vec<Option<T>>,
) {
    out.clear();
    out.resize(docs.len(), None);
    col.first_vals(docs, out);
}

impl SegmentSearch {
    fn needs_price(&self) -> bool {
        self.filters.price.is_some() || matches!(self.sort, Sort::Price | Sort::PriceDesc)
    }

    fn needs_date(&self) -> bool {
        self.filters.date.is_some() || self.sort == Sort::Date
    }

    fn flush(&mut self) {
        if self.docs.is_empty() {
            return;
        }
        let docs = std::mem::take(&mut self.docs);
        let scores = std::mem::take(&mut self.scores);
        let (mut prices, mut dates, mut lats, mut lons) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Category and kind ordinals serve the filters and the facet counts alike.
        let (mut category_ords, mut kind_ords) = (Vec::new(), Vec::new());
        if let Some(f) = &self.category {
            if !f.constant || !self.category_filter.is_any() {
                read(f.column.ords(), &docs, &mut category_ords);
            }
        }
        if let Some(f) = &self.kind {
            if !f.constant || !self.kind_filter.is_any() {
                read(f.column.ords(), &docs, &mut kind_ords);
            }
        }
        if self.needs_price() {
            read(&self.price, &docs, &mut prices);
        }
        if self.needs_date() {
            read(&self.starts_at, &docs, &mut dates);
        }
        if self.filters.near.is_some() {
            read(&self.lat, &docs, &mut lats);
            read(&self.lon, &docs, &mut lons);
        }
        // Which documents pass the column filters, and their distance.
        let mut passed: Vec<(usize, Option<f64>)> = Vec::with_capacity(docs.len());
        for i in 0..docs.len() {
            if !self.kind_filter.passes(kind_ords.get(i).copied().flatten())
                || !self
                    .category_filter
                    .passes(category_ords.get(i).copied().flatten())
            {
                continue;
            }
            let price = prices.get(i).copied().flatten();
            if !in_range(price, self.filters.price) {
                continue;
            }
            if !in_range(dates.get(i).copied().flatten(), self.filters.date) {
                continue;
            }
            let distance = match &self.filters.near {
                Some(near) => match (
                    lats.get(i).copied().flatten(),
                    lons.get(i).copied().flatten(),
                ) {
                    (Some(lat), Some(lon)) => {
                        let d = haversine_km((near.lat, near.lon), (lat, lon));
                        if d > near.radius_km {
                            continue;
                        }
                        Some(d)
                    }
                    _ => continue,
                },
                None => None,
            };
            passed.push((i, distance));
        }
        self.total += passed.len() as u64;
        if passed.is_empty() {
            self.docs = docs;
            self.scores = scores;
            self.docs.clear();
            self.scores.clear();
            return;
        }
        for (facet, ords) in [
            (&mut self.category, &category_ords),
            (&mut self.kind, &kind_ords),
        ] {
            if let Some(f) = facet.as_mut().filter(|f| !f.constant) {
                for (i, _) in &passed {
                    if let Some(slot) = ords[*i].and_then(|o| f.counts.get_mut(o as usize)) {
                        *slot += 1;
                    }
                }
            }
        }
        if let Some(f) = self.city.as_mut().filter(|f| !f.constant) {
            let kept: Vec<DocId> = passed.iter().map(|(i, _)| docs[*i]).collect();
            let mut ords = Vec::with_capacity(kept.len());
            read(f.column.ords(), &kept, &mut ords);
            for ord in ords.iter().flatten() {
                if let Some(slot) = f.counts.get_mut(*ord as usize) {
                    *slot += 1;
                }
            }
        }
        let mut name_ords = Vec::new();
        if let Some((col, _)) = &self.exact_name {
            read(col.ords(), &docs, &mut name_ords);
        }
        let exact_ord = self.exact_name.as_ref().map(|(_, ord)| *ord);
        let mut name_lengths = Vec::new();
        if self.sort == Sort::Relevance && self.query_words > 0 {
            read(&self.name_words, &docs, &mut name_lengths);
        }
        let missing = f64::INFINITY;
        for (i, distance) in passed {
            let doc = docs[i];
            let price = prices.get(i).copied().flatten();
            let rank = match self.sort {
                Sort::Relevance => {
                    let exact =
                        exact_ord.is_some() && name_ords.get(i).copied().flatten() == exact_ord;
                    let covered = match name_lengths.get(i).copied().flatten() {
                        Some(n) if n > 0 => (self.query_words as f64 / n as f64).min(1.0),
                        _ => 0.0,
                    };
                    -(f64::from(scores[i])
                        + NAME_COVERED * covered
                        + if exact { EXACT_NAME } else { 0.0 })
                }
                Sort::Price => price.map_or(missing, |p| p as f64),
                Sort::PriceDesc => price.map_or(missing, |p| -(p as f64)),
                Sort::Date => dates
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(missing, |t| t as f64),
                Sort::Distance => distance.unwrap_or(missing),
            };
            self.offer(doc, scores[i], rank, distance);
        }
        self.docs = docs;
        self.scores = scores;
        self.docs.clear();
        self.scores.clear();
    }

    fn offer(&mut self, doc: DocId, score: Score, rank: f64, distance_km: Option<f64>) {
        if self.heap.len() >= self.keep {
            // Cheap rejection before reading the key: worse rank than the worst kept.
            if let Some(worst) = self.heap.peek() {
                if rank > worst.rank {
                    return;
                }
            }
        }
        let key = self.key.first(doc).unwrap_or(0);
        if let Some((after_rank, after_key)) = self.after {
            match rank.total_cmp(&after_rank) {
                Ordering::Less => return,
                Ordering::Equal if key <= after_key => return,
                _ => {}
            }
        }
        let candidate = Candidate {
            rank,
            key,
            doc: DocAddress::new(self.segment, doc),
            score,
            distance_km,
        };
        if self.heap.len() < self.keep {
            self.heap.push(candidate);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if candidate < *worst {
                *worst = candidate;
            }
        }
    }
}

impl SegmentCollector for SegmentSearch {
    type Fruit = Fruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.docs.push(doc);
        self.scores.push(score);
        if self.docs.len() == BLOCK {
            self.flush();
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for chunk in docs.chunks(BLOCK) {
            self.docs.extend_from_slice(chunk);
            self.scores.resize(self.docs.len(), 0.0);
            self.flush();
        }
    }

    fn harvest(mut self) -> Fruit {
        self.flush();
        let mut fruit = Fruit {
            total: self.total,
            hits: self.heap.into_vec(),
            ..Fruit::default()
        };
        for (source, target) in [
            (self.category, &mut fruit.categories),
            (self.city, &mut fruit.cities),
            (self.kind, &mut fruit.kinds),
        ] {
            let Some(mut facet) = source else {
                continue;
            };
            if facet.constant {
                facet.counts[0] = fruit.total;
            }
            let col = facet.column;
            let mut name = String::new();
            for (ord, n) in facet.counts.into_iter().enumerate() {
                if n == 0 {
                    continue;
                }
                name.clear();
                if col.ord_to_str(ord as u64, &mut name).unwrap_or(false) {
                    *target.entry(name.clone()).or_default() += n;
                }
            }
        }
        fruit
    }
}
