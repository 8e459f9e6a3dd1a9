//! The operator on Kubernetes: one controller per kind, sharing a context.
//!
//! The controllers start once the API server serves the three kinds (their CRDs established).
//! Each reconcile validates the declaration, builds a plan from the namespace's declarations and
//! the time without I/O ([`plan`]), carries it out (the namespace's topics, the declaration's
//! content to the engines by the same code `mercato up` runs, the shared worker workloads by
//! server-side apply) and writes the kind's typed status. Nothing is written when nothing
//! changed; a failure shows as `Degraded` and a Warning event, and is retried with backoff.

mod apply;
mod declarations;
mod error;
pub mod metrics;
pub mod plan;
mod reconcile;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use mercato_core::coord::Coord;
use mercato_core::Ports;
use mercato_crds::{Event, Inventory, Warehouse};
use parking_lot::Mutex;

pub use apply::FIELD_MANAGER;
pub use declarations::{Declared, Stores};
pub use error::Error;
pub use metrics::Metrics;
pub use plan::RESYNC;
pub use reconcile::{reconcile, CLEANUP_PATIENCE, FINALIZER};

use crate::local::LocalReconciler;
use crate::sources::SourcePolicy;
use crate::topics::TopicAdmin;
use crate::workloads::{WorkerSettings, MANAGED_BY};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub ports: Ports,
    /// Applies a declaration's content (event rows, products, stock) to the engines.
    pub content: LocalReconciler,
    pub topics: Arc<dyn TopicAdmin>,
    pub settings: WorkerSettings,
    pub stores: Stores,
    pub metrics: Arc<Metrics>,
    /// Failed reconciles in a row, per object: the retry waits longer each time.
    pub backoff: Mutex<HashMap<String, u32>>,
    /// The clock deciding surges (a test sets its own).
    pub now: fn() -> DateTime<Utc>,
    /// Where the gateways keep their waiting rooms, when the operator shares it with them:
    /// the Events' queue and admission counts are read there.
    pub rooms: Option<Arc<dyn Coord>>,
}

impl Context {
    pub fn new(
        client: Client,
        ports: Ports,
        settings: WorkerSettings,
        stores: Stores,
        metrics: Arc<Metrics>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            recorder,
            content: LocalReconciler::new(ports.clone()),
            topics: Arc::new(Arc::clone(&ports.bus)),
            ports,
            settings,
            stores,
            metrics,
            backoff: Mutex::new(HashMap::new()),
            now: Utc::now,
            rooms: None,
        }
    }
}

/// Retries a failed reconcile after 5 s, doubling up to 5 minutes while it keeps failing.
pub fn error_policy<K: Declared>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = {
        let mut backoff = ctx.backoff.lock();
        let n = backoff.entry(reconcile::backoff_key(&*obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let wait = retry_after(attempts);
    tracing::warn!(kind = K::KIND, %error, attempts, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

pub fn retry_after(attempts: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << attempts.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// What the controllers are told besides their client and engines.
pub struct RunOptions {
    /// The image and resources of worker pods.
    pub settings: WorkerSettings,
    /// Which files an Inventory's `source.file` may name.
    pub sources: SourcePolicy,
    /// The gateways' Coord, when the operator shares it (Redis): the Events' waiting rooms
    /// are counted there. `None` for an operator with a Coord of its own.
    pub rooms: Option<Arc<dyn Coord>>,
}

/// Runs the three controllers until `shutdown` resolves.
///
/// The operator serves one namespace: it holds one set of engines, and the declarations that
/// share those engines share their topics and workers, so they belong together.
pub async fn run(
    client: Client,
    namespace: &str,
    ports: Ports,
    options: RunOptions,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let RunOptions {
        settings,
        sources,
        rooms,
    } = options;
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    tokio::select! {
        () = shutdown.clone() => return,
        () = wait_until_served(&client, namespace) => {}
    }
    let config = watcher::Config::default().any_semantic();
    // A worker StatefulSet changing (pods becoming ready, someone scaling it by hand) brings
    // a reconcile of every declaration that owns it.
    let workloads = Api::<StatefulSet>::namespaced(client.clone(), namespace);
    let managed = watcher::Config::default()
        .any_semantic()
        .labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let events = Controller::new(
        Api::<Event>::namespaced(client.clone(), namespace),
        config.clone(),
    )
    .watches(workloads.clone(), managed.clone(), owners::<Event>);
    let inventories = Controller::new(
        Api::<Inventory>::namespaced(client.clone(), namespace),
        config.clone(),
    )
    .watches(workloads.clone(), managed.clone(), owners::<Inventory>);
    let warehouses = Controller::new(
        Api::<Warehouse>::namespaced(client.clone(), namespace),
        config,
    )
    .watches(workloads, managed, owners::<Warehouse>);
    let stores = Stores {
        events: events.store(),
        inventories: inventories.store(),
        warehouses: warehouses.store(),
    };
    let mut ctx = Context::new(client, ports, settings, stores, metrics);
    // The same rule as `mercato up`: a declared `source.file` is read only under these folders.
    ctx.content = ctx.content.with_sources(sources);
    ctx.rooms = rooms;
    let ctx = Arc::new(ctx);
    // An inventory whose publishing a previous leader left unfinished is published again.
    match ctx.content.resume().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(inventories = n, "resumed interrupted publishing"),
        Err(error) => tracing::warn!(%error, "cannot resume interrupted publishing"),
    }
    let events = events
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::<Event>, error_policy::<Event>, Arc::clone(&ctx))
        .for_each(log_result::<Event, _>);
    let inventories = inventories
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::<Inventory>,
            error_policy::<Inventory>,
            Arc::clone(&ctx),
        )
        .for_each(log_result::<Inventory, _>);
    let warehouses = warehouses
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<Warehouse>, error_policy::<Warehouse>, ctx)
        .for_each(log_result::<Warehouse, _>);
    futures::join!(events, inventories, warehouses);
}

/// Waits until the API server serves the three kinds: until their CRDs are established, a
/// watch fails and the controllers would spin on it. Asks for one object of each kind rather
/// than reading the CRDs' `Established` condition, which would need a ClusterRole; the
/// operator's Role is namespaced, and a kind being served is what the watch needs.
async fn wait_until_served(client: &Client, namespace: &str) {
    served::<Event>(client, namespace).await;
    served::<Inventory>(client, namespace).await;
    served::<Warehouse>(client, namespace).await;
}

async fn served<K: Declared>(client: &Client, namespace: &str) {
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let mut wait = Duration::from_secs(1);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(kind = K::KIND, %error, retry_in = ?wait, "waiting for the kind to be served (is its CRD installed and established?)");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The declarations of kind `K` among a workload's owners.
fn owners<K: Declared>(set: StatefulSet) -> Vec<ObjectRef<K>> {
    let namespace = set.metadata.namespace.unwrap_or_default();
    set.metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.kind == K::KIND && o.api_version == K::api_version(&()))
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
        .collect()
}

async fn log_result<K: Declared, E: std::fmt::Display>(result: Result<(ObjectRef<K>, Action), E>) {
    match result {
        Ok((object, _)) => tracing::debug!(kind = K::KIND, name = object.name, "reconciled"),
        Err(error) => tracing::debug!(kind = K::KIND, %error, "reconcile failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after;

    #[test]
    fn retries_back_off_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
