//! The Helm chart renders with its default values (and with the other branches of its values),
//! without a cluster or a helm binary: the templates are Go templates, rendered here by gtmpl
//! with the few Helm functions they use. Every rendered document must parse as its Kubernetes
//! type, and the arguments the chart gives `mercato` must be ones the binary accepts.

use std::collections::HashMap;
use std::path::Path;

use gtmpl::{Context, Func, FuncError, Template, Value};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;

fn chart() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mercato"))
}

fn to_gtmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::from(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect())
        }
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => serde_json::json!(b),
        Value::String(s) => serde_json::json!(s),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => serde_json::json!(i),
            (None, Some(f)) => serde_json::json!(f),
            _ => serde_json::Value::Null,
        },
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        _ => serde_json::Value::Null,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_json(other).to_string(),
    }
}

/// Helm's `toYaml`.
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = args else {
        return Err(FuncError::ExactlyXArgs("toYaml".into(), 1));
    };
    let yaml =
        serde_yaml::to_string(&to_json(value)).map_err(|e| FuncError::Generic(e.to_string()))?;
    Ok(Value::from(yaml.trim_end().to_owned()))
}

/// Helm's `nindent N TEXT`: a newline, then TEXT with every line indented by N spaces.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let [Value::Number(n), value] = args else {
        return Err(FuncError::ExactlyXArgs("nindent".into(), 2));
    };
    let pad = " ".repeat(n.as_u64().unwrap_or(0) as usize);
    let lines: Vec<String> = text(value).lines().map(|l| format!("{pad}{l}")).collect();
    Ok(Value::from(format!("\n{}", lines.join("\n"))))
}

/// Helm's `quote`.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = args else {
        return Err(FuncError::ExactlyXArgs("quote".into(), 1));
    };
    Ok(Value::from(serde_json::json!(text(value)).to_string()))
}

/// Renders every template of the chart with `values` merged over values.yaml, as release
/// `shop` in namespace `mercato`.
fn render(overrides: serde_json::Value) -> Vec<serde_yaml::Value> {
    render_release("shop", "mercato", overrides)
}

/// Renders every template of the chart as `helm template RELEASE -n NAMESPACE` would.
pub fn render_release(
    release: &str,
    namespace: &str,
    overrides: serde_json::Value,
) -> Vec<serde_yaml::Value> {
    let context = root_context(release, namespace, overrides);
    define_helpers(&context);
    // The templates are YAML files read in name order, like a folder of manifests.
    let files =
        mercato_operator::local::manifest_files(&chart().join("templates")).expect("templates/");
    let mut docs = Vec::new();
    for (file, text) in files {
        let out =
            render_text(&text, &context).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in serde_yaml::Deserializer::from_str(&out) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} renders invalid YAML: {e}\n{out}", file.display()));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

/// values.yaml with `overrides` merged over it, as `helm --set`/`-f` would.
fn values(overrides: serde_json::Value) -> serde_json::Value {
    let mut values: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    merge(&mut values, overrides);
    values
}

/// What templates see: .Values, .Release and .Chart.
fn root_context(release: &str, namespace: &str, overrides: serde_json::Value) -> Value {
    let values = values(overrides);
    let chart_meta: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    let root = serde_json::json!({
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": chart_meta["name"], "Version": chart_meta["version"], "AppVersion": chart_meta["appVersion"]},
    });
    to_gtmpl(&root)
}

/// Renders one template's text with the chart's helpers and functions.
fn render_text(text: &str, context: &Value) -> Result<String, String> {
    let mut template = Template::default();
    let funcs: [(&str, Func); 4] = [
        ("toYaml", to_yaml),
        ("nindent", nindent),
        ("quote", quote),
        ("include", include),
    ];
    template.add_funcs(&funcs);
    template.parse(text).map_err(|e| e.to_string())?;
    template
        .render(&Context::from(context.clone()))
        .map_err(|e| e.to_string())
}

thread_local! {
    /// The helpers of `_helpers.tpl`, rendered with the release's root context.
    static HELPERS: std::cell::RefCell<HashMap<String, String>> = Default::default();
}

/// Renders every `define` of `_helpers.tpl` with the root context, for `include`.
fn define_helpers(context: &Value) {
    let helpers =
        std::fs::read_to_string(chart().join("templates/_helpers.tpl")).expect("_helpers.tpl");
    let names: Vec<String> = helpers
        .split("define \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect();
    assert!(!names.is_empty(), "_helpers.tpl defines nothing");
    let mut rendered = HashMap::new();
    for name in names {
        let text = format!("{helpers}{{{{- template \"{name}\" . -}}}}");
        let out = render_text(&text, context).unwrap_or_else(|e| panic!("{name}: {e}"));
        rendered.insert(name, out.trim().to_owned());
    }
    HELPERS.with(|h| *h.borrow_mut() = rendered);
}

/// Helm's `include NAME CONTEXT`, for the context the chart always passes: the root.
fn include(args: &[Value]) -> Result<Value, FuncError> {
    let [Value::String(name), _context] = args else {
        return Err(FuncError::ExactlyXArgs("include".into(), 2));
    };
    HELPERS
        .with(|h| h.borrow().get(name).cloned())
        .map(Value::from)
        .ok_or_else(|| FuncError::Generic(format!("no template {name:?} in _helpers.tpl")))
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// Parses every document as its Kubernetes type; returns them by kind and name.
fn typed(docs: &[serde_yaml::Value]) -> HashMap<(String, String), serde_yaml::Value> {
    let mut by_kind = HashMap::new();
    for doc in docs {
        let kind = doc["kind"].as_str().expect("a kind").to_owned();
        let name = doc["metadata"]["name"].as_str().expect("a name").to_owned();
        let parsed = match kind.as_str() {
            "Deployment" => same_after_parsing::<Deployment>(doc),
            "Service" => same_after_parsing::<Service>(doc),
            "Secret" => same_after_parsing::<Secret>(doc),
            "ServiceAccount" => same_after_parsing::<ServiceAccount>(doc),
            "Role" => same_after_parsing::<Role>(doc),
            "RoleBinding" => same_after_parsing::<RoleBinding>(doc),
            "PodDisruptionBudget" => same_after_parsing::<PodDisruptionBudget>(doc),
            "HorizontalPodAutoscaler" => same_after_parsing::<HorizontalPodAutoscaler>(doc),
            "Ingress" => same_after_parsing::<Ingress>(doc),
            other => panic!("the chart renders an unexpected kind {other}"),
        };
        parsed.unwrap_or_else(|e| panic!("{kind} {name} does not parse: {e}"));
        by_kind.insert((kind, name), doc.clone());
    }
    by_kind
}

/// Parses a document as `T` and checks that nothing was lost on the way: a misspelt or
/// misplaced field parses (serde ignores unknown fields) but does not come back.
fn same_after_parsing<T: serde::de::DeserializeOwned + serde::Serialize>(
    doc: &serde_yaml::Value,
) -> Result<(), String> {
    let parsed: T = serde_yaml::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let original = serde_json::to_value(doc).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    if original == back {
        Ok(())
    } else {
        Err(format!(
            "fields were lost or changed:\n  rendered: {original}\n  parsed:   {back}"
        ))
    }
}

fn args(doc: &serde_yaml::Value) -> Vec<String> {
    let container = &doc["spec"]["template"]["spec"]["containers"][0];
    let mut out = vec!["mercato".to_owned()];
    out.extend(
        container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("a string").to_owned()),
    );
    out
}

#[test]
fn the_chart_renders_with_its_default_values() {
    let objects = typed(&render(serde_json::json!({})));
    let get = |kind: &str, name: &str| {
        objects
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", objects.keys()))
    };
    let operator = get("Deployment", "shop-operator");
    assert_eq!(operator["spec"]["replicas"], serde_yaml::Value::from(2));
    mercato::cli::accepts(&args(operator)).expect("the operator's arguments");
    let env = serde_yaml::to_string(&operator["spec"]["template"]["spec"]["containers"][0]["env"])
        .expect("env");
    assert!(
        env.contains("http://shop-gateway.mercato.svc:8080/api/v1/payments/webhook"),
        "{env}"
    );
    assert!(env.contains("shop-engines"), "{env}");
    assert!(env.contains("MERCATO_WEBHOOK_SECRET_NAME"), "{env}");
    // URL sources: allowed by prefix, downloaded to a scratch emptyDir (the root is read-only).
    assert!(env.contains("MERCATO_SOURCES_URL_PREFIXES"), "{env}");
    let operator_pod =
        serde_yaml::to_string(&operator["spec"]["template"]["spec"]).expect("operator pod");
    assert!(
        operator_pod.contains("mountPath: /tmp") && operator_pod.contains("emptyDir"),
        "{operator_pod}"
    );
    let gateway = get("Deployment", "shop-gateway");
    mercato::cli::accepts(&args(gateway)).expect("the gateway's arguments");
    // The secrets come from Secrets mounted as files, named in the gateway's environment.
    let pod = &gateway["spec"]["template"]["spec"];
    let volumes = serde_yaml::to_string(&pod["volumes"]).expect("volumes");
    assert!(
        volumes.contains("mercato-session-keys") && volumes.contains("mercato-webhook"),
        "{volumes}"
    );
    let gateway_env = serde_yaml::to_string(&pod["containers"][0]["env"]).expect("env");
    assert!(
        gateway_env.contains("/etc/mercato/session-keys")
            && gateway_env.contains("/etc/mercato/webhook-secret/webhook-secret")
            && !gateway_env.contains("MERCATO_ADMIN_EMAIL"),
        "{gateway_env}"
    );
    get("Service", "shop-gateway");
    let secret = get("Secret", "shop-engines");
    assert!(secret["stringData"]["MERCATO_BUS"]
        .as_str()
        .is_some_and(|b| b.starts_with("fluvio://")));
    get("ServiceAccount", "shop-operator");
    get("RoleBinding", "shop-operator");
    // Least privilege: nothing cluster-wide, no Secrets, no Deployments.
    assert!(
        !objects.keys().any(|(kind, _)| kind.starts_with("Cluster")),
        "{:?}",
        objects.keys()
    );
    let rules = serde_yaml::to_string(&get("Role", "shop-operator")["rules"]).expect("rules");
    assert!(
        !rules.contains("secrets") && !rules.contains("deployments") && !rules.contains('*'),
        "{rules}"
    );
    for needed in [
        "statefulsets",
        "services",
        "events/status",
        "warehouses/finalizers",
        "leases",
    ] {
        assert!(rules.contains(needed), "{needed} missing from {rules}");
    }
}

#[test]
fn the_chart_renders_its_other_branches() {
    let objects = typed(&render(serde_json::json!({
        "engines": {"existingSecret": "our-engines"},
        "gateway": {"holdTtl": "60s", "replicas": 3},
        "secrets": {"admin": {"email": "ops@example.com", "passwordSecret": "our-admin"}},
        "sources": {"s3Secret": "our-s3"},
    })));
    assert!(
        !objects.contains_key(&("Secret".to_owned(), "shop-engines".to_owned())),
        "an existing Secret replaces the chart's"
    );
    let gateway = &objects[&("Deployment".to_owned(), "shop-gateway".to_owned())];
    let args = args(gateway);
    assert!(args.contains(&"--hold-ttl=60s".to_owned()), "{args:?}");
    let pod = serde_yaml::to_string(&gateway["spec"]["template"]["spec"]).expect("pod");
    assert!(
        pod.contains("ops@example.com")
            && pod.contains("our-admin")
            && pod.contains("/etc/mercato/admin/password"),
        "{pod}"
    );
    mercato::cli::accepts(&args).expect("the gateway's arguments");
    let operator =
        serde_yaml::to_string(&objects[&("Deployment".to_owned(), "shop-operator".to_owned())])
            .expect("yaml");
    assert!(
        operator.contains("our-engines") && !operator.contains("shop-engines"),
        "{operator}"
    );
    assert!(operator.contains("our-s3"), "{operator}");
}

#[test]
fn the_chart_serves_tls_from_a_secret() {
    let objects = typed(&render(serde_json::json!({
        "gateway": {"tls": {"secretName": "shop-gateway-tls"}},
    })));
    let gateway = &objects[&("Deployment".to_owned(), "shop-gateway".to_owned())];
    let args = args(gateway);
    assert!(
        args.contains(&"--tls-cert=/etc/mercato/tls/tls.crt".to_owned())
            && args.contains(&"--tls-key=/etc/mercato/tls/tls.key".to_owned()),
        "{args:?}"
    );
    mercato::cli::accepts(&args).expect("the gateway's arguments");
    let pod = &gateway["spec"]["template"]["spec"];
    let volumes = serde_yaml::to_string(&pod["volumes"]).expect("volumes");
    assert!(volumes.contains("shop-gateway-tls"), "{volumes}");
    let mounts = serde_yaml::to_string(&pod["containers"][0]["volumeMounts"]).expect("mounts");
    assert!(mounts.contains("/etc/mercato/tls"), "{mounts}");
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["scheme"],
        "HTTPS"
    );
    let operator =
        serde_yaml::to_string(&objects[&("Deployment".to_owned(), "shop-operator".to_owned())])
            .expect("yaml");
    assert!(
        operator.contains("https://shop-gateway.mercato.svc:8080/api/v1/payments/webhook"),
        "{operator}"
    );
    assert!(operator.contains("MERCATO_WEBHOOK_CA_SECRET"), "{operator}");
    // Another Secret for the CA when the certificate's own does not carry ca.crt.
    let objects = typed(&render(serde_json::json!({
        "gateway": {"tls": {"secretName": "shop-gateway-tls", "caSecretName": "our-ca"}},
    })));
    let operator =
        serde_yaml::to_string(&objects[&("Deployment".to_owned(), "shop-operator".to_owned())])
            .expect("yaml");
    assert!(operator.contains("our-ca"), "{operator}");
}

/// Every override the tests render with, and the values a platform team would set.
fn overrides_in_use() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({}),
        serde_json::json!({
            "engines": {"existingSecret": "our-engines"},
            "gateway": {"holdTtl": "60s", "replicas": 3},
            "secrets": {"admin": {"email": "ops@example.com", "passwordSecret": "our-admin"}},
            "sources": {"s3Secret": "our-s3"},
        }),
        serde_json::json!({"gateway": {"tls": {"secretName": "shop-gateway-tls", "caSecretName": "our-ca"}}}),
        extras(),
    ]
}

fn extras() -> serde_json::Value {
    serde_json::json!({
        "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
        "gateway": {
            "autoscaling": {"enabled": true, "maxReplicas": 20},
            "ingress": {"enabled": true, "className": "nginx", "host": "tickets.example.com",
                        "tlsSecretName": "tickets-tls", "annotations": {"a.example/b": "c"}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "shop", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "web"},
            "podAnnotations": {"prometheus.io/scrape": "true"},
        },
        "operator": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}]}}}},
    })
}

#[test]
fn the_values_schema_accepts_what_the_chart_is_given_and_refuses_typos() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("values.schema.json")).expect("values.schema.json"),
    )
    .expect("the schema is JSON");
    let validator = jsonschema::draft7::new(&schema).expect("a draft-07 schema");
    for overrides in overrides_in_use() {
        let merged = values(overrides.clone());
        let errors: Vec<String> = validator
            .iter_errors(&merged)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{overrides}: {errors:?}");
    }
    for (typo, why) in [
        (serde_json::json!({"gateway": {"replcas": 3}}), "replcas"),
        (
            serde_json::json!({"image": {"pullPolicy": "Sometimes"}}),
            "Sometimes",
        ),
        (
            serde_json::json!({"gateway": {"podDisruptionBudget": {"apiVersion": "policy/v2"}}}),
            "policy/v2",
        ),
        (serde_json::json!({"workers": {"memory": "lots"}}), "lots"),
    ] {
        let merged = values(typo.clone());
        let errors: Vec<String> = validator
            .iter_errors(&merged)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(why)),
            "{typo} was not refused: {errors:?}"
        );
    }
}

#[test]
fn the_chart_renders_ingress_autoscaling_disruption_budgets_and_placement() {
    let objects = typed(&render(extras()));
    let get = |kind: &str, name: &str| {
        objects
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", objects.keys()))
    };
    let gateway = get("Deployment", "shop-gateway");
    // The autoscaler owns the replica count.
    assert!(gateway["spec"]["replicas"].is_null(), "{gateway:?}");
    let pod = serde_yaml::to_string(&gateway["spec"]["template"]).expect("pod");
    for wanted in [
        "regcred",
        "mirror",
        "dedicated",
        "pool: web",
        "prometheus.io/scrape",
    ] {
        assert!(pod.contains(wanted), "{wanted} missing from {pod}");
    }
    let operator = serde_yaml::to_string(get("Deployment", "shop-operator")).expect("operator");
    assert!(operator.contains("nodeAffinity"), "{operator}");
    // Worker pods pull with the same secrets: the operator is told their names.
    assert!(operator.contains("regcred,mirror"), "{operator}");
    let hpa = get("HorizontalPodAutoscaler", "shop-gateway");
    assert_eq!(hpa["spec"]["maxReplicas"], serde_yaml::Value::from(20));
    let ingress = serde_yaml::to_string(get("Ingress", "shop-gateway")).expect("ingress");
    assert!(
        ingress.contains("tickets.example.com") && ingress.contains("tickets-tls"),
        "{ingress}"
    );
    get("PodDisruptionBudget", "shop-gateway");
    get("PodDisruptionBudget", "shop-operator");
    // Kubernetes' recommended labels on every object.
    for ((kind, name), doc) in &objects {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "Helm",
            "{kind} {name}"
        );
        assert!(
            labels["helm.sh/chart"]
                .as_str()
                .is_some_and(|c| c.starts_with("mercato-")),
            "{kind} {name}: {labels:?}"
        );
    }
    // Off by default: no Ingress, no autoscaler; the disruption budgets are on.
    let defaults = typed(&render(serde_json::json!({})));
    assert!(!defaults
        .keys()
        .any(|(k, _)| k == "Ingress" || k == "HorizontalPodAutoscaler"));
    assert!(defaults.keys().any(|(k, _)| k == "PodDisruptionBudget"));
}

#[test]
fn the_install_notes_say_how_to_reach_the_gateway() {
    let notes = std::fs::read_to_string(chart().join("templates/NOTES.txt")).expect("NOTES.txt");
    let render_notes = |overrides: serde_json::Value| {
        let context = root_context("shop", "mercato", overrides);
        define_helpers(&context);
        render_text(&notes, &context).expect("NOTES.txt renders")
    };
    let plain = render_notes(serde_json::json!({}));
    assert!(
        plain.contains("kubectl port-forward -n mercato svc/shop-gateway 8080:8080")
            && plain.contains("kubectl get mev -n mercato -w")
            && plain.contains("mercato-session-keys"),
        "{plain}"
    );
    let exposed = render_notes(extras());
    assert!(
        exposed.contains("https://tickets.example.com/api/v1/events"),
        "{exposed}"
    );
}
