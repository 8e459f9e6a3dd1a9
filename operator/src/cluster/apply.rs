//! Server-side apply of the workloads, skipping objects whose applied digest already matches,
//! and removal of the operator's objects no declaration needs any more.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Error;
use crate::workloads::{Object, APPLIED_DIGEST, MANAGED_BY, PART_OF};

/// The field manager of everything the operator applies: stable, so a later apply by the
/// operator takes over its own fields and nobody else's.
pub const FIELD_MANAGER: &str = "mercato-operator";

/// How a role's StatefulSet stands after the apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    pub desired: i32,
    pub ready: i32,
}

#[derive(Debug, Default)]
pub struct ObjectsApplied {
    /// Objects patched (0 when everything already matched).
    pub writes: usize,
    /// StatefulSet name -> readiness.
    pub readiness: BTreeMap<String, Readiness>,
}

pub async fn apply_objects(
    client: &Client,
    namespace: &str,
    objects: &[Object],
) -> Result<ObjectsApplied, Error> {
    let mut applied = ObjectsApplied::default();
    for object in objects {
        match object {
            Object::Service(service) => {
                let (_, wrote) = apply_one::<Service>(client, namespace, service).await?;
                applied.writes += usize::from(wrote);
            }
            Object::StatefulSet(set) => {
                let (live, wrote) = apply_one::<StatefulSet>(client, namespace, set).await?;
                applied.writes += usize::from(wrote);
                let desired = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let ready = live
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                applied
                    .readiness
                    .insert(object.name().to_owned(), Readiness { desired, ready });
            }
        }
    }
    Ok(applied)
}

fn digest<T: Resource>(obj: &T) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_DIGEST))
        .map(String::as_str)
}

/// Whether a live object moved away from what was applied without its digest changing: a
/// StatefulSet scaled by hand (the digest cannot see that, and the API server fills in so many
/// defaults that comparing whole specs would always differ).
fn drifted<T: Serialize>(live: &T, desired: &T) -> bool {
    let replicas = |o: &T| {
        serde_json::to_value(o)
            .ok()
            .map(|v| v["spec"]["replicas"].clone())
    };
    replicas(live) != replicas(desired)
}

/// How many times one object is applied when the API server answers 409.
const APPLY_ATTEMPTS: u32 = 5;

/// Applies one object unless the live one carries the same digest. Returns the live object
/// and whether it was written.
async fn apply_one<T>(client: &Client, namespace: &str, desired: &T) -> Result<(T, bool), Error>
where
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<T> = Api::namespaced(client.clone(), namespace);
    let name = desired.name_any();
    if let Some(live) = api.get_opt(&name).await? {
        if digest(&live).is_some() && digest(&live) == digest(desired) && !drifted(&live, desired) {
            return Ok((live, false));
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // Two reconciles applying the same shared object at once (the Events of a namespace share
    // their workers) can meet in the API server: 1.20 answers one of them 409, AlreadyExists
    // when both created it, Conflict when both updated it (both seen on a real one). An apply
    // names no resourceVersion, so the same apply again is right, and lands.
    let mut attempts = 1;
    let live = loop {
        match api.patch(&name, &params, &Patch::Apply(desired)).await {
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < APPLY_ATTEMPTS => {
                tracing::debug!(name, reason = e.reason, "apply met another; applying again");
                attempts += 1;
            }
            applied => break applied?,
        }
    };
    tracing::info!(kind = T::kind(&()).as_ref(), namespace, name, "applied");
    Ok((live, true))
}

/// Deletes the StatefulSets and Services the operator made in `namespace` that are not in
/// `keep`: the roles no remaining declaration needs.
pub async fn remove_orphans(
    client: &Client,
    namespace: &str,
    keep: &BTreeSet<String>,
) -> Result<usize, Error> {
    let selector = format!(
        "{}={},{}={}",
        MANAGED_BY.0, MANAGED_BY.1, PART_OF.0, PART_OF.1
    );
    let mut removed = remove::<StatefulSet>(client, namespace, &selector, keep).await?;
    removed += remove::<Service>(client, namespace, &selector, keep).await?;
    Ok(removed)
}

async fn remove<T>(
    client: &Client,
    namespace: &str,
    selector: &str,
    keep: &BTreeSet<String>,
) -> Result<usize, Error>
where
    T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<T> = Api::namespaced(client.clone(), namespace);
    let mut removed = 0;
    for obj in api.list(&ListParams::default().labels(selector)).await? {
        let name = obj.name_any();
        if keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(
                    kind = T::kind(&()).as_ref(),
                    namespace,
                    name,
                    "removed: no declaration needs it"
                );
                removed += 1;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}
