//! What the search crate's test files share: a plain product, and an index built from
//! documents the way the platform builds it (the catalog topic, the indexer, caught up).

// Each test file is its own crate and uses only part of this.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::codec::encode;
use mercato_core::domain::catalog::{CatalogDoc, CatalogFact, DocKind};
use mercato_core::names::topics;
use mercato_search::Search;
use tokio::sync::watch;

/// A product with a name and a description and nothing else.
pub fn product(id: &str, name: &str, body: &str) -> CatalogDoc {
    CatalogDoc {
        kind: DocKind::Product,
        id: id.into(),
        name: name.into(),
        body: body.into(),
        category: Vec::new(),
        city: None,
        geo: None,
        price: None,
        price_max: None,
        starts_at_ms: None,
        seller: None,
        venue: None,
    }
}

/// An in-memory index of `docs` with an answer cache of `cache` entries, caught up with the
/// catalog topic it was built from. Keep the sender: dropping it stops the indexer.
pub async fn indexed(
    docs: &[CatalogDoc],
    cache: usize,
) -> (Arc<Search>, Arc<dyn Bus>, watch::Sender<bool>) {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
    bus.ensure_topic(topics::CATALOG, 4).await.unwrap();
    for chunk in docs.chunks(5_000) {
        let facts: Vec<_> = chunk
            .iter()
            .map(|d| {
                let f = CatalogFact::Upsert(Box::new(d.clone()));
                (f.key().into_bytes(), encode(&f))
            })
            .collect();
        bus.send_batch(topics::CATALOG, facts).await.unwrap();
    }
    let (stop, shutdown) = watch::channel(false);
    let (search, _task) = Search::start(None, cache, Arc::clone(&bus), shutdown)
        .await
        .unwrap();
    search
        .caught_up(&*bus, Duration::from_secs(120))
        .await
        .unwrap();
    (search, bus, stop)
}
