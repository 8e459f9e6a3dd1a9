//! The index on disk (or in memory), and searching it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::collector::{FastFilters, SearchCollector};
use crate::request::{Cursor, SearchRequest, Sort};
use crate::schema::{self, Fields, SCHEMA_VERSION, TOKENIZER};
use crate::SearchError;

/// Words this long or longer match with one typo (an edit or a swap of two letters).
pub const FUZZY_MIN_CHARS: usize = 5;
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
}

impl SearchIndex {
    /// Opens the index in `dir` (or a fresh one in memory). An index written with another
    /// schema is wiped: it is a view, and the indexer rebuilds it from the catalog topic.
    pub fn open(dir: Option<&Path>) -> Result<(SearchIndex, Progress), SearchError> {
        let (schema, fields) = schema::build();
        let index = match dir {
            None => Index::create_in_ram(schema),
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
            },
            progress,
        ))
    }

    fn open_dir(dir: &Path, schema: &tantivy::schema::Schema) -> Result<Index, SearchError> {
        let directory = MmapDirectory::open(dir)?;
        let index = Index::open_or_create(directory, schema.clone())?;
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

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The words of a query, as the index tokenized them.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut analyzer = schema::analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out: Vec<String> = Vec::new();
        while let Some(t) = stream.next() {
            if !out.contains(&t.text) {
                out.push(t.text.clone());
            }
        }
        out
    }

    /// Every word must match the name or the body, exactly or (if long enough) with one typo;
    /// exact matches and name matches score higher.
    fn text_query(&self, tokens: &[String]) -> Box<dyn Query> {
        let f = &self.fields;
        let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(tokens.len());
        for token in tokens {
            let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(4);
            for (field, boost) in [(f.name, 2.0), (f.body, 1.0), (f.code, 1.0)] {
                let term = Term::from_field_text(field, token);
                let exact = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
                alternatives.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(exact), boost)),
                ));
                if token.chars().count() >= FUZZY_MIN_CHARS {
                    let fuzzy = FuzzyTermQuery::new(term, 1, true);
                    alternatives.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(fuzzy), boost * 0.25)),
                    ));
                }
            }
            words.push((Occur::Must, Box::new(BooleanQuery::new(alternatives))));
        }
        Box::new(BooleanQuery::new(words))
    }

    fn filter_terms(&self, r: &SearchRequest) -> Vec<(Occur, Box<dyn Query>)> {
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
        if let Some(kind) = r.kind {
            out.push(term(f.kind, kind.as_str()));
        }
        if let Some(c) = &r.category {
            out.push(term(f.category_path, c));
        }
        if let Some(c) = &r.city {
            out.push(term(f.city_key, c));
        }
        out
    }

    pub fn search(&self, r: &SearchRequest) -> Result<Value, SearchError> {
        let searcher = self.reader.searcher();
        let tokens = self.tokens(&r.q);
        let text = (!tokens.is_empty()).then(|| self.text_query(&tokens));
        let mut clauses = self.filter_terms(r);
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
            filters: FastFilters::of(r),
            sort: r.sort,
            after: r.cursor,
            keep: r.limit + 1,
        };
        let fruit = searcher.search(&*query, &collector)?;
        let snippets = match &text {
            Some(t) => {
                let mut g = SnippetGenerator::create(&searcher, &**t, self.fields.body)?;
                g.set_max_num_chars(SNIPPET_CHARS);
                Some(g)
            }
            None => None,
        };
        let mut hits = Vec::with_capacity(r.limit);
        for c in fruit.hits.iter().take(r.limit) {
            let doc: TantivyDocument = searcher.doc(c.doc)?;
            let mut hit: Map<String, Value> = doc
                .get_first(self.fields.hit)
                .and_then(|v| v.as_str())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
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
            hit.insert("snippet".into(), Value::String(snippet));
            if r.sort == Sort::Relevance {
                hit.insert("score".into(), json!(c.score));
            }
            if let Some(d) = c.distance_km {
                hit.insert("distance_km".into(), json!((d * 100.0).round() / 100.0));
            }
            hits.push(Value::Object(hit));
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
        Ok(json!({
            "hits": hits,
            "total": fruit.total,
            "facets": {
                "category": sorted(fruit.categories),
                "city": sorted(fruit.cities),
                "type": sorted(fruit.kinds),
            },
            "next_cursor": next_cursor,
        }))
    }
}

/// Facet counts, largest first (a JSON object keeps this order with serde_json's
/// `preserve_order`; without it, the keys come sorted by name).
fn sorted(counts: HashMap<String, u64>) -> Map<String, Value> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().map(|(k, n)| (k, json!(n))).collect()
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
