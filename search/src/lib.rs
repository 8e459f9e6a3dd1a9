//! The catalog's search index: a tantivy index that is a materialized view of the catalog
//! topic. [`Search::start`] opens it and runs its indexer; [`SearchIndex::search`] answers
//! `GET /api/v1/search` with BM25 relevance, typo tolerance (one from five letters, two from nine), the last word as a
//! prefix, filters, facet counts, sorts
//! and cursors.

mod collector;
mod digits;
mod generation;
mod index;
mod indexer;
mod query;
mod request;
mod schema;
mod shifted;
mod suggest;
mod typos;

pub use index::{CacheStats, Progress, SearchIndex, MAX_FACET_VALUES};
pub use indexer::{IndexerStatus, Search, DEFAULT_CACHE_ENTRIES};
pub use request::{haversine_km, BadParam, Cursor, Near, SearchRequest, Sort, PARAMS};
pub use schema::{analyzer, uid_key, MAX_TOKEN_BYTES};
pub use suggest::{SuggestRequest, DEFAULT_SUGGESTIONS, MAX_SUGGESTIONS, SUGGEST_PARAMS};
pub use typos::{
    budget as typo_budget, MAX_EXPANSIONS, ONE_TYPO_MIN_CHARS, PREFIX_MIN_CHARS,
    TWO_TYPOS_MIN_CHARS,
};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("search index I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("catalog topic: {0}")]
    Bus(#[from] mercato_core::bus::BusError),
    #[error("search index has schema version {0}, which this release cannot read")]
    Schema(u32),
    #[error("the indexer has stopped")]
    Stopped,
    #[error("the index did not catch up in time")]
    Timeout,
}

impl SearchError {
    pub fn label(&self) -> &'static str {
        match self {
            SearchError::Index(_) | SearchError::Directory(_) | SearchError::Schema(_) => "index",
            SearchError::Io(_) => "io",
            SearchError::Bus(_) => "bus",
            SearchError::Stopped => "stopped",
            SearchError::Timeout => "timeout",
        }
    }
}
