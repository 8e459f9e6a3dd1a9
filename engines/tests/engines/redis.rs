//! The Coord and Bus conformance suites against a real Redis, when `MERCATO_TEST_REDIS` names
//! one (`redis://host:port`). Without it the tests say so and pass: CI always sets it.

use std::sync::Arc;

use mercato_core::bus::Bus;
use mercato_engines::redis_bus::RedisBus;
use mercato_engines::redis_coord::RedisCoord;
use mercato_testkit as conformance;

fn address() -> Option<String> {
    conformance::engine_address("MERCATO_TEST_REDIS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_coord_conformance() {
    let Some(url) = address() else { return };
    let coord = RedisCoord::connect(&url).await.unwrap();
    conformance::coord::run_all(Arc::new(coord)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_streams_bus_conformance() {
    let Some(url) = address() else { return };
    // Every `open` is a new client: records and offsets must outlive the connection.
    conformance::bus::run_all(|| {
        let url = url.clone();
        async move { Arc::new(RedisBus::connect(&url).await.unwrap()) as Arc<dyn Bus> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_unreachable_is_an_error() {
    // Nothing listens on port 1.
    assert!(RedisCoord::connect("redis://127.0.0.1:1").await.is_err());
    assert!(RedisBus::connect("redis://127.0.0.1:1").await.is_err());
    assert!(RedisBus::connect("not a url").await.is_err());
}

/// `MERCATO_TEST_REDIS_TLS`: the same server by TLS (`rediss://`), verified against the CA
/// that signed its certificate.
fn tls_address() -> Option<String> {
    conformance::engine_address("MERCATO_TEST_REDIS_TLS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_coord_and_bus_conformance_over_tls() {
    let Some(url) = tls_address() else { return };
    let coord = RedisCoord::connect(&url).await.unwrap();
    conformance::coord::run_all(Arc::new(coord)).await;
    conformance::bus::run_all(|| {
        let url = url.clone();
        async move { Arc::new(RedisBus::connect(&url).await.unwrap()) as Arc<dyn Bus> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_with_the_wrong_ca_is_refused_with_a_clear_error() {
    let Some(url) = conformance::with_wrong_ca("MERCATO_TEST_REDIS_TLS") else {
        return;
    };
    let err = RedisCoord::connect(&url)
        .await
        .err()
        .expect("a server whose certificate the CA did not sign is refused");
    conformance::assert_refused_for_its_certificate(&err);
    // A plain URL with a CA file is a mistake, said as such.
    let plain = RedisCoord::connect("redis://127.0.0.1:1/?sslrootcert=/etc/ssl/ca.crt")
        .await
        .err()
        .expect("refused");
    assert!(
        plain.to_string().contains("needs a rediss:// URL"),
        "{plain}"
    );
}
