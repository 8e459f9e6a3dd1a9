//! The index on disk (or in memory), and searching it.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::collector::{FastFilters, SearchCollector};
use crate::generation::Generation;
use crate::query::TextQuery;
use crate::request::{Cursor, SearchRequest, Sort};
use crate::schema::{self, Fields, SCHEMA_VERSION, TOKENIZER};
use crate::SearchError;

const SNIPPET_CHARS: usize = 160;

/// What a commit records beside the index: the schema, and how far into each partition of the
/// catalog topic the index has folded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub schema: u32,
    pub offsets: Vec<u64>,
}

pub struct SearchIndex {
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) fields: Fields,
    dir: Option<PathBuf>,
    cache: Mutex<AnswerCache>,
    generation: Mutex<Option<Arc<Generation>>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

/// Answers of the current index generation. Shoppers ask the same head queries over and over;
/// an answer stays right until the index changes, and every commit starts a new generation
/// (and an empty cache), so nothing stale is ever served.
struct AnswerCache {
    generation: u64,
    answers: Option<LruCache<String, Arc<str>>>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

impl SearchIndex {
    /// Opens the index in `dir` (or a fresh one in memory). An index written with another
    /// schema is wiped: it is a view, and the indexer rebuilds it from the catalog topic.
    /// `cache_entries` bounds the answer cache; 0 turns it off.
    pub fn open(
        dir: Option<&Path>,
        cache_entries: usize,
    ) -> Result<(SearchIndex, Progress), SearchError> {
        let (schema, fields) = schema::build();
        let index = match dir {
            None => builder(&schema).create_in_ram()?,
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                match Self::open_dir(dir, &schema) {
                    Ok(index) => index,
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "search index unusable; rebuilding it from the catalog topic");
                        wipe(dir)?;
                        Self::open_dir(dir, &schema)?
                    }
                }
            }
        };
        index.tokenizers().register(TOKENIZER, schema::analyzer());
        let progress = Self::progress_of(&index)?;
        let progress = if progress.schema == SCHEMA_VERSION {
            progress
        } else if dir.is_some() && progress.schema != 0 {
            return Err(SearchError::Schema(progress.schema));
        } else {
            Progress {
                schema: SCHEMA_VERSION,
                offsets: Vec::new(),
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok((
            SearchIndex {
                index,
                reader,
                fields,
                dir: dir.map(Path::to_owned),
                cache: Mutex::new(AnswerCache {
                    generation: u64::MAX,
                    answers: NonZeroUsize::new(cache_entries).map(LruCache::new),
                }),
                generation: Mutex::new(None),
                cache_hits: AtomicU64::new(0),
                cache_misses: AtomicU64::new(0),
            },
            progress,
        ))
    }

    fn open_dir(dir: &Path, schema: &tantivy::schema::Schema) -> Result<Index, SearchError> {
        let directory = MmapDirectory::open(dir)?;
        let index = builder(schema).open_or_create(directory)?;
        let progress = Self::progress_of(&index)?;
        if progress.schema != 0 && progress.schema != SCHEMA_VERSION {
            return Err(SearchError::Schema(progress.schema));
        }
        Ok(index)
    }

    fn progress_of(index: &Index) -> Result<Progress, SearchError> {
        let meta = index.load_metas()?;
        Ok(meta
            .payload
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default())
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Segments of the searchable index: each costs every query a little.
    pub fn segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The words of a query, each once, and whether the last is still being typed: the query
    /// ends in it (no space or punctuation after it) and it was not asked for earlier, where
    /// it must match whole anyway.
    fn words(&self, text: &str) -> (Vec<String>, bool) {
        let mut analyzer = schema::query_analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out: Vec<String> = Vec::new();
        let mut last_is_new = false;
        let mut last_end = 0;
        while let Some(t) = stream.next() {
            last_is_new = !out.contains(&t.text);
            last_end = t.offset_to;
            if last_is_new {
                out.push(t.text.clone());
            }
        }
        let typing = last_is_new && !out.is_empty() && last_end == text.len();
        (out, typing)
    }

    fn filter_terms(&self, r: &SearchRequest, has_text: bool) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        // Filters must not change scores: only the text decides relevance.
        let term = |field, text: &str| -> (Occur, Box<dyn Query>) {
            let q = TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic);
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(q), 0.0)),
            )
        };
        let mut out = Vec::new();
        // Without words to search, a filter's postings drive the search. With words, the
        // collector applies kind and category from their columns (see FastFilters).
        if !has_text {
            if let Some(kind) = r.kind {
                out.push(term(f.kind, kind.as_str()));
            }
            if let Some(c) = &r.category {
                out.push(term(f.category_path, c));
            }
        }
        if let Some(c) = &r.city {
            out.push(term(f.city_key, c));
        }
        out
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            entries: self.cache.lock().answers.as_ref().map_or(0, LruCache::len),
            hits: self.cache_hits.load(Ordering::Relaxed),
            misses: self.cache_misses.load(Ordering::Relaxed),
        }
    }

    /// The answer as JSON text (what the API sends as it is), from the cache if this index
    /// generation answered the same request before.
    pub fn search(&self, r: &SearchRequest) -> Result<Arc<str>, SearchError> {
        let searcher = self.reader.searcher();
        let generation = searcher.generation().generation_id();
        let key = format!("{r:?}");
        {
            let mut cache = self.cache.lock();
            if cache.generation != generation {
                cache.generation = generation;
                if let Some(answers) = cache.answers.as_mut() {
                    answers.clear();
                }
            }
            if let Some(found) = cache.answers.as_mut().and_then(|a| a.get(&key)) {
                self.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::clone(found));
            }
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        let answer: Arc<str> = Arc::from(self.answer(&searcher, r)?);
        let mut cache = self.cache.lock();
        if cache.generation == generation {
            if let Some(answers) = cache.answers.as_mut() {
                answers.put(key, Arc::clone(&answer));
            }
        }
        Ok(answer)
    }

    /// The shared state of the searcher's generation, built by the first query that needs it.
    fn generation(&self, searcher: &Searcher) -> tantivy::Result<Arc<Generation>> {
        let id = searcher.generation().generation_id();
        let mut current = self.generation.lock();
        if let Some(g) = current.as_ref().filter(|g| g.id == id) {
            return Ok(Arc::clone(g));
        }
        let g = Arc::new(Generation::build(searcher)?);
        *current = Some(Arc::clone(&g));
        Ok(g)
    }

    fn answer(&self, searcher: &Searcher, r: &SearchRequest) -> Result<String, SearchError> {
        let generation = self.generation(searcher)?;
        let (tokens, typing) = self.words(&r.q);
        let (text, highlight) = if tokens.is_empty() {
            (None, BTreeMap::new())
        } else {
            let mut text = TextQuery {
                searcher,
                generation: &generation,
                text: self.fields.text,
                name: self.fields.name,
                highlight: BTreeMap::new(),
            };
            let q = text.build(&tokens, typing)?;
            let h = text.highlight;
            (Some(q), h)
        };
        let mut clauses = self.filter_terms(r, text.is_some());
        let query: Box<dyn Query> = match (&text, clauses.is_empty()) {
            (None, true) => Box::new(AllQuery),
            (Some(t), true) => t.box_clone(),
            (t, false) => {
                if let Some(t) = t {
                    clauses.push((Occur::Must, t.box_clone()));
                }
                Box::new(BooleanQuery::new(clauses))
            }
        };
        let collector = SearchCollector {
            scored: text.is_some(),
            generation,
            filters: FastFilters::of(r),
            sort: r.sort,
            after: r.cursor,
            keep: r.limit + 1,
            exact_name: text.is_some().then(|| schema::words_of(&r.q)),
            query_words: if text.is_some() { tokens.len() } else { 0 },
        };
        let fruit = searcher.search(&*query, &collector)?;
        let snippets = (!highlight.is_empty()).then(|| {
            SnippetGenerator::new(
                highlight,
                schema::analyzer(),
                self.fields.body,
                SNIPPET_CHARS,
            )
        });
        // The answer is written as JSON text directly: each hit's stored JSON is spliced in as
        // it is, never parsed and serialized again.
        let mut out = String::with_capacity(256 + r.limit * 512);
        out.push_str("{\"hits\":[");
        for (i, c) in fruit.hits.iter().take(r.limit).enumerate() {
            let doc: TantivyDocument = searcher.doc(c.doc)?;
            let stored = doc
                .get_first(self.fields.hit)
                .and_then(|v| v.as_str())
                .filter(|s| s.len() > 2 && s.starts_with('{'))
                .unwrap_or("{\"type\":null}");
            let highlighted = snippets
                .as_ref()
                .map(|g| g.snippet_from_doc(&doc))
                .filter(|s| !s.is_empty());
            let snippet = match highlighted {
                Some(s) => s.to_html(),
                // Nothing to highlight (no query, or only a typo matched): the opening words.
                None => doc
                    .get_first(self.fields.body)
                    .and_then(|v| v.as_str())
                    .map(|b| escape_html(&opening(b, SNIPPET_CHARS)))
                    .unwrap_or_default(),
            };
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"snippet\":");
            out.push_str(&json!(snippet).to_string());
            if r.sort == Sort::Relevance && text.is_some() {
                out.push_str(",\"score\":");
                out.push_str(&json!(c.score).to_string());
            }
            if let Some(d) = c.distance_km {
                out.push_str(",\"distance_km\":");
                out.push_str(&json!((d * 100.0).round() / 100.0).to_string());
            }
            out.push(',');
            out.push_str(&stored[1..]);
        }
        let next_cursor = if fruit.hits.len() > r.limit {
            fruit.hits.get(r.limit - 1).map(|c| {
                Cursor {
                    sort: r.sort.id(),
                    rank: c.rank,
                    key: c.key,
                }
                .encode()
            })
        } else {
            None
        };
        let rest = json!({
            "total": fruit.total,
            "facets": {
                "category": sorted(fruit.categories),
                "city": sorted(fruit.cities),
                "type": sorted(fruit.kinds),
            },
            "next_cursor": next_cursor,
        })
        .to_string();
        out.push_str("],");
        out.push_str(&rest[1..]);
        Ok(out)
    }
}

/// Facet counts, largest first (a JSON object keeps this order with serde_json's
/// `preserve_order`; without it, the keys come sorted by name), at most
/// [`MAX_FACET_VALUES`] of them: a catalog with 100,000 cities must not answer every query with
/// 100,000 counts.
fn sorted(counts: HashMap<String, u64>) -> Map<String, Value> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(MAX_FACET_VALUES);
    v.into_iter().map(|(k, n)| (k, json!(n))).collect()
}

/// The most values a facet lists in one answer, largest counts first.
pub const MAX_FACET_VALUES: usize = 100;

/// Small doc-store blocks: a hit costs decompressing its block, and hits are few and scattered.
fn builder(schema: &tantivy::schema::Schema) -> tantivy::IndexBuilder {
    Index::builder()
        .schema(schema.clone())
        .settings(tantivy::IndexSettings {
            docstore_blocksize: 4096,
            ..tantivy::IndexSettings::default()
        })
}

fn wipe(dir: &Path) -> Result<(), SearchError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn opening(text: &str, max_chars: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(max_chars) {
        None => line.to_owned(),
        Some((end, _)) => {
            let cut = line[..end].rfind(' ').unwrap_or(end);
            format!("{}…", &line[..cut])
        }
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
