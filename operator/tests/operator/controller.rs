//! The controller against a scripted fake API server (tower-test): every request a reconcile
//! makes must be the next one the scenario expects, and nothing else may be asked. The engines
//! behind it are the real embedded ones, so topics and rows are checked where they land.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Client, Resource};
use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::coord::EmbeddedCoord;
use mercato_core::store::EmbeddedStore;
use mercato_core::Ports;
use mercato_crds::{Event, Inventory, Warehouse, WarehouseSpec};
use mercato_operator::cluster::{error_policy, reconcile, Context, Metrics, Stores, FINALIZER};
use mercato_operator::workloads::WorkerSettings;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

const NS: &str = "shop";
const WAREHOUSE: &str = "/apis/mercato.dev/v1alpha1/namespaces/shop/warehouses/leeds";
const STS: &str = "/apis/apps/v1/namespaces/shop/statefulsets";
const SVC: &str = "/api/v1/namespaces/shop/services";

fn now() -> DateTime<Utc> {
    "2026-06-01T00:00:00Z".parse().expect("time")
}

/// One request the scenario expects, and the answer to give.
struct Step {
    method: &'static str,
    path: String,
    status: u16,
    reply: Reply,
}

enum Reply {
    Json(Value),
    /// Answer with the request's own body, plus these fields (a PATCH's result).
    Echo(Value),
}

fn step(method: &'static str, path: impl Into<String>, status: u16, reply: Reply) -> Step {
    Step {
        method,
        path: path.into(),
        status,
        reply,
    }
}

fn not_found() -> Reply {
    Reply::Json(json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "not found"
    }))
}

#[derive(Default)]
struct Seen {
    /// (method, path, query, body) of every request the script answered.
    requests: Vec<(String, String, String, Value)>,
    /// Kubernetes Events posted (reasons).
    events: Vec<String>,
    /// Requests the script did not expect.
    unexpected: Vec<String>,
}

impl Seen {
    fn body(&self, method: &str, path: &str) -> Value {
        self.requests
            .iter()
            .find(|(m, p, _, _)| m == method && p == path)
            .map(|(_, _, _, b)| b.clone())
            .unwrap_or_else(|| panic!("no {method} {path} in {:?}", self.calls()))
    }

    fn calls(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|(m, p, _, _)| format!("{m} {p}"))
            .collect()
    }

    fn writes(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|(m, _, _, _)| m != "GET")
            .map(|(m, p, _, _)| format!("{m} {p}"))
            .collect()
    }
}

/// Serves the script; Events are accepted whenever they come, in any number.
async fn serve(
    mut handle: Handle<Request<Body>, Response<Body>>,
    steps: Vec<Step>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut steps = steps.into_iter();
    while let Some((request, respond)) = handle.next_request().await {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if path.contains("/events") && path.starts_with("/apis/events.k8s.io/") {
            seen.lock()
                .events
                .push(body["reason"].as_str().unwrap_or_default().to_owned());
            respond.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(bytes.to_vec()))
                    .expect("response"),
            );
            continue;
        }
        let Some(next) = steps.next() else {
            seen.lock().unexpected.push(format!("{method} {path}"));
            respond.send_response(
                Response::builder()
                    .status(500)
                    .body(Body::from(b"{}".to_vec()))
                    .expect("response"),
            );
            continue;
        };
        if (next.method, next.path.as_str()) != (method.as_str(), path.as_str()) {
            seen.lock().unexpected.push(format!(
                "{method} {path} (expected {} {})",
                next.method, next.path
            ));
        }
        let reply = match next.reply {
            Reply::Json(v) => v,
            Reply::Echo(extra) => {
                let mut v = body.clone();
                if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
                    v.extend(extra);
                }
                v
            }
        };
        seen.lock().requests.push((method, path, query, body));
        respond.send_response(
            Response::builder()
                .status(next.status)
                .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                .expect("response"),
        );
    }
}

struct Harness {
    ctx: Arc<Context>,
    bus: Arc<dyn Bus>,
    seen: Arc<Mutex<Seen>>,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn new(steps: Vec<Step>, warehouses: &[Warehouse]) -> Self {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NS);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let server = tokio::spawn(serve(handle, steps, Arc::clone(&seen)));
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
        let ports = Ports {
            bus: Arc::clone(&bus),
            store: Arc::new(EmbeddedStore::in_memory().expect("store")),
            coord: Arc::new(EmbeddedCoord::new()),
        };
        let stores = Stores {
            events: ready::<Event>(&[]),
            inventories: ready::<Inventory>(&[]),
            warehouses: ready(warehouses),
        };
        let mut ctx = Context::new(
            client,
            ports,
            WorkerSettings::default(),
            stores,
            Arc::new(Metrics::new()),
        );
        ctx.now = now;
        Self {
            ctx: Arc::new(ctx),
            bus,
            seen,
            server,
        }
    }

    async fn reconcile(&self, warehouse: &Warehouse) -> Result<Action, String> {
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            reconcile(Arc::new(warehouse.clone()), Arc::clone(&self.ctx)),
        )
        .await
        .expect("the reconcile finished");
        result.map_err(|e| e.to_string())
    }

    fn finish(self) -> Seen {
        self.server.abort();
        let seen = std::mem::take(&mut *self.seen.lock());
        assert!(
            seen.unexpected.is_empty(),
            "unexpected requests: {:?}",
            seen.unexpected
        );
        seen
    }
}

fn ready<K>(objects: &[K]) -> kube::runtime::reflector::Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.as_reader()
}

fn warehouse(spec_extra: Value) -> Warehouse {
    let mut spec = json!({
        "location": {"lat": 53.8, "lon": -1.5, "city": "Leeds"},
        "stock": [{"sku": "B-1", "physical": 5}, {"sku": "B-2", "physical": 7, "available": 6}],
    });
    if let (Value::Object(s), Value::Object(extra)) = (&mut spec, spec_extra) {
        s.extend(extra);
    }
    let spec: WarehouseSpec = serde_json::from_value(spec).expect("spec");
    let mut w = Warehouse::new("leeds", spec);
    w.metadata.namespace = Some(NS.into());
    w.metadata.uid = Some("uid-leeds".into());
    w.metadata.generation = Some(1);
    w.metadata.finalizers = Some(vec![FINALIZER.into()]);
    w
}

fn ready_set(replicas: i32) -> Reply {
    Reply::Echo(json!({"status": {"replicas": replicas, "readyReplicas": replicas}}))
}

/// The requests a first reconcile of the warehouse makes: its role's Service and StatefulSet
/// are looked up, applied, and the status written.
fn first_apply(w: &Warehouse, set: Reply) -> Vec<Step> {
    vec![
        step("GET", format!("{SVC}/mercato-allocator"), 404, not_found()),
        step(
            "PATCH",
            format!("{SVC}/mercato-allocator"),
            200,
            Reply::Echo(json!({})),
        ),
        step("GET", format!("{STS}/mercato-allocator"), 404, not_found()),
        step("PATCH", format!("{STS}/mercato-allocator"), 200, set),
        step("PATCH", format!("{WAREHOUSE}/status"), 200, status_reply(w)),
    ]
}

/// The answer to a status patch: the object, with the status sent.
fn status_reply(w: &Warehouse) -> Reply {
    Reply::Echo(json!({"metadata": w.metadata, "spec": w.spec}))
}

fn condition(status: &Value, kind: &str) -> (String, String) {
    let c = status["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status}"));
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn the_first_reconcile_adds_the_finalizer_and_nothing_else() {
    let mut w = warehouse(json!({}));
    w.metadata.finalizers = None;
    let h = Harness::new(
        vec![step(
            "PATCH",
            WAREHOUSE,
            200,
            Reply::Json(serde_json::to_value(&w).expect("json")),
        )],
        std::slice::from_ref(&w),
    );
    assert_eq!(h.reconcile(&w).await, Ok(Action::await_change()));
    let seen = h.finish();
    let patch = seen.body("PATCH", WAREHOUSE);
    assert!(patch.to_string().contains(FINALIZER), "{patch}");
}

#[tokio::test]
async fn create_makes_topics_workloads_and_status() {
    let w = warehouse(json!({}));
    let h = Harness::new(first_apply(&w, ready_set(0)), std::slice::from_ref(&w));
    let action = h.reconcile(&w).await.expect("reconciled");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "workers are starting"
    );
    assert_eq!(h.bus.partitions("wh-leeds").await.expect("own topic"), 1);
    assert_eq!(
        h.bus.partitions("allocations").await.expect("shared topic"),
        4
    );
    let seen = h.finish();
    let (_, _, query, set) = seen
        .requests
        .iter()
        .find(|(m, p, _, _)| m == "PATCH" && p.ends_with("statefulsets/mercato-allocator"))
        .expect("applied")
        .clone();
    assert!(
        query.contains("fieldManager=mercato-operator") && query.contains("force=true"),
        "{query}"
    );
    assert_eq!(set["spec"]["replicas"], 1);
    assert_eq!(set["metadata"]["ownerReferences"][0]["uid"], "uid-leeds");
    let status = seen.body("PATCH", &format!("{WAREHOUSE}/status"));
    assert_eq!(status["status"]["skus"], 2);
    assert_eq!(status["status"]["units"], 11);
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(status["status"]["workers"]["allocator"], 1);
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "WorkersStarting".into())
    );
    assert_eq!(
        condition(&status, "Progressing"),
        ("True".into(), "WorkersStarting".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("False".into(), "AsExpected".into())
    );
}

#[tokio::test]
async fn a_second_reconcile_of_an_unchanged_object_writes_nothing() {
    let mut w = warehouse(json!({}));
    let h = Harness::new(first_apply(&w, ready_set(1)), std::slice::from_ref(&w));
    h.reconcile(&w).await.expect("first");
    let first = h.finish();
    // The cluster now holds what the first reconcile wrote.
    let live = |path: &str| {
        let mut v = first.body("PATCH", path);
        if path.contains("statefulsets") {
            v["status"] = json!({"replicas": 1, "readyReplicas": 1});
        }
        Reply::Json(v)
    };
    let status = first.body("PATCH", &format!("{WAREHOUSE}/status"));
    assert_eq!(condition(&status, "Ready"), ("True".into(), "Ready".into()));
    w.status = Some(serde_json::from_value(status["status"].clone()).expect("a status"));
    let h2 = Harness::new(
        vec![
            step(
                "GET",
                format!("{SVC}/mercato-allocator"),
                200,
                live(&format!("{SVC}/mercato-allocator")),
            ),
            step(
                "GET",
                format!("{STS}/mercato-allocator"),
                200,
                live(&format!("{STS}/mercato-allocator")),
            ),
        ],
        std::slice::from_ref(&w),
    );
    // The same engines: the topics exist already.
    h2.bus.ensure_topic("wh-leeds", 1).await.expect("topic");
    let action = h2.reconcile(&w).await;
    let seen = h2.finish();
    assert_eq!(
        action,
        Ok(Action::requeue(mercato_operator::cluster::RESYNC))
    );
    assert!(seen.writes().is_empty(), "wrote {:?}", seen.writes());
    assert!(seen.events.is_empty(), "events {:?}", seen.events);
}

#[tokio::test]
async fn an_update_grows_partitions_and_changes_replicas() {
    let after = warehouse(json!({"workers": {"allocator": {"replicas": 3, "partitions": 6}}}));
    let h = Harness::new(
        first_apply(&after, ready_set(3)),
        std::slice::from_ref(&after),
    );
    h.bus
        .ensure_topic("allocations", 4)
        .await
        .expect("topic as before");
    h.reconcile(&after).await.expect("reconciled");
    assert_eq!(
        h.bus.partitions("allocations").await.expect("topic"),
        6,
        "grown"
    );
    let seen = h.finish();
    let set = seen.body("PATCH", &format!("{STS}/mercato-allocator"));
    assert_eq!(set["spec"]["replicas"], 3);
    let args = set["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--replicas=3"), "{args}");
    let status = seen.body("PATCH", &format!("{WAREHOUSE}/status"));
    assert_eq!(
        status["status"]["topics"],
        json!([{"name": "allocations", "partitions": 6}, {"name": "wh-leeds", "partitions": 1}])
    );
    assert_eq!(condition(&status, "Ready"), ("True".into(), "Ready".into()));
}

#[tokio::test]
async fn a_refused_shrink_is_shown_in_status_not_retried() {
    let w = warehouse(json!({"workers": {"allocator": {"partitions": 2}}}));
    let h = Harness::new(first_apply(&w, ready_set(1)), std::slice::from_ref(&w));
    h.bus
        .ensure_topic("allocations", 8)
        .await
        .expect("a larger topic");
    let action = h.reconcile(&w).await.expect("a refusal is no failure");
    // Settled until something changes: no retry, no backoff.
    assert_eq!(action, Action::requeue(mercato_operator::cluster::RESYNC));
    assert_eq!(
        h.bus.partitions("allocations").await.expect("topic"),
        8,
        "never shrunk"
    );
    let seen = h.finish();
    let status = seen.body("PATCH", &format!("{WAREHOUSE}/status"));
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "TopicCannotShrink".into())
    );
    assert!(status.to_string().contains("never shrink"), "{status}");
    assert!(
        seen.events.contains(&"TopicCannotShrink".to_owned()),
        "{:?}",
        seen.events
    );
}

async fn delete_with(policy: &str) -> (Seen, Arc<dyn Bus>) {
    let mut w = warehouse(json!({"deletionPolicy": policy}));
    w.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let listed = |kind: &str| {
        Reply::Json(json!({
            "apiVersion": if kind == "StatefulSetList" { "apps/v1" } else { "v1" },
            "kind": kind,
            "metadata": {},
            "items": [{"metadata": {"name": "mercato-allocator", "namespace": NS}}],
        }))
    };
    let deleted = Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    let h = Harness::new(
        vec![
            step("GET", STS, 200, listed("StatefulSetList")),
            step("DELETE", format!("{STS}/mercato-allocator"), 200, deleted),
            step("GET", SVC, 200, listed("ServiceList")),
            step(
                "DELETE",
                format!("{SVC}/mercato-allocator"),
                200,
                Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            ),
            step(
                "PATCH",
                WAREHOUSE,
                200,
                Reply::Json(serde_json::to_value(&w).expect("json")),
            ),
        ],
        std::slice::from_ref(&w),
    );
    h.bus.ensure_topic("wh-leeds", 1).await.expect("topic");
    assert_eq!(h.reconcile(&w).await, Ok(Action::await_change()));
    let bus = Arc::clone(&h.bus);
    let seen = h.finish();
    let patch = seen.body("PATCH", WAREHOUSE);
    assert!(
        patch.to_string().contains("remove"),
        "the finalizer is removed: {patch}"
    );
    assert!(
        seen.events.contains(&"Deleted".to_owned()),
        "{:?}",
        seen.events
    );
    (seen, bus)
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_topic() {
    let (_, bus) = delete_with("Retain").await;
    assert_eq!(bus.partitions("wh-leeds").await.expect("kept"), 1);
}

#[tokio::test]
async fn deletion_with_delete_removes_the_topic() {
    let (_, bus) = delete_with("Delete").await;
    assert!(bus.partitions("wh-leeds").await.is_err(), "deleted");
}

#[tokio::test]
async fn an_api_error_shows_as_degraded_and_is_retried_with_backoff() {
    let w = warehouse(json!({}));
    let failure = Reply::Json(json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "InternalError", "code": 500, "message": "etcd is away"
    }));
    let h = Harness::new(
        vec![
            step("GET", format!("{SVC}/mercato-allocator"), 500, failure),
            step(
                "PATCH",
                format!("{WAREHOUSE}/status"),
                200,
                status_reply(&w),
            ),
        ],
        std::slice::from_ref(&w),
    );
    let error = h.reconcile(&w).await.expect_err("the API failed");
    assert!(error.contains("etcd is away"), "{error}");
    let ctx = Arc::clone(&h.ctx);
    let seen = h.finish();
    let status = seen.body("PATCH", &format!("{WAREHOUSE}/status"));
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "ApiError".into())
    );
    assert_eq!(
        seen.events,
        ["ApiError"],
        "a Warning event names the failure"
    );
    let obj = Arc::new(w);
    let err = || mercato_operator::cluster::Error::NoNamespace("x".into());
    let first = error_policy(Arc::clone(&obj), &err(), Arc::clone(&ctx));
    let second = error_policy(Arc::clone(&obj), &err(), Arc::clone(&ctx));
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
}
