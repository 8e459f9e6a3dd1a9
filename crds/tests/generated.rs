//! The committed CRD YAML (crds/generated/ and the chart's crds/) must be what the types
//! generate. Run with MERCATO_BLESS=1 to rewrite both after changing a type.

use std::path::PathBuf;

fn folders() -> [PathBuf; 2] {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        crate_dir.join("generated"),
        crate_dir.join("../charts/mercato/crds"),
    ]
}

#[test]
fn committed_definitions_match_the_types() {
    let bless = std::env::var_os("MERCATO_BLESS").is_some();
    let mut drifted = Vec::new();
    for (file, yaml) in mercato_crds::definitions_yaml().expect("definitions serialize") {
        for folder in folders() {
            let path = folder.join(file);
            if bless {
                std::fs::write(&path, &yaml).expect("write definition");
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != yaml {
                drifted.push(path.display().to_string());
            }
        }
    }
    assert!(
        drifted.is_empty(),
        "out of date: {drifted:?}; run `MERCATO_BLESS=1 cargo test -p mercato-crds --test generated` (or `just crds`)"
    );
}

/// The API server refuses a schema whose `enum` lists `null` (kube-rs#1821): an optional
/// enum is `nullable` instead.
#[test]
fn no_enum_lists_null() {
    for (file, yaml) in mercato_crds::definitions_yaml().expect("definitions serialize") {
        let value: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("yaml");
        let mut stack = vec![&value];
        while let Some(node) = stack.pop() {
            match node {
                serde_yaml::Value::Mapping(map) => {
                    if let Some(serde_yaml::Value::Sequence(values)) = map.get("enum") {
                        assert!(!values.iter().any(|v| v.is_null()), "{file}: {values:?}");
                    }
                    stack.extend(map.values());
                }
                serde_yaml::Value::Sequence(items) => stack.extend(items),
                _ => {}
            }
        }
    }
}

#[test]
fn definitions_carry_what_kubectl_users_rely_on() {
    for crd in mercato_crds::definitions() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "mercato.dev");
        assert_eq!(
            names.categories.as_deref(),
            Some(&["mercato".to_owned()][..])
        );
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()));
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.to_uppercase())
            .collect();
        let expected: &[&str] = match names.kind.as_str() {
            "Event" => &[
                "AVAILABLE",
                "HELD",
                "SOLD",
                "STANDING",
                "QUEUE",
                "ADMITTED",
                "READY",
                "AGE",
            ],
            "Inventory" => &["PRODUCTS", "REJECTED", "READY", "AGE"],
            "Warehouse" => &["SKUS", "UNITS", "READY", "AGE"],
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(columns, expected, "{}", names.kind);
    }
}

#[test]
fn schemas_bound_what_can_be_bounded() {
    let [event, _, warehouse] = mercato_crds::definitions();
    let schema = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        serde_json::to_value(&crd.spec.versions[0].schema).expect("schema")
    };
    let event = schema(&event);
    let spec = &event["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["venue"]["properties"]["lat"]["maximum"], 90.0);
    assert_eq!(
        spec["sections"]["items"]["properties"]["rows"]["minimum"],
        1.0
    );
    assert_eq!(
        spec["sections"]["items"]["properties"]["generalAdmission"]["properties"]["capacity"]
            ["maximum"],
        100000.0
    );
    assert!(spec["holdDuration"]["pattern"].is_string());
    assert_eq!(
        spec["workers"]["properties"]["holds"]["properties"]["replicas"]["maximum"],
        256.0
    );
    let warehouse = schema(&warehouse);
    let location =
        &warehouse["openAPIV3Schema"]["properties"]["spec"]["properties"]["location"]["properties"];
    assert_eq!(location["lon"]["minimum"], -180.0);
}
