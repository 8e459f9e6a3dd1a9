//! Local administration of the catalog: inventories' ingest status, dead letters, and the
//! search index (status and rebuild). Admin role only.

use mercato_core::bus::Bus;
use mercato_core::clock::to_rfc3339;
use mercato_core::domain::catalog::{InventoryRecord, InventoryStatus};
use mercato_core::domain::users::Role;
use mercato_core::names::topics;
use mercato_core::repo::catalog;
use serde_json::json;

use super::{decode_cursor, encode_cursor, limit, Query};
use crate::error::{ApiError, ApiReply, ApiResult};
use crate::state::AppState;

pub(super) fn admin(state: &AppState, auth: Option<&str>) -> Result<(), ApiError> {
    if state.keys.caller(auth)?.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("this needs the admin role"))
    }
}

async fn inventory_status(
    state: &AppState,
    record: &InventoryRecord,
) -> Result<InventoryStatus, ApiError> {
    let counts = catalog::ingest_counts(&*state.ports.store, &record.name).await?;
    Ok(InventoryStatus::new(record, &counts))
}

async fn load_inventory(state: &AppState, name: &str) -> Result<InventoryRecord, ApiError> {
    catalog::load_inventory(&*state.ports.store, name)
        .await?
        .ok_or_else(|| ApiError::not_found("inventory_not_found", format!("no inventory {name:?}")))
}

pub async fn inventories(state: &AppState, auth: Option<&str>, q: &Query) -> ApiResult {
    admin(state, auth)?;
    let (records, next) =
        catalog::inventory_page(&*state.ports.store, decode_cursor(q)?.as_deref(), limit(q)?)
            .await?;
    let mut out = Vec::with_capacity(records.len());
    for record in &records {
        out.push(inventory_status(state, record).await?);
    }
    Ok(ApiReply::ok(json!({
        "inventories": out,
        "next_cursor": next.as_deref().map(encode_cursor),
    })))
}

pub async fn inventory(state: &AppState, auth: Option<&str>, name: &str) -> ApiResult {
    admin(state, auth)?;
    let record = load_inventory(state, name).await?;
    let status = inventory_status(state, &record).await?;
    Ok(ApiReply::ok(
        serde_json::to_value(status).unwrap_or_default(),
    ))
}

/// Rejected records of one inventory (`?inventory=`, its latest generation unless
/// `?generation=`), or, without `?inventory=`, the whole dead-letter topic.
pub async fn dead_letters(state: &AppState, auth: Option<&str>, q: &Query) -> ApiResult {
    admin(state, auth)?;
    match q.get("inventory") {
        Some(name) => rejected(state, name, q).await,
        None => super::dead_letters::list(state, q).await,
    }
}

async fn rejected(state: &AppState, name: &str, q: &Query) -> ApiResult {
    let record = load_inventory(state, name).await?;
    let generation = match q.get("generation") {
        Some(g) => g.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_generation", "generation must be a number")
        })?,
        None => record.generation,
    };
    let (records, next) = catalog::rejected_page(
        &*state.ports.store,
        name,
        generation,
        decode_cursor(q)?.as_deref(),
        limit(q)?,
    )
    .await?;
    let letters: Vec<_> = records
        .iter()
        .map(|r| {
            json!({
                "inventory": r.origin.inventory,
                "generation": r.origin.generation,
                "source": r.origin.source,
                "position": r.origin.position,
                "code": r.code,
                "message": r.message,
                "record": r.excerpt,
                "at": to_rfc3339(r.at_ms),
            })
        })
        .collect();
    let next = next.as_deref().map(encode_cursor);
    let status = inventory_status(state, &record).await?;
    Ok(ApiReply::ok(json!({
        "dead_letters": letters,
        "generation": generation,
        "rejected": (generation == record.generation).then_some(status.rejected),
        "next_cursor": next,
    })))
}

pub async fn search_status(state: &AppState, auth: Option<&str>) -> ApiResult {
    admin(state, auth)?;
    let search = state.search.as_ref().ok_or_else(|| {
        ApiError::unavailable("search_unavailable", "this gateway serves no search index")
    })?;
    let status = search.status();
    let bus: &dyn Bus = &*state.ports.bus;
    let partitions = bus.partitions(topics::CATALOG).await?;
    let mut ends = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        ends.push(bus.end_offset(topics::CATALOG, p).await?);
    }
    let lag: u64 = ends
        .iter()
        .enumerate()
        .map(|(p, end)| end.saturating_sub(status.committed.get(p).copied().unwrap_or(0)))
        .sum();
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    body["catalog_ends"] = json!(ends);
    body["lag"] = json!(lag);
    Ok(ApiReply::ok(body))
}

pub async fn reindex(state: &AppState, auth: Option<&str>) -> ApiResult {
    admin(state, auth)?;
    let search = state.search.as_ref().ok_or_else(|| {
        ApiError::unavailable("search_unavailable", "this gateway serves no search index")
    })?;
    search
        .reindex()
        .await
        .map_err(|e| ApiError::unavailable("search_unavailable", e.to_string()))?;
    Ok(ApiReply::accepted(json!({"reindexing": true})))
}
