//! Suggestions for a search box (`GET /api/v1/search/suggest?q=`): as a shopper types, the
//! names of the products (and events) the words so far find, best first, and the categories
//! most of them are in. It is the search itself, as typed (the last word a prefix, typos
//! forgiven), with a small page: the answer cache serves the common prefixes, and the rest cost
//! what a search costs.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::request::{bad, query_text, BadParam, SearchRequest};
use crate::{SearchError, SearchIndex};

/// Suggestions asked for when `limit` is not given, and the most that may be.
pub const DEFAULT_SUGGESTIONS: usize = 5;
pub const MAX_SUGGESTIONS: usize = 10;
/// Categories offered beside the names.
const CATEGORIES: usize = 3;
pub const SUGGEST_PARAMS: [&str; 2] = ["q", "limit"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestRequest {
    pub q: String,
    pub limit: usize,
}

impl SuggestRequest {
    /// Parses the query string of `GET /api/v1/search/suggest`; unknown parameters are refused.
    pub fn from_params(params: &HashMap<String, String>) -> Result<SuggestRequest, BadParam> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !SUGGEST_PARAMS.contains(&k.as_str()))
        {
            return Err(bad(
                "query",
                format!("unknown parameter {unknown:?}; known: q, limit"),
            ));
        }
        let limit = match params.get("limit").map(|v| v.trim()) {
            None | Some("") => DEFAULT_SUGGESTIONS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_SUGGESTIONS).contains(n))
                .ok_or_else(|| bad("limit", format!("a number from 1 to {MAX_SUGGESTIONS}")))?,
        };
        Ok(SuggestRequest {
            q: query_text(params)?.unwrap_or_default(),
            limit,
        })
    }
}

impl SearchIndex {
    /// `{"q", "suggestions": [{"type": "name", "text", "id", "kind"} …, {"type": "category",
    /// "text", "count"} …]}`: names best first, then the largest categories among what the
    /// words find. Nothing for a query without words.
    pub fn suggest(&self, r: &SuggestRequest) -> Result<String, SearchError> {
        let mut suggestions = Vec::new();
        if !r.q.trim().is_empty() {
            let search = SearchRequest {
                q: r.q.clone(),
                limit: r.limit,
                ..SearchRequest::default()
            };
            let answer: Value = serde_json::from_str(&self.search(&search)?).unwrap_or_default();
            let mut seen = Vec::new();
            for hit in answer["hits"].as_array().into_iter().flatten() {
                let Some(name) = hit["name"].as_str() else {
                    continue;
                };
                if seen.contains(&name) {
                    continue;
                }
                seen.push(name);
                suggestions.push(json!({
                    "type": "name",
                    "text": name,
                    "id": hit["id"],
                    "kind": hit["type"],
                }));
            }
            let mut categories: Vec<(&String, u64)> = answer["facets"]["category"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, n)| (name, n.as_u64().unwrap_or(0)))
                .collect();
            categories.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            for (name, count) in categories.into_iter().take(CATEGORIES) {
                suggestions.push(json!({"type": "category", "text": name, "count": count}));
            }
        }
        Ok(json!({"q": r.q, "suggestions": suggestions}).to_string())
    }
}
