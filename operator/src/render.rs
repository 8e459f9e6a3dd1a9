//! `mercato operator render`: what the operator would create for a manifest, as YAML.

use chrono::{DateTime, SecondsFormat, Utc};
use mercato_crds::{Manifest, ManifestError};
use serde::Serialize;

use crate::topology::{topology, RolePlan};
use crate::workloads::{workloads, BuildError, WorkerSettings};
use crate::TopicSpec;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The first document: what goes on the bus rather than into Kubernetes.
#[derive(Serialize)]
struct BusPlan<'a> {
    topics: &'a [TopicSpec],
    roles: &'a [RolePlan],
}

/// Renders a stream of declarations as the operator would reconcile them in `namespace` at
/// `at` (the time decides whether an on-sale surge is on).
pub fn render(
    manifests_yaml: &str,
    namespace: &str,
    at: DateTime<Utc>,
    settings: &WorkerSettings,
) -> Result<String, RenderError> {
    let declarations = Manifest::parse_stream(manifests_yaml)?;
    let topology = topology(&declarations, at);
    let objects = workloads(namespace, &topology, &Default::default(), settings)?;
    let names: Vec<String> = declarations
        .iter()
        .map(|d| format!("{}/{}", d.kind(), d.name()))
        .collect();
    let mut out = format!(
        "# mercato operator render: {} in namespace {namespace:?} at {}\n\
         # The first document is not a Kubernetes object: it lists the topics the operator\n\
         # creates (or grows; it never shrinks one) and the worker roles it runs.\n",
        if names.is_empty() {
            "no declarations".to_owned()
        } else {
            names.join(", ")
        },
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    out.push_str(&serde_yaml::to_string(&BusPlan {
        topics: &topology.topics,
        roles: &topology.roles,
    })?);
    for object in &objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(out)
}
