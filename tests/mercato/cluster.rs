//! The operator on a real Kubernetes API server, as a platform team runs it: the CRDs and the
//! chart's RBAC applied with `kubectl`, `mercato operator run` authenticated as the chart's
//! ServiceAccount (RBAC enforced, not cluster admin) on PostgreSQL + Redis, the examples
//! applied with `kubectl`. What the fake API servers of the operator's own tests cannot show:
//! the API server accepts the CRDs and refuses bad manifests itself, the Role grants every verb
//! the operator uses, status patches pass its validation, and two operators elect one leader.
//!
//! Runs when `MERCATO_TEST_KUBE_ADMIN`, `MERCATO_TEST_KUBECTL` (`.ci/kube.sh`) and
//! `MERCATO_TEST_POSTGRES` + `MERCATO_TEST_REDIS` are set; CI sets all four.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::ListParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, ResourceExt};
use mercato_core::bus::{Bus, BusError};
use mercato_core::domain::commerce::warehouse_topic;
use mercato_engines::redis_bus::RedisBus;
use mercato_operator::cluster::{FIELD_MANAGER, FINALIZER};
use mercato_operator::workloads::{APPLIED_DIGEST, MANAGED_BY};
use serde_json::Value;

use crate::kube_api::{eventually, KubeApi};
use crate::processes::{Process, RedisServer};

const MINUTE: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn declarations(kube: &KubeApi, plural: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("mercato.dev", "v1alpha1", kind);
    Api::namespaced_with(
        kube.admin.clone(),
        &kube.namespace,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn condition(obj: &DynamicObject, kind: &str) -> Option<(String, String)> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// How the test starts `mercato operator run`: for its namespace, on its engines,
/// authenticated by the ServiceAccount's kubeconfig. Owned, so a blocking task can start one.
#[derive(Clone)]
struct OperatorRun {
    dir: PathBuf,
    namespace: String,
    kubeconfig: String,
    engines: Vec<(String, String)>,
}

impl OperatorRun {
    /// Starts operator `name` (its POD_NAME, so its Lease identity) and returns once it prints
    /// `ready` (waiting for, or holding, the Lease), within `limit`.
    fn start(&self, name: &str, ready: &str, limit: Duration) -> Process {
        let mut env: Vec<(&str, &str)> = self
            .engines
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend([
            ("KUBECONFIG", self.kubeconfig.as_str()),
            ("POD_NAME", name),
            ("MERCATO_METRICS_LISTEN", "127.0.0.1:0"),
        ]);
        let args: Vec<String> = ["operator", "run", "--namespace", &self.namespace]
            .map(str::to_owned)
            .to_vec();
        Process::mercato_within(name, &args, &env, &self.dir, ready, limit).0
    }
}

/// `kubectl patch RESOURCE NAME --type=merge -p PATCH`, as an admin changing a declaration.
fn merge_patch(kube: &KubeApi, resource: &str, name: &str, patch: &str) {
    kube.kubectl_ok(
        &["patch", resource, name, "--type=merge", "-p", patch],
        None,
    );
}

/// The log of an operator process, for a failure's message.
fn log_of(kube: &KubeApi, name: &str) -> String {
    let text = std::fs::read_to_string(kube.dir.as_path().join(format!("{name}.out")))
        .unwrap_or_default()
        + &std::fs::read_to_string(kube.dir.as_path().join(format!("{name}.log")))
            .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(400)..].join("\n")
}

/// The StatefulSets the operator manages, by name.
async fn workloads(kube: &KubeApi) -> Vec<StatefulSet> {
    let sets: Api<StatefulSet> = Api::namespaced(kube.admin.clone(), &kube.namespace);
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    sets.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

/// Whether every managedFields entry of `set` is either the operator's apply or a write of
/// status alone (the StatefulSet controller's).
fn only_the_operator_applies(set: &StatefulSet) -> Result<(), String> {
    for entry in set.metadata.managed_fields.iter().flatten() {
        let manager = entry.manager.as_deref().unwrap_or_default();
        let operation = entry.operation.as_deref().unwrap_or_default();
        let fields = entry.fields_v1.as_ref().map(|f| &f.0);
        let status_only = fields
            .and_then(Value::as_object)
            .is_some_and(|f| f.keys().all(|k| k == "f:status"));
        let ours = manager == FIELD_MANAGER && operation == "Apply";
        if !ours && !status_only {
            return Err(format!(
                "{} has fields managed by {manager} ({operation}): {fields:?}",
                set.name_any()
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_on_a_real_api_server_under_the_charts_role() {
    let Some(postgres) = crate::processes::postgres_url() else {
        return;
    };
    let Some(kube) = KubeApi::connect().await else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = crate::processes::fresh_database(&postgres).await;
    let bus = redis.url();
    let engines = [
        ("MERCATO_BUS", bus.as_str()),
        ("MERCATO_STORE", store.as_str()),
        ("MERCATO_COORD", bus.as_str()),
    ];

    // The CRDs as committed; the API server validates their schemas (an enum listing null
    // is refused).
    let crds = repo().join("crds/generated");
    kube.kubectl_ok(&["apply", "-f", &crds.display().to_string()], None);
    kube.kubectl_ok(
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/events.mercato.dev",
            "crd/inventories.mercato.dev",
            "crd/warehouses.mercato.dev",
        ],
        None,
    );

    // The schema refuses a bad manifest at `kubectl apply`, before any operator sees it.
    let bad = std::fs::read_to_string(repo().join("examples/theatre-event.yaml"))
        .unwrap()
        .replace("name: hamlet-globe", "name: too-greedy")
        .replace(
            "holdDuration: 10m",
            "holdDuration: 10m\n  maxSeatsPerHold: 1000",
        );
    assert!(bad.contains("maxSeatsPerHold: 1000"), "the example changed");
    let refused = kube.kubectl(&["apply", "-f", "-"], Some(&bad));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("maxSeatsPerHold"),
        "a hold of 1000 seats was not refused by the schema: {said}"
    );

    // The chart's ServiceAccount, Role and RoleBinding, rendered for this namespace.
    let rbac: Vec<String> =
        crate::chart::render_release("mercato", &kube.namespace, serde_json::json!({}))
            .into_iter()
            .filter(|doc| {
                matches!(
                    doc["kind"].as_str(),
                    Some("ServiceAccount" | "Role" | "RoleBinding")
                )
            })
            .map(|doc| serde_yaml::to_string(&doc).unwrap())
            .collect();
    assert_eq!(rbac.len(), 3, "the chart's RBAC");
    kube.kubectl_ok(&["apply", "-f", "-"], Some(&rbac.join("---\n")));
    let as_operator = kube.service_account_kubeconfig("mercato-operator").await;

    let operators = OperatorRun {
        dir: kube.dir.clone(),
        namespace: kube.namespace.clone(),
        kubeconfig: as_operator.display().to_string(),
        engines: engines
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let leader = operators.start("operator-a", "operator-a: leading", MINUTE);

    let examples: Vec<PathBuf> = [
        "stadium-event.yaml",
        "theatre-event.yaml",
        "bookstore-warehouses.yaml",
    ]
    .iter()
    .map(|f| repo().join("examples").join(f))
    .collect();
    let mut apply = vec!["apply".to_owned()];
    for file in &examples {
        apply.extend(["-f".to_owned(), file.display().to_string()]);
    }
    let apply: Vec<&str> = apply.iter().map(String::as_str).collect();
    // An API server that served an older version of the CRDs publishes the new schema a
    // moment after the update, and kubectl validates against what it publishes: as after a
    // real upgrade, a field the new schema adds is "unknown" for that moment.
    let deadline = Instant::now() + MINUTE;
    loop {
        let out = kube.kubectl(&apply, None);
        if out.status.success() {
            break;
        }
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("unknown field") && Instant::now() < deadline,
            "kubectl apply of the examples failed: {said}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let events = declarations(&kube, "events", "Event");
    let warehouses = declarations(&kube, "warehouses", "Warehouse");
    let all = || async {
        let mut objects = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        objects.extend(
            warehouses
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items,
        );
        Ok::<_, String>(objects)
    };

    // Every declaration is finalized and becomes Ready once its workers run.
    eventually(&kube, "every declaration is Ready", 2 * MINUTE, || async {
        let objects = all().await?;
        let waiting: Vec<String> = objects
            .iter()
            .filter(|o| {
                !o.finalizers().iter().any(|f| f == FINALIZER)
                    || condition(o, "Ready").map(|c| c.0) != Some("True".into())
            })
            .map(|o| {
                format!(
                    "{}: {:?} {}",
                    o.name_any(),
                    o.finalizers(),
                    o.data["status"]
                )
            })
            .collect();
        if objects.len() == 4 && waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} declarations, waiting: {waiting:?}\n{}",
                objects.len(),
                log_of(&kube, "operator-a")
            ))
        }
    })
    .await;

    // Nothing failed on the way: no verb missing from the Role, no status refused, no shared
    // object created twice (a failed reconcile raises a Warning event).
    let warnings: Vec<String> = Api::<KubeEvent>::namespaced(kube.admin.clone(), &kube.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reporting_controller.as_deref() == Some(FIELD_MANAGER)
        })
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect();
    assert!(warnings.is_empty(), "the operator warned: {warnings:#?}");

    // The workloads: owned by the declarations that need them, stamped with their digest,
    // each with its headless Service, and written by the operator's apply alone.
    let sets = workloads(&kube).await;
    assert!(!sets.is_empty());
    let services: Api<Service> = Api::namespaced(kube.admin.clone(), &kube.namespace);
    for set in &sets {
        let owners: Vec<String> = set
            .owner_references()
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect();
        assert!(!owners.is_empty(), "{} has no owner", set.name_any());
        assert!(
            set.annotations().contains_key(APPLIED_DIGEST),
            "{} has no digest",
            set.name_any()
        );
        assert!(
            services.get_opt(&set.name_any()).await.unwrap().is_some(),
            "no Service for {}",
            set.name_any()
        );
        only_the_operator_applies(set).unwrap();
    }
    let holds = sets
        .iter()
        .find(|s| s.name_any() == "mercato-holds")
        .expect("a holds workload");
    assert!(holds
        .owner_references()
        .iter()
        .any(|o| o.name == "championship-final"));

    // The printer columns, as `kubectl get` shows them.
    let table = kube.kubectl_ok(&["get", "mev,wh"], None);
    assert!(
        table.contains("AVAILABLE") && table.contains("READY"),
        "{table}"
    );
    assert!(
        table.contains("championship-final") && table.contains("True"),
        "{table}"
    );

    // A changed spec is applied: the holds workers follow the event.
    merge_patch(
        &kube,
        "mev",
        "championship-final",
        r#"{"spec":{"workers":{"holds":{"replicas":3}}}}"#,
    );
    let bus_client = RedisBus::connect(&bus).await.unwrap();
    let sets_api: Api<StatefulSet> = Api::namespaced(kube.admin.clone(), &kube.namespace);
    let holds_replicas = |want: i32| {
        let sets_api = sets_api.clone();
        async move {
            let set = sets_api
                .get("mercato-holds")
                .await
                .map_err(|e| e.to_string())?;
            if replicas(&set) == want {
                Ok(set)
            } else {
                Err(format!("{} replicas", replicas(&set)))
            }
        }
    };
    let set = eventually(&kube, "the holds workers scale to 3", MINUTE, || {
        holds_replicas(3)
    })
    .await;
    only_the_operator_applies(&set).unwrap();

    // Scaled by hand, the workload is put back.
    kube.kubectl_ok(
        &["scale", "statefulset", "mercato-holds", "--replicas=7"],
        None,
    );
    eventually(
        &kube,
        "the hand-scaled holds workers are put back to 3",
        MINUTE,
        || holds_replicas(3),
    )
    .await;

    // Partitions only grow: the holds topic grows to 12, and asking for 4 again is refused
    // in status, and nothing shrinks.
    let bus_client = &bus_client;
    let holds_partitions = |want: u32| async move {
        let partitions = bus_client
            .partitions("holds")
            .await
            .map_err(|e| e.to_string())?;
        if partitions == want {
            Ok(())
        } else {
            Err(format!("{partitions} partitions"))
        }
    };
    merge_patch(
        &kube,
        "mev",
        "championship-final",
        r#"{"spec":{"workers":{"holds":{"partitions":12}}}}"#,
    );
    eventually(
        &kube,
        "the holds topic grows to 12 partitions",
        MINUTE,
        || holds_partitions(12),
    )
    .await;
    merge_patch(
        &kube,
        "mev",
        "championship-final",
        r#"{"spec":{"workers":{"holds":{"partitions":4}}}}"#,
    );
    eventually(
        &kube,
        "the shrink is reported as Degraded",
        MINUTE,
        || async {
            let event = events
                .get("championship-final")
                .await
                .map_err(|e| e.to_string())?;
            match condition(&event, "Degraded") {
                Some((status, reason)) if status == "True" && reason == "TopicCannotShrink" => {
                    Ok(())
                }
                _ => Err(format!("{}", event.data["status"]["conditions"])),
            }
        },
    )
    .await;
    holds_partitions(12).await.unwrap();

    // A second operator waits while the first leads; when the leader is killed, it takes over
    // once the Lease (15 s) runs out, starting beside declarations that already exist (which a
    // lost wake-up once left unreconciled for ever).
    let follower = {
        let operators = operators.clone();
        tokio::task::spawn_blocking(move || {
            let process =
                operators.start("operator-b", "operator-b: leading", Duration::from_secs(90));
            (process, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !follower.is_finished(),
        "a second operator leads while the first holds the Lease"
    );
    drop(leader);
    let killed = Instant::now();
    let (_follower, leading) = follower.await.unwrap();
    let takeover = leading - killed;
    assert!(
        takeover < Duration::from_secs(30),
        "the follower took {takeover:?} to lead"
    );
    eprintln!("leader killed; the other operator led after {takeover:?}");

    // The new leader acts on what the old one left: deleting a declaration waits for its
    // cleanup, then completes.
    kube.kubectl_ok(&["delete", "mev", "hamlet-globe", "--wait=false"], None);
    eventually(&kube, "the deleted Event is gone", MINUTE, || async {
        match events
            .get_opt("hamlet-globe")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(event) => Err(format!(
                "{}\n{:?}\n{}",
                event.data["status"],
                event.finalizers(),
                log_of(&kube, "operator-b")
            )),
        }
    })
    .await;

    // Each deletion policy: newark's sub-order topic goes with it, reno's (Retain, the
    // default) stays for a fulfilment system to read.
    merge_patch(
        &kube,
        "wh",
        "newark",
        r#"{"spec":{"deletionPolicy":"Delete"}}"#,
    );
    for warehouse in ["newark", "reno"] {
        let topic = warehouse_topic(warehouse);
        assert!(
            bus_client.partitions(&topic).await.is_ok(),
            "no topic {topic} before deletion"
        );
    }
    kube.kubectl_ok(&["delete", "mev,wh", "--all", "--timeout=90s"], None);
    assert!(
        matches!(
            bus_client.partitions(&warehouse_topic("newark")).await,
            Err(BusError::UnknownTopic(_))
        ),
        "deletionPolicy Delete left the topic"
    );
    assert!(
        bus_client
            .partitions(&warehouse_topic("reno"))
            .await
            .is_ok(),
        "deletionPolicy Retain removed the topic"
    );
    eventually(&kube, "the workloads are removed", MINUTE, || async {
        let left: Vec<String> = workloads(&kube)
            .await
            .iter()
            .map(|s| s.name_any())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}
