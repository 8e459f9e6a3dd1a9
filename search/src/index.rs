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
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, Query,
    TermQuery,
};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, ReloadPolicy, Score, Searcher, TantivyDocument, Term};

use crate::collector::{FastFilters, SearchCollector};
use crate::generation::Generation;
use crate::request::{Cursor, SearchRequest, Sort};
use crate::schema::{self, Fields, SCHEMA_VERSION, TOKENIZER};
use crate::shifted::Shifted;
use crate::typos::Reach;
use crate::SearchError;

const SNIPPET_CHARS: usize = 160;
/// What a query word matched without a typo adds to a document's score: more than the tiers
/// below it together, so fewer typos rank first.
const TYPO_FREE: Score = 100_000.0;
/// What a query word found in the name adds: among documents with as many typos, the one
/// whose name has more of the words ranks first.
const IN_NAME: Score = 10_000.0;
/// What a query word matched as a whole word (not as the start of a longer one) adds.
const WHOLE_WORD: Score = 1_000.0;

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

    /// Every word must match (in the name, the body or the id), exactly or within its typo
    /// budget, and the last word as typed so far may also be the start of a word. Each word
    /// adds, in tiers far apart so that a lower one only breaks ties of the higher:
    /// - [`TYPO_FREE`] when it matched without a typo (as typed, or completed);
    /// - [`IN_NAME`] when it (or a word it reaches) is in the name;
    /// - [`WHOLE_WORD`] when it matched a whole word, not the start of a longer one;
    /// - (the collector adds how much of the name the query covers, then an exact name above
    ///   all;)
    /// - its BM25 score (name words count double), a completion's at half, a typo's at a
    ///   quarter, two typos' at a tenth.
    ///
    /// Returns the query and the words (with weights) snippets should highlight.
    fn text_query(
        &self,
        searcher: &Searcher,
        generation: &Generation,
        tokens: &[String],
        typing: bool,
    ) -> tantivy::Result<(Box<dyn Query>, BTreeMap<String, Score>)> {
        let (text, name) = (self.fields.text, self.fields.name);
        let scored = |word: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(text, word),
                IndexRecordOption::WithFreqs,
            ))
        };
        let in_name = |word: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(name, word),
                IndexRecordOption::Basic,
            ))
        };
        let mut highlight = BTreeMap::new();
        let mut words: Vec<Box<dyn Query>> = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            highlight.insert(token.clone(), 1.0);
            let reach = if typing && i + 1 == tokens.len() {
                Reach::Prefix
            } else {
                Reach::Whole
            };
            let expansions = generation.expansions(searcher, text, token, reach)?;
            // Each way the word matches carries its tier; the best one counts.
            let mut ways: Vec<Box<dyn Query>> = vec![Box::new(Shifted::new(
                scored(token),
                TYPO_FREE + WHOLE_WORD,
            ))];
            let mut names = vec![(Occur::Should, in_name(token))];
            // `python3` also matches `python 3`: its parts together, as typed.
            let split = crate::digits::parts(token);
            if !split.is_empty() {
                let all = |each: &dyn Fn(&str) -> Box<dyn Query>| -> Box<dyn Query> {
                    Box::new(BooleanQuery::new(
                        split.iter().map(|p| (Occur::Must, each(p))).collect(),
                    ))
                };
                ways.push(Box::new(Shifted::new(all(&scored), TYPO_FREE + WHOLE_WORD)));
                names.push((Occur::Should, all(&in_name)));
            }
            for near in expansions.iter() {
                let weight = match (near.typos, near.completes) {
                    (0, _) => 0.5,
                    (1, _) => 0.25,
                    _ => 0.1,
                };
                let tier = if near.typos == 0 { TYPO_FREE } else { 0.0 }
                    + if near.completes { 0.0 } else { WHOLE_WORD };
                let boosted = Box::new(BoostQuery::new(scored(&near.word), weight));
                ways.push(Box::new(Shifted::new(boosted, tier)));
                names.push((Occur::Should, in_name(&near.word)));
                highlight.insert(near.word.clone(), 0.5);
            }
            let best: Box<dyn Query> = Box::new(DisjunctionMaxQuery::new(ways));
            let named = ConstScoreQuery::new(Box::new(BooleanQuery::new(names)), IN_NAME);
            words.push(Box::new(BooleanQuery::new(vec![
                (Occur::Should, best),
                (Occur::Should, Box::new(named)),
            ])));
        }
        let query = if words.len() == 1 {
            words.remove(0)
        } else {
            Box::new(BooleanQuery::new(
                words.into_iter().map(|w| (Occur::Must, w)).collect(),
            ))
        };
        Ok((query, highlight))
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
            let (q, h) = self.text_query(searcher, &generation, &tokens, typing)?;
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
