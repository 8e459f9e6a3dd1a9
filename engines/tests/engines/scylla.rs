//! The Store conformance suite against a real ScyllaDB, when `MERCATO_TEST_SCYLLA` names one
//! (`scylla://HOST[:PORT]/KEYSPACE`). Without it the tests that need a server say so and pass.

use std::sync::Arc;

use mercato_core::store::{Store, StoreError};
use mercato_engines::scylla_store::{ScyllaOptions, ScyllaStore};
use mercato_testkit as conformance;

fn address() -> Option<String> {
    conformance::engine_address("MERCATO_TEST_SCYLLA")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_store_conformance() {
    let Some(url) = address() else { return };
    let store = ScyllaStore::connect(ScyllaOptions::from_url(&url).unwrap())
        .await
        .unwrap();
    conformance::store::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scylla_versions_grow_across_connections() {
    let Some(url) = address() else { return };
    let options = ScyllaOptions::from_url(&url).unwrap();
    // The second connection creating the schema finds it there.
    conformance::store::versions_outlive_the_connection(|| async {
        Arc::new(ScyllaStore::connect(options.clone()).await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_unreachable_is_unavailable() {
    let mut options = ScyllaOptions::from_url("scylla://127.0.0.1:1/mercato").unwrap();
    options.connect_timeout = std::time::Duration::from_millis(500);
    let started = std::time::Instant::now();
    match ScyllaStore::connect(options).await {
        Err(StoreError::Unavailable { context, .. }) => {
            assert!(context.contains("127.0.0.1:1"), "{context}")
        }
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("nothing listens on port 1"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "fails fast"
    );
}
