//! The operator's controllers as `mercato operator run` starts them (watchers, caches, the
//! finalizer, requeues), against an in-memory API server and the embedded engines: declarations
//! are brought about, the operator then rests, follows an update, and cleans up a deletion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fake_api::FakeApi;
use kube::Client;
use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::coord::EmbeddedCoord;
use mercato_core::names::tables;
use mercato_core::store::{EmbeddedStore, Store};
use mercato_core::Ports;
use mercato_operator::cluster::{self, Metrics};
use mercato_operator::workloads::WorkerSettings;
use serde_json::{json, Value};

const GROUP: &str = "mercato.dev/v1alpha1";
const APPS: &str = "apps/v1";

fn event(holds: u32) -> Value {
    json!({
        "apiVersion": GROUP, "kind": "Event",
        "metadata": {"name": "final", "namespace": "shop"},
        "spec": {
            "title": "Final",
            "venue": {"name": "Ground", "city": "Leeds", "lat": 53.8, "lon": -1.5},
            "startsAt": "2027-05-29T19:00:00Z",
            "onSaleAt": "2026-01-10T10:00:00Z",
            "tiers": [{"id": "a", "name": "A", "price": {"amount": 100, "currency": "GBP"}}],
            "sections": [{"id": "s1", "tier": "a", "rows": 2, "seatsPerRow": 3}],
            "workers": {"holds": {"replicas": holds}},
        }
    })
}

fn warehouse() -> Value {
    json!({
        "apiVersion": GROUP, "kind": "Warehouse",
        "metadata": {"name": "leeds", "namespace": "shop"},
        "spec": {
            "location": {"lat": 53.8, "lon": -1.5},
            "stock": [{"sku": "B-1", "physical": 4}],
            "deletionPolicy": "Delete",
        }
    })
}

fn condition(obj: &Option<Value>, kind: &str) -> Option<String> {
    obj.as_ref()?["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

/// Waits for `done`, playing the kubelet meanwhile (worker pods become ready).
async fn eventually(api: &FakeApi, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; last requests written: {:?}; event: {:?}; warehouse: {:?}",
            api.writes().iter().rev().take(12).collect::<Vec<_>>(),
            api.get(GROUP, "events", "shop", "final"),
            api.get(GROUP, "warehouses", "shop", "leeds"),
        );
        api.make_workers_ready();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_brings_declarations_about_rests_follows_and_cleans_up() {
    let api = FakeApi::default();
    api.put(GROUP, "events", event(2));
    api.put(GROUP, "warehouses", warehouse());
    // The Warehouse CRD is not established yet when the operator starts.
    api.withhold("warehouses");
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().expect("store"));
    let ports = Ports {
        bus: Arc::clone(&bus),
        store: Arc::clone(&store),
        coord: Arc::new(EmbeddedCoord::new()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(cluster::run(
        Client::new(api.clone(), "shop"),
        "shop",
        ports,
        cluster::RunOptions {
            settings: WorkerSettings::default(),
            sources: mercato_operator::SourcePolicy::default(),
            rooms: None,
        },
        Arc::new(Metrics::new()),
        async move {
            let _ = stopped.await;
        },
    ));

    // It waits for every kind to be served before it acts on any.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api.writes(),
        [],
        "nothing is written before the kinds are served"
    );
    api.establish("warehouses");

    let ready = |plural: &str, name: &str, generation: i64| {
        let obj = api.get(GROUP, plural, "shop", name);
        condition(&obj, "Ready").as_deref() == Some("True")
            && obj
                .as_ref()
                .is_some_and(|o| o["status"]["observedGeneration"] == generation)
    };
    eventually(&api, "both declarations are Ready", || {
        ready("events", "final", 1) && ready("warehouses", "leeds", 1)
    })
    .await;

    // What the declarations amount to.
    let event_obj = api.get(GROUP, "events", "shop", "final").expect("event");
    assert_eq!(
        event_obj["metadata"]["finalizers"],
        json!(["mercato.dev/cleanup"])
    );
    assert_eq!(event_obj["status"]["capacity"], 6);
    assert_eq!(event_obj["status"]["available"], 6);
    assert_eq!(
        event_obj["status"]["workers"],
        json!({"holds": 2, "payments": 1})
    );
    let holds = api
        .get(APPS, "statefulsets", "shop", "mercato-holds")
        .expect("holds workers");
    assert_eq!(holds["spec"]["replicas"], 2);
    assert_eq!(holds["metadata"]["ownerReferences"][0]["name"], "final");
    assert!(api
        .get(APPS, "statefulsets", "shop", "mercato-allocator")
        .is_some());
    assert!(api
        .get("v1", "services", "shop", "mercato-allocator")
        .is_some());
    assert_eq!(
        bus.partitions("wh-leeds")
            .await
            .expect("the warehouse's topic"),
        1
    );
    assert!(
        store
            .get(tables::EVENTS, "final", "")
            .await
            .expect("store")
            .is_some(),
        "the event is in the store"
    );
    assert!(
        api.event_reasons().contains(&"Ready".to_owned()),
        "{:?}",
        api.event_reasons()
    );

    // At rest: reconciles triggered by the operator's own writes change nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = api.writes().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = api.writes();
    assert_eq!(
        before,
        after.len(),
        "writes at rest: {:?}",
        &after[before..]
    );

    // An update: more holds workers.
    api.put(GROUP, "events", event(4));
    eventually(&api, "the update is in effect", || {
        ready("events", "final", 2)
            && api
                .get(APPS, "statefulsets", "shop", "mercato-holds")
                .is_some_and(|s| s["spec"]["replicas"] == 4)
    })
    .await;

    // Scaled by hand: put back.
    let mut scaled = api
        .get(APPS, "statefulsets", "shop", "mercato-holds")
        .expect("set");
    scaled["spec"]["replicas"] = json!(1);
    api.put(APPS, "statefulsets", scaled);
    eventually(&api, "the drift is repaired", || {
        api.get(APPS, "statefulsets", "shop", "mercato-holds")
            .is_some_and(|s| s["spec"]["replicas"] == 4)
    })
    .await;

    // Deletion, under deletionPolicy: Delete.
    api.delete(GROUP, "warehouses", "shop", "leeds");
    eventually(
        &api,
        "the warehouse is gone with its topic and workers",
        || {
            api.get(GROUP, "warehouses", "shop", "leeds").is_none()
                && api
                    .get(APPS, "statefulsets", "shop", "mercato-allocator")
                    .is_none()
        },
    )
    .await;
    assert!(
        bus.partitions("wh-leeds").await.is_err(),
        "its topic is deleted"
    );
    assert!(
        api.get(APPS, "statefulsets", "shop", "mercato-holds")
            .is_some(),
        "the Event still needs its workers"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("the operator stops when told")
        .expect("cleanly");
}
