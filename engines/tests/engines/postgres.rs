//! The Store conformance suite against a real PostgreSQL, when `MERCATO_TEST_POSTGRES` names
//! one (`postgres://user:password@host/database`). Without it the test says so and passes: CI
//! always sets it.

use std::sync::Arc;

use mercato_core::store::Store;
use mercato_engines::postgres::{PostgresOptions, PostgresStore};
use mercato_testkit as conformance;

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
    // The second connection applies the same migrations and finds them done.
    conformance::store::versions_outlive_the_connection(|| async {
        Arc::new(
            PostgresStore::connect(&url, PostgresOptions::default())
                .await
                .unwrap(),
        ) as Arc<dyn Store>
    })
    .await;
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
