//! One reconcile, in four steps: validate the declaration, build the plan (pure, from the
//! namespace's declarations and `now`), apply it (topics, content to the engines, workloads),
//! and write the status it arrived at. On deletion, the cleanup the finalizer guards.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as K8sEvent, EventType};
use kube::runtime::finalizer::{finalizer, Event as Finalizing};
use kube::{Api, ResourceExt};
use mercato_crds::status::conditions as types;
use mercato_crds::{DeletionPolicy, Manifest};
use serde::Serialize;

use super::apply::{apply_objects, remove_orphans, ObjectsApplied, FIELD_MANAGER};
use super::declarations::{owner_reference, Declared};
use super::metrics::{FailureLabels, KindLabel};
use super::plan::{self, Plan};
use super::status::{self, Content, KindStatus, Observation};
use super::{Context, Error};
use crate::topics::{bus_topic_name, ensure_all, TopicReport};
use crate::workloads::object_name;

/// Guards what deleting a declaration must do first (a Warehouse's topic under `Delete`, the
/// shared workloads resized or removed).
pub const FINALIZER: &str = "mercato.dev/cleanup";
/// A cleanup that keeps failing stops holding the declaration back after this long, so that a
/// namespace (or a cluster without its engines) can always be deleted.
pub const CLEANUP_PATIENCE: Duration = Duration::from_secs(600);

pub async fn reconcile<K: Declared>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let kind = KindLabel { kind: K::KIND };
    ctx.metrics.reconciles.get_or_create(&kind).inc();
    ctx.stores.wait_until_ready().await;
    let namespace = obj
        .namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let (ns, context) = (&namespace, &ctx);
    let result = finalizer(&api, FINALIZER, Arc::clone(&obj), |event| async move {
        match event {
            Finalizing::Apply(obj) => apply(&*obj, ns, context).await,
            Finalizing::Cleanup(obj) => cleanup(&*obj, ns, context).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .duration
        .get_or_create(&kind)
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(action) => {
            ctx.backoff.lock().remove(&backoff_key(&*obj));
            Ok(action)
        }
        Err(error) => {
            ctx.metrics
                .failures
                .get_or_create(&FailureLabels {
                    kind: K::KIND,
                    reason: error.metric_label(),
                })
                .inc();
            report_failure(&*obj, &api, &error, &ctx).await;
            Err(error)
        }
    }
}

pub fn backoff_key<K: Declared>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

async fn apply<K: Declared>(obj: &K, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    let generation = obj.meta().generation;
    let now = (ctx.now)();
    // Validate.
    let manifest = match obj.manifest() {
        Ok(m) => m,
        Err(problem) => {
            let status = status::invalid(
                generation,
                problem.to_string(),
                obj.status(),
                timestamp(now),
            );
            write_status(obj, ctx, status).await?;
            // Nothing to retry: the next change of the spec brings the next reconcile.
            return Ok(Action::await_change());
        }
    };
    // Build.
    let snapshot = ctx.stores.snapshot(
        namespace,
        None,
        Some((&manifest, owner_reference(obj).unwrap_or_default())),
    );
    let plan = plan::build(namespace, &snapshot, &ctx.settings, now)?;
    // Apply.
    let done = carry_out(&plan, &manifest, namespace, ctx).await?;
    ctx.metrics
        .writes
        .get_or_create(&KindLabel { kind: K::KIND })
        .inc_by(done.applied.writes as u64);
    // Status.
    let live_room = matches!(
        &done.content.counts,
        status::Counts::Event { room: Some(room), .. } if room.is_live()
    );
    let status: K::Status = status::observed(
        Observation {
            generation,
            manifest: &manifest,
            topology: &plan.topology,
            topics: &done.topics,
            applied: &done.applied,
            content: done.content,
            now: timestamp(now),
        },
        obj.status(),
    );
    let settling = status::is_true(status.common(), types::PROGRESSING);
    write_status(obj, ctx, status).await?;
    let mut wait = plan.requeue_after(settling);
    if live_room {
        // Its queue and admission counts move by the second.
        wait = wait.min(plan::LIVE_ROOM);
    }
    Ok(Action::requeue(wait))
}

/// What carrying out a plan found.
struct Done {
    topics: Vec<TopicReport>,
    applied: ObjectsApplied,
    content: Content,
}

/// The I/O of a reconcile: topics first (the content goes onto them: catalog entries,
/// products), then the content to the engines, then the workloads; and the counts after.
async fn carry_out(
    plan: &Plan,
    manifest: &Manifest,
    namespace: &str,
    ctx: &Context,
) -> Result<Done, Error> {
    let topics = ensure_all(&*ctx.topics, &plan.topology.topics).await?;
    ctx.content.apply_manifest(manifest).await?;
    let applied = apply_objects(&ctx.client, namespace, &plan.objects).await?;
    let content = status::content(
        &*ctx.ports.store,
        ctx.rooms.as_deref(),
        manifest,
        (ctx.now)(),
    )
    .await?;
    Ok(Done {
        topics,
        applied,
        content,
    })
}

async fn cleanup<K: Declared>(obj: &K, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    match cleanup_steps(obj, namespace, ctx).await {
        Ok(()) => Ok(Action::await_change()),
        Err(error) => {
            let waited = obj
                .meta()
                .deletion_timestamp
                .as_ref()
                .and_then(|t| {
                    let since = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
                    Duration::try_from(since).ok()
                })
                .unwrap_or_default();
            if waited < CLEANUP_PATIENCE {
                return Err(error);
            }
            tracing::warn!(kind = K::KIND, namespace, name = obj.name_any(), %error, "cleanup keeps failing; letting the deletion go ahead");
            publish(
                ctx,
                obj,
                EventType::Warning,
                "CleanupAbandoned",
                format!(
                    "cleanup failed for {}s ({error}); the declaration is deleted without it",
                    waited.as_secs()
                ),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

async fn cleanup_steps<K: Declared>(obj: &K, namespace: &str, ctx: &Context) -> Result<(), Error> {
    let name = obj.name_any();
    // The shared workloads shrink to what the remaining declarations need; roles none of them
    // needs go (their owner references would also let Kubernetes collect them).
    let snapshot = ctx.stores.snapshot(namespace, Some((K::KIND, &name)), None);
    let plan = plan::build(namespace, &snapshot, &ctx.settings, (ctx.now)())?;
    apply_objects(&ctx.client, namespace, &plan.objects).await?;
    let keep: BTreeSet<String> = plan
        .topology
        .roles
        .iter()
        .map(|r| object_name(r.role))
        .collect();
    remove_orphans(&ctx.client, namespace, &keep).await?;
    if let Ok(Manifest::Warehouse { metadata, spec }) = obj.manifest() {
        let topic = bus_topic_name(&mercato_core::domain::commerce::warehouse_topic(
            &metadata.name,
        ));
        match spec.deletion_policy.unwrap_or_default() {
            DeletionPolicy::Retain => {
                tracing::info!(warehouse = name, topic, "deleted; its topic is retained")
            }
            DeletionPolicy::Delete => {
                let existed = ctx.topics.delete(&topic).await?;
                tracing::info!(warehouse = name, topic, existed, "deleted with its topic");
            }
        }
    }
    publish(
        ctx,
        obj,
        EventType::Normal,
        "Deleted",
        format!("{} {name} cleaned up", K::KIND),
    )
    .await;
    Ok(())
}

fn timestamp(now: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_millisecond(now.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The body of a status patch by server-side apply.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a, S> {
    api_version: &'a str,
    kind: &'a str,
    status: &'a S,
}

async fn patch_status<K: Declared>(api: &Api<K>, obj: &K, status: &K::Status) -> Result<(), Error> {
    let patch = StatusPatch {
        api_version: &K::api_version(&()),
        kind: &K::kind(&()),
        status,
    };
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the status unless it is what the object already shows, and publishes an Event for
/// each condition that changed.
async fn write_status<K: Declared>(obj: &K, ctx: &Context, status: K::Status) -> Result<(), Error> {
    if Some(&status) == obj.status() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    patch_status(&api, obj, &status).await?;
    ctx.metrics
        .writes
        .get_or_create(&KindLabel { kind: K::KIND })
        .inc();
    let before = obj.status().map(KindStatus::common);
    for change in status::transitions(before, status.common()) {
        let kind = if status::is_warning(change) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let reason = if change.type_ == types::READY && change.status == "True" {
            "Ready".to_owned()
        } else {
            change.reason.clone()
        };
        publish(
            ctx,
            obj,
            kind,
            &reason,
            format!("{}={}: {}", change.type_, change.status, change.message),
        )
        .await;
    }
    Ok(())
}

/// Makes a failed reconcile seen: a Warning event every time (Kubernetes folds repeats into a
/// series), and `Degraded` in the status of a declaration that is not being deleted. Best
/// effort: the API may be what failed.
async fn report_failure<K: Declared>(obj: &K, api: &Api<K>, error: &Error, ctx: &Context) {
    publish(
        ctx,
        obj,
        EventType::Warning,
        error.reason(),
        format!("{error}; retrying"),
    )
    .await;
    if obj.meta().deletion_timestamp.is_some() {
        return;
    }
    let status = status::failed(obj.status(), error, timestamp((ctx.now)()));
    if Some(&status) == obj.status() {
        return;
    }
    if let Err(e) = patch_status(api, obj, &status).await {
        tracing::debug!(error = %e, "could not show the failure in status");
    }
}

async fn publish<K: Declared>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = K8sEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish an event");
    }
}
