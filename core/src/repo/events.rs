//! The rows of events: `events`, one per event, keyed by its name. The local reconciler (the
//! operator on a cluster) writes them from Event manifests; everyone else reads them, mostly
//! through `EventCache`.

use crate::domain::events::EventRecord;
use crate::names::tables;
use crate::store::Store;

use super::{get, put, RepoResult, Versioned};

pub async fn load(store: &dyn Store, id: &str) -> RepoResult<Option<Versioned<EventRecord>>> {
    get(store, tables::EVENTS, id, "").await
}

pub async fn save(store: &dyn Store, record: &EventRecord) -> RepoResult<u64> {
    put(store, tables::EVENTS, &record.id, "", record, None).await
}
