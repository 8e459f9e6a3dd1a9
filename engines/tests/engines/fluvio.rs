//! The Bus conformance suite against a real Fluvio cluster, when `MERCATO_TEST_FLUVIO` names
//! its SC (`fluvio://HOST:9003`). Without it the tests that need a cluster say so and pass.

use std::sync::Arc;

use mercato_core::bus::{Bus, BusError};
use mercato_engines::fluvio_bus::FluvioBus;
use mercato_testkit as conformance;

fn address() -> Option<String> {
    conformance::engine_address("MERCATO_TEST_FLUVIO")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fluvio_bus_conformance() {
    let Some(url) = address() else { return };
    // Every `open` is a new client: records and committed offsets must outlive it.
    conformance::bus::run_all(|| {
        let url = url.clone();
        async move { Arc::new(FluvioBus::connect(&url).await.unwrap()) as Arc<dyn Bus> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluvio_unreachable_is_unavailable() {
    let started = std::time::Instant::now();
    match FluvioBus::connect("fluvio://127.0.0.1:1").await {
        Err(BusError::Unavailable(why)) => assert!(why.contains("127.0.0.1:1"), "{why}"),
        Err(other) => panic!("expected Unavailable, got {other}"),
        Ok(_) => panic!("nothing listens on port 1"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "fails fast"
    );
    assert!(FluvioBus::connect("not a url").await.is_err());
}
