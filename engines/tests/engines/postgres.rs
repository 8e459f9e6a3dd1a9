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

/// `MERCATO_TEST_POSTGRES_TLS`: the same server by TLS, verified against the CA that signed its
/// certificate (CI's server takes both).
fn tls_address() -> Option<String> {
    conformance::engine_address("MERCATO_TEST_POSTGRES_TLS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_conformance_over_tls() {
    let Some(url) = tls_address() else { return };
    // The session really is encrypted: the server says so of the connection.
    let connection = mercato_engines::postgres_tls::connection(&url).unwrap();
    let (client, task) = connection.config.connect(connection.tls).await.unwrap();
    tokio::spawn(task);
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the connection is not TLS");
    eprintln!("PostgreSQL over {}", row.get::<_, String>(1));
    let store = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    conformance::store::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_with_the_wrong_ca_is_refused_with_a_clear_error() {
    let Some(url) = conformance::with_wrong_ca("MERCATO_TEST_POSTGRES_TLS") else {
        return;
    };
    let err = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .err()
        .expect("a server whose certificate the CA did not sign is refused");
    assert_eq!(err.label(), "unavailable", "{err}");
    conformance::assert_refused_for_its_certificate(&err);
}
