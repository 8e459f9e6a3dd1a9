//! One pass over the matching documents computes everything an answer needs: the filters the
//! posting lists cannot express (price, date, distance), the total, the facet counts and the
//! page of hits after the cursor. Every sort ends with the document's key, so the order is
//! total and a cursor never skips or repeats a hit.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::index::SegmentReader;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal};

use crate::request::{haversine_km, Cursor, Near, SearchRequest, Sort};

/// Filters applied from fast fields.
#[derive(Debug, Clone, Copy)]
pub struct FastFilters {
    pub price: Option<(i64, i64)>,
    pub date: Option<(i64, i64)>,
    pub near: Option<Near>,
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
    pub filters: FastFilters,
    pub sort: Sort,
    pub after: Option<Cursor>,
    /// How many hits to keep (the page size plus one).
    pub keep: usize,
}

impl Collector for SearchCollector {
    type Fruit = Fruit;
    type Child = SegmentSearch;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentSearch> {
        let ff = reader.fast_fields();
        let str_col = |name: &str| -> tantivy::Result<Option<(StrColumn, Vec<u64>)>> {
            Ok(ff.str(name)?.map(|c| {
                let n = c.num_terms();
                (c, vec![0; n])
            }))
        };
        Ok(SegmentSearch {
            segment,
            filters: self.filters,
            sort: self.sort,
            after: self.after.map(|c| (c.rank, c.key)),
            keep: self.keep,
            price: ff.i64("price")?,
            starts_at: ff.i64("starts_at")?,
            lat: ff.f64("lat")?,
            lon: ff.f64("lon")?,
            key: ff.u64("key")?,
            category: str_col("category")?,
            city: str_col("city")?,
            kind: str_col("kind")?,
            total: 0,
            heap: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.sort == Sort::Relevance
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

pub struct SegmentSearch {
    segment: SegmentOrdinal,
    filters: FastFilters,
    sort: Sort,
    after: Option<(f64, u64)>,
    keep: usize,
    price: Column<i64>,
    starts_at: Column<i64>,
    lat: Column<f64>,
    lon: Column<f64>,
    key: Column<u64>,
    category: Option<(StrColumn, Vec<u64>)>,
    city: Option<(StrColumn, Vec<u64>)>,
    kind: Option<(StrColumn, Vec<u64>)>,
    total: u64,
    /// A max-heap of the best `keep` candidates: its top is the worst kept.
    heap: BinaryHeap<Candidate>,
}

fn in_range(v: Option<i64>, range: Option<(i64, i64)>) -> bool {
    match range {
        None => true,
        Some((lo, hi)) => v.is_some_and(|v| (lo..=hi).contains(&v)),
    }
}

impl SegmentSearch {
    fn distance(&self, doc: DocId, near: &Near) -> Option<f64> {
        let lat = self.lat.first(doc)?;
        let lon = self.lon.first(doc)?;
        Some(haversine_km((near.lat, near.lon), (lat, lon)))
    }
}

impl SegmentCollector for SegmentSearch {
    type Fruit = Fruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        let price = self.price.first(doc);
        if !in_range(price, self.filters.price) {
            return;
        }
        let starts_at = self.starts_at.first(doc);
        if !in_range(starts_at, self.filters.date) {
            return;
        }
        let distance = match &self.filters.near {
            Some(near) => match self.distance(doc, near) {
                Some(d) if d <= near.radius_km => Some(d),
                _ => return,
            },
            None => None,
        };
        self.total += 1;
        for (col, counts) in [&mut self.category, &mut self.city, &mut self.kind]
            .into_iter()
            .flatten()
        {
            if let Some(ord) = col.ords().first(doc) {
                if let Some(slot) = counts.get_mut(ord as usize) {
                    *slot += 1;
                }
            }
        }
        let missing = f64::INFINITY;
        let rank = match self.sort {
            Sort::Relevance => -f64::from(score),
            Sort::Price => price.map_or(missing, |p| p as f64),
            Sort::PriceDesc => price.map_or(missing, |p| -(p as f64)),
            Sort::Date => starts_at.map_or(missing, |t| t as f64),
            Sort::Distance => distance.unwrap_or(missing),
        };
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
            distance_km: distance,
        };
        if self.heap.len() < self.keep {
            self.heap.push(candidate);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if candidate < *worst {
                *worst = candidate;
            }
        }
    }

    fn harvest(self) -> Fruit {
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
            let Some((col, counts)) = source else {
                continue;
            };
            let mut name = String::new();
            for (ord, n) in counts.into_iter().enumerate() {
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
