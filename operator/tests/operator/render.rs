//! `mercato operator render` of every example is stable (golden files under tests/golden/),
//! and every object it prints parses as its Kubernetes type. Run with MERCATO_BLESS=1 to
//! rewrite the golden files after an intended change.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use mercato_operator::render::render;
use mercato_operator::workloads::WorkerSettings;
use serde::Deserialize;

/// A fixed instant, so the golden files do not depend on the day they are checked.
const AT: &str = "2026-06-01T00:00:00Z";

/// The examples, as `mercato up` reads them: the folder's YAML files in name order.
fn examples() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let files = mercato_operator::local::manifest_files(&dir).expect("examples/");
    assert!(!files.is_empty());
    files
}

fn rendered(text: &str) -> String {
    render(
        text,
        "shop",
        AT.parse().expect("time"),
        &WorkerSettings::default(),
    )
    .expect("renders")
}

#[test]
fn rendering_every_example_matches_its_golden_file() {
    let bless = std::env::var_os("MERCATO_BLESS").is_some();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut drifted = Vec::new();
    for (example, text) in examples() {
        let out = rendered(&text);
        let file = golden.join(example.file_name().expect("a file"));
        if bless {
            std::fs::write(&file, &out).expect("write golden");
        } else if std::fs::read_to_string(&file).unwrap_or_default() != out {
            drifted.push(file.display().to_string());
        }
        assert_eq!(out, rendered(&text), "rendering is deterministic");
    }
    assert!(
        drifted.is_empty(),
        "render changed for {drifted:?}; review the difference, then run \
         `MERCATO_BLESS=1 cargo test -p mercato-operator --test operator render`"
    );
}

#[test]
fn every_rendered_object_parses_as_its_kubernetes_type() {
    let mut kinds = Vec::new();
    for (_, text) in examples() {
        let out = rendered(&text);
        let mut docs = serde_yaml::Deserializer::from_str(&out);
        let plan =
            serde_yaml::Value::deserialize(docs.next().expect("the bus plan")).expect("yaml");
        assert!(plan["topics"].as_sequence().is_some_and(|t| !t.is_empty()));
        for doc in docs {
            let value = serde_yaml::Value::deserialize(doc).expect("yaml");
            let kind = value["kind"].as_str().expect("a kind").to_owned();
            let original = serde_json::to_value(&value).expect("json");
            match kind.as_str() {
                "StatefulSet" => {
                    let set: StatefulSet = serde_yaml::from_value(value).expect("a StatefulSet");
                    // Nothing is lost on the way: a misplaced field parses but does not return.
                    assert_eq!(serde_json::to_value(&set).expect("json"), original);
                    let spec = set.spec.expect("spec");
                    assert!(spec.replicas.is_some_and(|r| r >= 1));
                    assert!(spec.template.spec.is_some());
                }
                "Service" => {
                    let service: Service = serde_yaml::from_value(value).expect("a Service");
                    assert_eq!(serde_json::to_value(&service).expect("json"), original);
                }
                other => panic!("unexpected kind {other}"),
            }
            kinds.push(kind);
        }
    }
    assert!(kinds.iter().any(|k| k == "StatefulSet"));
}

#[test]
fn an_invalid_manifest_is_refused_with_its_problems() {
    let err = render(
        "apiVersion: mercato.dev/v1alpha1\nkind: Warehouse\nmetadata: {name: w}\nspec:\n  location: {lat: 95, lon: 0}\n  workers: {allocator: {replicas: 5, partitions: 2}}\n",
        "shop",
        AT.parse().expect("time"),
        &WorkerSettings::default(),
    )
    .expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("spec.location.lat"), "{text}");
    assert!(text.contains("spec.workers.allocator.replicas"), "{text}");
}

#[test]
fn inside_the_on_sale_surge_the_holds_and_payments_workers_scale_up() {
    let stadium = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stadium-event.yaml");
    let text = std::fs::read_to_string(stadium).expect("example");
    let replicas = |at: &str| -> Vec<(String, i32)> {
        let out = render(
            &text,
            "shop",
            at.parse().expect("time"),
            &WorkerSettings::default(),
        )
        .expect("renders");
        serde_yaml::Deserializer::from_str(&out)
            .skip(1)
            .filter_map(|doc| {
                let value = serde_yaml::Value::deserialize(doc).ok()?;
                let set: StatefulSet = serde_yaml::from_value(value).ok()?;
                Some((set.metadata.name?, set.spec?.replicas?))
            })
            .collect()
    };
    // The example goes on sale at 2026-01-01T10:00Z with a 10-minute lead and a 2-hour surge.
    let holds_and_payments = |r: Vec<(String, i32)>| {
        r.into_iter()
            .filter(|(name, _)| name == "mercato-holds" || name == "mercato-payments")
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
    };
    assert_eq!(holds_and_payments(replicas("2026-01-01T09:49:00Z")), [2, 1]);
    assert_eq!(holds_and_payments(replicas("2026-01-01T09:50:00Z")), [8, 4]);
    assert_eq!(holds_and_payments(replicas("2026-01-01T11:59:59Z")), [8, 4]);
    assert_eq!(holds_and_payments(replicas("2026-01-01T12:00:00Z")), [2, 1]);
}

/// The worker StatefulSets the stadium example renders to with `settings`.
fn stadium_sets(settings: &WorkerSettings) -> Vec<StatefulSet> {
    let stadium = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stadium-event.yaml");
    let text = std::fs::read_to_string(stadium).expect("example");
    let out = render(&text, "shop", AT.parse().expect("time"), settings).expect("renders");
    serde_yaml::Deserializer::from_str(&out)
        .skip(1)
        .filter_map(|doc| serde_yaml::from_value(serde_yaml::Value::deserialize(doc).ok()?).ok())
        .collect()
}

#[test]
fn payments_pods_mount_the_webhook_secret_and_the_gateways_ca() {
    let settings = WorkerSettings {
        webhook_url: "https://shop-gateway.shop.svc:8080/api/v1/payments/webhook".into(),
        webhook_ca_secret: Some("shop-gateway-tls".into()),
        ..WorkerSettings::default()
    };
    let sets = stadium_sets(&settings);
    for set in &sets {
        let name = set.metadata.name.as_deref().expect("a name");
        let pod = set
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("a pod");
        let container = &pod.containers[0];
        let args = container.args.clone().unwrap_or_default();
        if name == "mercato-payments" {
            assert!(
                args.contains(&"--webhook-cacert=/etc/mercato/webhook-ca/ca.crt".to_owned()),
                "{args:?}"
            );
            assert!(
                args.contains(
                    &"--webhook-secret-file=/etc/mercato/webhook-secret/webhook-secret".to_owned()
                ),
                "{args:?}"
            );
            let volumes = pod.volumes.as_ref().expect("volumes");
            let secret_of = |name: &str| {
                volumes
                    .iter()
                    .find(|v| v.name == name)
                    .and_then(|v| v.secret.as_ref())
                    .and_then(|s| s.secret_name.clone())
            };
            assert_eq!(secret_of("webhook-ca").as_deref(), Some("shop-gateway-tls"));
            assert_eq!(
                secret_of("webhook-secret").as_deref(),
                Some("mercato-webhook")
            );
            let mounts = container.volume_mounts.as_ref().expect("mounts");
            assert!(mounts
                .iter()
                .any(|m| m.mount_path == "/etc/mercato/webhook-ca" && m.read_only == Some(true)));
        } else {
            assert!(pod.volumes.is_none(), "{name} mounts nothing");
            assert!(
                !args.iter().any(|a| a.contains("webhook")),
                "{name}: {args:?}"
            );
        }
    }
    assert!(sets
        .iter()
        .any(|s| s.metadata.name.as_deref() == Some("mercato-payments")));
}

#[test]
fn worker_pods_pull_with_the_configured_secrets() {
    let settings = WorkerSettings {
        image_pull_secrets: vec!["regcred".into(), "mirror".into()],
        ..WorkerSettings::default()
    };
    let sets = stadium_sets(&settings);
    assert!(!sets.is_empty());
    for set in sets {
        let pod = set.spec.and_then(|s| s.template.spec).expect("a pod");
        let names: Vec<String> = pod
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["regcred", "mirror"]);
    }
}
