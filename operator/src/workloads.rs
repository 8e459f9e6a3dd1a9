//! The Kubernetes objects that run a topology's worker roles, built without cluster access.
//!
//! Each role is a StatefulSet (`mercato-<role>`) and the headless Service it needs. A pod learns
//! its ordinal from the `apps.kubernetes.io/pod-index` label (Kubernetes 1.28+) and consumes the
//! partitions p with p % n == ordinal, where n is the replica count in its arguments; changing n
//! therefore rolls every pod, and for that short while two pods may both read a partition, which
//! at-least-once delivery with idempotent commands already allows.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ResourceRequirements, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::topology::{RolePlan, Topology};

/// Labels on everything the operator creates; cleanup of orphans selects by them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mercato-operator");
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "mercato");
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// A digest of what the operator applied: an object whose digest matches is left alone, so a
/// reconcile of an unchanged declaration writes nothing.
pub const APPLIED_DIGEST: &str = "mercato.dev/applied-digest";

/// Where a payments pod finds the CA of the gateway's certificate.
const WEBHOOK_CA_DIR: &str = "/etc/mercato/webhook-ca";
/// Where a payments pod finds the webhook secret.
const WEBHOOK_SECRET_DIR: &str = "/etc/mercato/webhook-secret";

/// How the operator runs workers: chart values, passed as the operator's flags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerSettings {
    pub image: String,
    pub image_pull_policy: String,
    /// Secrets worker pods pull the image with (a private registry).
    pub image_pull_secrets: Vec<String>,
    /// A Secret whose keys `MERCATO_BUS`, `MERCATO_STORE` and `MERCATO_COORD` name the engines.
    pub engines_secret: String,
    /// Where a payments worker's sandbox provider posts its webhooks: the gateway's Service.
    pub webhook_url: String,
    /// A Secret whose key `webhook-secret` holds the payment provider's webhook secret (the
    /// gateways verify with it); mounted into payments pods.
    pub webhook_secret: String,
    /// A Secret whose `ca.crt` signed the gateway's certificate, for an `https://` webhook URL
    /// (cert-manager writes `ca.crt` into the certificate's Secret); mounted into payments pods.
    pub webhook_ca_secret: Option<String>,
    pub service_account: Option<String>,
    pub resources: ResourceRequirements,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            image: format!("ghcr.io/mercato-dev/mercato:{}", env!("CARGO_PKG_VERSION")),
            image_pull_policy: "IfNotPresent".into(),
            image_pull_secrets: Vec::new(),
            engines_secret: "mercato-engines".into(),
            webhook_url: "http://mercato-gateway:8080/api/v1/payments/webhook".into(),
            webhook_secret: "mercato-webhook".into(),
            webhook_ca_secret: None,
            service_account: None,
            resources: resources("250m", "256Mi", "1Gi"),
        }
    }
}

/// What a worker pod requests (CPU, memory) and may use at most (memory).
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let quantity = |q: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.into());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity(cpu)),
            ("memory".to_owned(), quantity(memory)),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            quantity(memory_limit),
        )])),
        ..ResourceRequirements::default()
    }
}

/// An object the operator applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    StatefulSet(Box<StatefulSet>),
    Service(Box<Service>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::StatefulSet(_) => "StatefulSet",
            Object::Service(_) => "Service",
        }
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            Object::StatefulSet(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The objects are built from JSON so they read like the manifests they become; a field
    /// of the wrong shape is a bug here, reported rather than panicking the operator.
    #[error("the {kind} for role {role} does not fit its Kubernetes type: {cause}")]
    Shape {
        kind: &'static str,
        role: &'static str,
        cause: serde_json::Error,
    },
}

pub fn object_name(role: &str) -> String {
    format!("mercato-{role}")
}

/// Every object that runs the topology's roles in `namespace`. `owners` maps `Kind/name` to
/// the declaration's owner reference; a role's objects are owned by every declaration that
/// needs it, so Kubernetes collects them once the last of those is gone.
pub fn workloads(
    namespace: &str,
    topology: &Topology,
    owners: &BTreeMap<String, OwnerReference>,
    settings: &WorkerSettings,
) -> Result<Vec<Object>, BuildError> {
    let mut objects = Vec::with_capacity(topology.roles.len() * 2);
    for plan in &topology.roles {
        let owner_refs: Vec<&OwnerReference> = plan
            .needed_by
            .iter()
            .filter_map(|by| owners.get(by))
            .collect();
        objects.push(service(namespace, plan, &owner_refs)?);
        objects.push(stateful_set(namespace, plan, &owner_refs, settings)?);
    }
    Ok(objects)
}

fn labels(role: &str) -> serde_json::Value {
    json!({
        "app.kubernetes.io/name": "mercato-worker",
        COMPONENT: role,
        PART_OF.0: PART_OF.1,
        MANAGED_BY.0: MANAGED_BY.1,
    })
}

fn selector(role: &str) -> serde_json::Value {
    json!({ "app.kubernetes.io/name": "mercato-worker", COMPONENT: role })
}

fn metadata(namespace: &str, plan: &RolePlan, owners: &[&OwnerReference]) -> serde_json::Value {
    let mut meta = json!({
        "name": object_name(plan.role),
        "namespace": namespace,
        "labels": labels(plan.role),
    });
    if !owners.is_empty() {
        meta["ownerReferences"] = json!(owners);
    }
    meta
}

fn service(
    namespace: &str,
    plan: &RolePlan,
    owners: &[&OwnerReference],
) -> Result<Object, BuildError> {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(namespace, plan, owners),
        "spec": {
            // Headless: the StatefulSet's pods get stable names; nothing is load-balanced.
            "clusterIP": "None",
            "selector": selector(plan.role),
            "publishNotReadyAddresses": true,
        }
    });
    let mut service: Service = typed(value, "Service", plan.role)?;
    stamp(&mut service.metadata, &service.spec);
    Ok(Object::Service(Box::new(service)))
}

fn stateful_set(
    namespace: &str,
    plan: &RolePlan,
    owners: &[&OwnerReference],
    settings: &WorkerSettings,
) -> Result<Object, BuildError> {
    let mut args = vec![
        "worker".to_owned(),
        plan.role.to_owned(),
        format!("--replicas={}", plan.replicas),
    ];
    // A payments worker signs its webhooks with the installation's secret and verifies the
    // gateway with its CA: both mounted from Secrets, the operator never reads them.
    let mut mounts = Vec::new();
    if plan.role == "payments" {
        args.push(format!("--webhook-url={}", settings.webhook_url));
        args.push(format!(
            "--webhook-secret-file={WEBHOOK_SECRET_DIR}/webhook-secret"
        ));
        mounts.push((
            "webhook-secret",
            &settings.webhook_secret,
            "webhook-secret",
            WEBHOOK_SECRET_DIR,
        ));
        if let Some(secret) = &settings.webhook_ca_secret {
            args.push(format!("--webhook-cacert={WEBHOOK_CA_DIR}/ca.crt"));
            mounts.push(("webhook-ca", secret, "ca.crt", WEBHOOK_CA_DIR));
        }
    }
    let mut pod_spec = json!({
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": true,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "containers": [{
            "name": "worker",
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            "args": args,
            "env": [
                {
                    "name": "MERCATO_REPLICA",
                    "valueFrom": { "fieldRef": {
                        "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"
                    }},
                },
                { "name": "RUST_LOG", "value": "info" },
            ],
            "envFrom": [{ "secretRef": { "name": settings.engines_secret } }],
            "resources": settings.resources,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": { "drop": ["ALL"] },
            },
        }],
    });
    if !mounts.is_empty() {
        pod_spec["volumes"] = mounts
            .iter()
            .map(|(name, secret, key, _)| {
                json!({
                    "name": name,
                    "secret": { "secretName": secret, "items": [{ "key": key, "path": key }] },
                })
            })
            .collect();
        pod_spec["containers"][0]["volumeMounts"] = mounts
            .iter()
            .map(|(name, _, _, dir)| json!({ "name": name, "mountPath": dir, "readOnly": true }))
            .collect();
    }
    if !settings.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = settings
            .image_pull_secrets
            .iter()
            .map(|name| json!({ "name": name }))
            .collect();
    }
    if let Some(account) = &settings.service_account {
        pod_spec["serviceAccountName"] = json!(account);
    }
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(namespace, plan, owners),
        "spec": {
            "replicas": plan.replicas,
            "serviceName": object_name(plan.role),
            // Pods start and stop together: a surge needs its replicas at once, not in turn.
            "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": selector(plan.role) },
            "template": {
                "metadata": { "labels": labels(plan.role) },
                "spec": pod_spec,
            },
        }
    });
    let mut set: StatefulSet = typed(value, "StatefulSet", plan.role)?;
    stamp(&mut set.metadata, &set.spec);
    Ok(Object::StatefulSet(Box::new(set)))
}

fn typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    kind: &'static str,
    role: &'static str,
) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|cause| BuildError::Shape { kind, role, cause })
}

/// Records the digest of what is applied (labels, owners and spec) in an annotation.
fn stamp<S: Serialize>(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: &S,
) {
    let mut hasher = Sha256::new();
    // Serializing plain Kubernetes types to JSON cannot fail.
    hasher.update(
        serde_json::to_vec(&(&meta.labels, &meta.owner_references, spec)).unwrap_or_default(),
    );
    let digest = hex::encode(&hasher.finalize()[..12]);
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_DIGEST.to_owned(), digest);
}
