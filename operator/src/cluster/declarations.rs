//! The three declaration kinds, seen the same way by the controllers, and the snapshot of a
//! namespace's declarations that the topology is computed from.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use mercato_crds::status::{EventStatus, InventoryStatus, WarehouseStatus};
use mercato_crds::{Event, Inventory, Manifest, ManifestError, Warehouse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::status::KindStatus;

pub trait Declared:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    /// The declaration, validated as `mercato apply` validates it.
    fn manifest(&self) -> Result<Manifest, ManifestError>;
    /// The kind's own status.
    type Status: KindStatus;
    /// The status as it stands (`None` before the first is written).
    fn status(&self) -> Option<&Self::Status>;
}

/// The three kinds differ only in their name and how a manifest is made of them.
macro_rules! declared {
    ($kind:ident, $from:ident, $status:ident) => {
        impl Declared for $kind {
            const KIND: &'static str = stringify!($kind);
            type Status = $status;
            fn manifest(&self) -> Result<Manifest, ManifestError> {
                Manifest::$from(self)
            }
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    };
}

declared!(Event, from_event, EventStatus);
declared!(Inventory, from_inventory, InventoryStatus);
declared!(Warehouse, from_warehouse, WarehouseStatus);

const READY_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether a store is ready, or its writer is gone (the controllers are stopping: there is
/// nothing to wait for). One poll: the answer does not depend on being woken.
fn settled<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some()
}

/// The caches of every declaration the controllers watch.
#[derive(Clone)]
pub struct Stores {
    pub events: Store<Event>,
    pub inventories: Store<Inventory>,
    pub warehouses: Store<Warehouse>,
}

/// A namespace's valid, live declarations, and an owner reference for each (`Kind/name`).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub manifests: Vec<Manifest>,
    pub owners: BTreeMap<String, OwnerReference>,
}

impl Stores {
    /// Waits until every kind's cache holds its first full list.
    ///
    /// kube-runtime's readiness signal keeps one waker per store (a oneshot receiver shared
    /// behind a mutex), so of several reconciles waiting on another kind's store only the last
    /// is woken: an operator started beside existing Events waited forever in their reconciles
    /// (seen on a real API server). So readiness is asked again every 50 ms, not awaited.
    pub async fn wait_until_ready(&self) {
        while !(settled(&self.events) && settled(&self.inventories) && settled(&self.warehouses)) {
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// The namespace's declarations, leaving out those being deleted and `except`, and with
    /// `fresh` (the object being reconciled, which the cache may not have caught up with).
    pub fn snapshot(
        &self,
        namespace: &str,
        except: Option<(&str, &str)>,
        fresh: Option<(&Manifest, OwnerReference)>,
    ) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let skip = |kind: &str, name: &str| {
            except == Some((kind, name))
                || fresh
                    .as_ref()
                    .is_some_and(|(m, _)| (m.kind(), m.name()) == (kind, name))
        };
        collect(&self.events, namespace, &skip, &mut snapshot);
        collect(&self.inventories, namespace, &skip, &mut snapshot);
        collect(&self.warehouses, namespace, &skip, &mut snapshot);
        if let Some((manifest, owner)) = fresh {
            snapshot
                .owners
                .insert(format!("{}/{}", manifest.kind(), manifest.name()), owner);
            snapshot.manifests.push(manifest.clone());
        }
        // Stable order, whatever order the caches hold them in.
        snapshot
            .manifests
            .sort_by(|a, b| (a.kind(), a.name()).cmp(&(b.kind(), b.name())));
        snapshot
    }
}

fn collect<K: Declared>(
    store: &Store<K>,
    namespace: &str,
    skip: &dyn Fn(&str, &str) -> bool,
    snapshot: &mut Snapshot,
) {
    for obj in store.state() {
        let name = obj.name_any();
        if obj.namespace().as_deref() != Some(namespace)
            || obj.meta().deletion_timestamp.is_some()
            || skip(K::KIND, &name)
        {
            continue;
        }
        // An invalid declaration asks for nothing; its own reconcile reports why.
        let Ok(manifest) = obj.manifest() else {
            continue;
        };
        if let Some(owner) = owner_reference(&*obj) {
            snapshot.owners.insert(format!("{}/{name}", K::KIND), owner);
        }
        snapshot.manifests.push(manifest);
    }
}

/// A reference that makes a declaration one owner among several (not the controller): shared
/// workloads are collected by Kubernetes once their last owner is gone.
pub fn owner_reference<K: Declared>(obj: &K) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: obj.meta().name.clone()?,
        uid: obj.meta().uid.clone()?,
        controller: None,
        block_owner_deletion: None,
    })
}
