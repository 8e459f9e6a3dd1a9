//! Search and products.

use std::sync::Arc;

use mercato_core::domain::catalog::{is_sku, Product};
use mercato_core::repo::catalog;
use mercato_search::{BadParam, SearchError, SearchIndex, SearchRequest, SuggestRequest};
use serde_json::{json, Value};

use super::Query;
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::state::AppState;

pub async fn search(state: &AppState, q: &Query) -> ApiResult {
    let request = SearchRequest::from_params(q).map_err(invalid_query)?;
    let answer = on_index(state, move |index| index.search(&request)).await?;
    Ok(ApiReply::raw(answer))
}

/// Completions for a search box: the search as typed, a small page of names and the largest
/// categories (see [`mercato_search::SuggestRequest`]).
pub async fn suggest(state: &AppState, q: &Query) -> ApiResult {
    let request = SuggestRequest::from_params(q).map_err(invalid_query)?;
    let answer = on_index(state, move |index| index.suggest(&request)).await?;
    Ok(ApiReply::raw(answer.into()))
}

fn invalid_query(e: BadParam) -> ApiError {
    ApiError::bad_request("invalid_query", e.to_string()).with_details(json!({"param": e.param}))
}

/// Runs `work` on this gateway's search index. Searching is CPU work: off the request
/// threads, so one broad query never stalls others, and bounded, so a flood of them queues or
/// is refused instead of taking every thread.
async fn on_index<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&SearchIndex) -> Result<T, SearchError> + Send + 'static,
) -> Result<T, ApiError> {
    let search = state.search.as_ref().map(Arc::clone).ok_or_else(|| {
        ApiError::unavailable("search_unavailable", "this gateway serves no search index")
    })?;
    state
        .search_work
        .run(move || work(search.index()))
        .await?
        .map_err(|e| ApiError::unavailable("search_failed", e.to_string()))
}

pub async fn product(state: &AppState, sku: &str) -> ApiResult {
    let not_found = || ApiError::not_found("product_not_found", format!("no product {sku:?}"));
    if !is_sku(sku) {
        return Err(not_found());
    }
    let p: Product = catalog::load_product(&*state.ports.store, sku)
        .await?
        .ok_or_else(not_found)?
        .value;
    let stock = mercato_core::repo::stock::load_stock(&*state.ports.store, sku)
        .await?
        .map(|s| s.value)
        .unwrap_or_default();
    let mut body = product_json(&p, stock.available(mercato_core::clock::now_ms()));
    body["warehouses"] = stock
        .warehouses
        .iter()
        .map(|(name, w)| json!({"warehouse": name, "physical": w.physical, "available": w.available}))
        .collect();
    Ok(ApiReply::ok(body))
}

/// `available` is what a shopper can still check out: the warehouses' available units less
/// live reservations and paid units not yet allocated.
pub fn product_json(p: &Product, available: u64) -> Value {
    let attributes: serde_json::Map<String, Value> = p
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    json!({
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "category": p.category_path(),
        "price": p.price,
        "attributes": attributes,
        "seller": p.seller,
        "available": available,
    })
}
