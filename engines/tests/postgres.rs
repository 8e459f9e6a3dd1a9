//! The Store conformance suite against a real PostgreSQL, when `MERCATO_TEST_POSTGRES` names
//! one (`postgres://user:password@host/database`). Without it the test says so and passes: CI
//! always sets it.

use std::sync::Arc;

use mercato_core::conformance;
use mercato_core::store::Store;
use mercato_engines::postgres::{PostgresOptions, PostgresStore};

fn address() -> Option<String> {
    conformance::engine_address("MERCATO_TEST_POSTGRES")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_conformance() {
    let Some(url) = address() else { return };
    let store = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    conformance::store::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_versions_survive_a_reconnect() {
    let Some(url) = address() else { return };
    let table = conformance::unique("t");
    let first = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    let row = first
        .put(&table, "p", "k", b"kept".to_vec(), None)
        .await
        .unwrap();
    drop(first);
    // A second process applying the same migrations finds them done.
    let again = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    assert_eq!(
        again.get(&table, "p", "k").await.unwrap(),
        Some(row.clone())
    );
    let next = again
        .put(&table, "p", "k", b"v2".to_vec(), None)
        .await
        .unwrap();
    assert!(next.version > row.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unreachable_is_unavailable() {
    let options = PostgresOptions {
        wait: std::time::Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    // Nothing listens on port 1.
    let err = PostgresStore::connect("postgres://mercato@127.0.0.1:1/mercato", options)
        .await
        .err()
        .expect("connecting to a closed port fails");
    assert_eq!(err.label(), "unavailable", "{err}");
}
