//! The rows of events, and the only place that knows their keys: `events`, one per event,
//! keyed by its name, and `event_index`, the listing (partition `all`, soonest first). The
//! local reconciler (the operator, on a cluster) writes both from Event manifests; everyone
//! else reads them, events mostly through `EventCache`.

use crate::domain::events::EventRecord;
use crate::names::tables;
use crate::store::Store;

use super::{self as repo, get, put, RepoError, RepoResult, Versioned};

/// The single partition of the event listing.
const INDEX_PARTITION: &str = "all";

pub async fn load(store: &dyn Store, id: &str) -> RepoResult<Option<Versioned<EventRecord>>> {
    get(store, tables::EVENTS, id, "").await
}

/// Saves an event and lists it by when it starts, moving it in the listing if `replaced` (the
/// record it replaces) started at another time. The event row goes first: a listing entry
/// never points at a missing event.
pub async fn save(
    store: &dyn Store,
    record: &EventRecord,
    replaced: Option<&EventRecord>,
) -> RepoResult<()> {
    let spec = record.spec().map_err(|e| RepoError::BadEvent {
        id: record.id.clone(),
        message: e.to_string(),
    })?;
    let key = index_key(spec.starts_at.timestamp_millis(), &record.id);
    put(store, tables::EVENTS, &record.id, "", record, None).await?;
    let old_key = replaced
        .and_then(|r| r.spec().ok())
        .map(|s| index_key(s.starts_at.timestamp_millis(), &record.id))
        .filter(|old| *old != key);
    if let Some(old) = old_key {
        store
            .delete(tables::EVENT_INDEX, INDEX_PARTITION, &old)
            .await?;
    }
    store
        .put(
            tables::EVENT_INDEX,
            INDEX_PARTITION,
            &key,
            record.id.as_bytes().to_vec(),
            None,
        )
        .await?;
    Ok(())
}

/// A page of the listing's event ids, soonest first, after `cursor`; and the next page's
/// cursor.
pub async fn listing_page(
    store: &dyn Store,
    cursor: Option<&str>,
    limit: usize,
) -> RepoResult<(Vec<String>, Option<String>)> {
    repo::page(
        store,
        tables::EVENT_INDEX,
        INDEX_PARTITION,
        cursor,
        limit,
        |row| Ok(Some(String::from_utf8_lossy(&row.value).into_owned())),
    )
    .await
}

/// Clustering key of the event listing: soonest first.
fn index_key(starts_at_ms: i64, id: &str) -> String {
    format!("{:020}/{id}", starts_at_ms.max(0))
}
