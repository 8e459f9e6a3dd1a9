//! The local runtime's apply step: topics become embedded topics, declarations become rows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mercato_core::bus::BusError;
use mercato_core::clock::now_ms;
use mercato_core::codec::encode;
use mercato_core::domain::catalog::{CatalogDoc, IngestRecord, InventoryRecord, PublishState};
use mercato_core::names::topics;
use mercato_core::repo::{self, catalog, RepoError};
use mercato_core::Ports;
use mercato_crds::{InventorySpec, Manifest, ManifestError};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::desired::{desired, platform_topics, DesiredState, TopicSpec};
use crate::inventory::{self, Publisher};
use crate::sources::{Source, SourceError, SourcePolicy};
use crate::topics::{ensure as ensure_bus_topic, TopicOutcome};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("topic {topic}: {cause}")]
    Topic { topic: String, cause: BusError },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("Inventory {name}: {cause}")]
    Source { name: String, cause: SourceError },
}

/// What applying one declaration did, as `kubectl apply` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub kind: &'static str,
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub action: &'static str,
}

pub struct LocalReconciler {
    ports: Ports,
    /// The publisher of each inventory still sending its records: a newer apply replaces it.
    publishers: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    /// The catalog entry of each event as this process last sent it to the ingest topic.
    catalogued: Mutex<HashMap<String, Vec<u8>>>,
    /// Which files a `source.file` may name.
    sources: SourcePolicy,
}

impl LocalReconciler {
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            publishers: Arc::new(Mutex::new(HashMap::new())),
            catalogued: Mutex::new(HashMap::new()),
            sources: SourcePolicy::default(),
        }
    }

    /// Reads product sources only as `sources` allows; without this, none is read.
    pub fn with_sources(mut self, sources: SourcePolicy) -> Self {
        self.sources = sources;
        self
    }

    /// Publishes again, as a new generation, every inventory whose publishing a stop cut short.
    pub async fn resume(&self) -> Result<usize, ApplyError> {
        let mut after: Option<String> = None;
        let mut resumed = 0;
        loop {
            let (records, next) =
                catalog::inventory_page(&*self.ports.store, after.as_deref(), 100).await?;
            for record in records {
                if record.publish.finished_ms.is_some() || record.publish.error.is_some() {
                    continue;
                }
                let Ok(spec) = serde_json::from_str::<InventorySpec>(&record.spec_json) else {
                    continue;
                };
                // The stored path is checked again: the policy may have changed since.
                let source = match &spec.source {
                    Some(s) => match self.sources.locate(s, None).await {
                        Ok(source) => Some(source),
                        Err(e) => {
                            tracing::warn!(inventory = record.name, error = %e, "an interrupted publish cannot resume");
                            let mut record = record;
                            record.publish.error = Some(e.to_string());
                            catalog::save_inventory(&*self.ports.store, &record).await?;
                            continue;
                        }
                    },
                    None => None,
                };
                tracing::info!(inventory = record.name, "resuming an interrupted publish");
                self.publish(record, spec, source).await?;
                resumed += 1;
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(resumed),
            }
        }
    }

    /// Creates the platform topics (growing them if a release added partitions).
    pub async fn ensure_platform(&self) -> Result<(), ApplyError> {
        for t in platform_topics() {
            self.ensure_topic(&t.name, t.partitions).await?;
        }
        Ok(())
    }

    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<(), ApplyError> {
        let spec = TopicSpec {
            name: name.to_owned(),
            partitions,
        };
        let report = ensure_bus_topic(&self.ports.bus, &spec)
            .await
            .map_err(|cause| ApplyError::Topic {
                topic: name.to_owned(),
                cause,
            })?;
        match report.outcome {
            TopicOutcome::Created => tracing::info!(topic = name, partitions, "topic created"),
            TopicOutcome::Grown { from } => {
                tracing::info!(topic = name, from, to = partitions, "topic grown")
            }
            TopicOutcome::Unchanged => {}
            // Strimzi's rule: partitions never shrink; a larger existing topic serves as is.
            TopicOutcome::Refused { reason, .. } => tracing::debug!(topic = name, reason),
        }
        Ok(())
    }

    /// Validates the whole stream first, then applies each declaration. Relative source paths
    /// of Inventories are resolved against `base_dir`, the folder the manifest came from.
    pub async fn apply_stream(
        &self,
        yaml: &str,
        base_dir: Option<&Path>,
    ) -> Result<Vec<ApplyReport>, ApplyError> {
        let manifests = Manifest::parse_stream(yaml)?;
        let mut applied = Vec::with_capacity(manifests.len());
        for m in &manifests {
            applied.push(self.apply(desired(m), base_dir).await?);
        }
        Ok(applied)
    }

    /// Applies every `*.yaml` / `*.yml` file of a folder, in name order.
    pub async fn apply_dir(&self, dir: &Path) -> Result<Vec<ApplyReport>, ApplyError> {
        let mut applied = Vec::new();
        for (_, text) in manifest_files(dir)? {
            applied.extend(self.apply_stream(&text, Some(dir)).await?);
        }
        Ok(applied)
    }

    /// Applies one validated declaration's content (rows, products, stock), leaving topics to
    /// the caller: the operator ensures the whole namespace's topics itself.
    pub async fn apply_manifest(&self, manifest: &Manifest) -> Result<ApplyReport, ApplyError> {
        self.apply_content(desired(manifest), None).await
    }

    async fn apply(
        &self,
        state: DesiredState,
        base_dir: Option<&Path>,
    ) -> Result<ApplyReport, ApplyError> {
        for t in &state.topics {
            self.ensure_topic(&t.name, t.partitions).await?;
        }
        self.apply_content(state, base_dir).await
    }

    async fn apply_content(
        &self,
        state: DesiredState,
        base_dir: Option<&Path>,
    ) -> Result<ApplyReport, ApplyError> {
        let mut action = "unchanged";
        if let Some(spec) = state.inventory.clone() {
            action = self.apply_inventory(&state.name, spec, base_dir).await?;
        }
        if let Some((record, spec)) = &state.warehouse {
            action = crate::warehouse::apply(&self.ports, record.clone(), spec).await?;
        }
        if let Some(doc) = state.catalog.clone() {
            // Sent once per process even when unchanged (a catalog that predates this event's
            // release learns of it this way), then only when it changes: the operator applies
            // at every reconcile, and each upsert costs the index a commit.
            self.catalogue(doc).await?;
        }
        if let Some(mut record) = state.event {
            let store = &*self.ports.store;
            let current = repo::events::load(store, &record.id).await?;
            let changed = match &current {
                Some(c) if c.value.spec_json == record.spec_json => false,
                Some(c) => {
                    record.generation = c.value.generation + 1;
                    action = "configured";
                    true
                }
                None => {
                    record.generation = 1;
                    action = "created";
                    true
                }
            };
            if changed {
                let replaced = current.as_ref().map(|c| &c.value);
                repo::events::save(store, &record, replaced).await?;
            }
        }
        tracing::info!(kind = state.kind, name = state.name, action, "applied");
        Ok(ApplyReport {
            kind: state.kind,
            name: state.name,
            action,
        })
    }
}

/// The `*.yaml` / `*.yml` files of a folder, in name order, with their text.
pub fn manifest_files(dir: &Path) -> Result<Vec<(std::path::PathBuf, String)>, ApplyError> {
    let read_err = |cause| ApplyError::Read {
        path: dir.display().to_string(),
        cause,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).map_err(|cause| ApplyError::Read {
                path: file.display().to_string(),
                cause,
            })?;
            Ok((file, text))
        })
        .collect()
}

/// The declarations of a folder (every file valid, or an error).
pub fn read_manifests(dir: &Path) -> Result<Vec<Manifest>, ApplyError> {
    let mut manifests = Vec::new();
    for (_, text) in manifest_files(dir)? {
        manifests.extend(Manifest::parse_stream(&text)?);
    }
    Ok(manifests)
}

impl LocalReconciler {
    async fn catalogue(&self, doc: CatalogDoc) -> Result<(), ApplyError> {
        let id = doc.id.clone();
        let record = encode(&IngestRecord::Event(Box::new(doc)));
        if self.catalogued.lock().get(&id) == Some(&record) {
            return Ok(());
        }
        self.ports
            .bus
            .send_batch(
                topics::INGEST,
                vec![(id.clone().into_bytes(), record.clone())],
            )
            .await
            .map_err(RepoError::from)?;
        self.catalogued.lock().insert(id, record);
        Ok(())
    }

    /// Records the declaration and starts publishing its products, unless nothing changed.
    async fn apply_inventory(
        &self,
        name: &str,
        mut spec: InventorySpec,
        base_dir: Option<&Path>,
    ) -> Result<&'static str, ApplyError> {
        let source_err = |cause| ApplyError::Source {
            name: name.to_owned(),
            cause,
        };
        let current = catalog::load_inventory(&*self.ports.store, name).await?;
        let finished =
            |c: &InventoryRecord| c.publish.finished_ms.is_some() && c.publish.error.is_none();
        // A URL pinned by its checksum is what the declaration says it is: its digest is the
        // declaration's (the bytes are verified against the checksum when downloaded), so an
        // unchanged one is not downloaded again at every reconcile.
        // Serializing a validated spec to JSON cannot fail: it has only plain fields.
        let pinned_digest = match spec.source.as_ref() {
            Some(s) if s.url.is_some() && s.sha256.is_some() => {
                let spec_json = serde_json::to_string(&spec).unwrap_or_default();
                Some(inventory::digest(&spec_json, None).map_err(source_err)?)
            }
            _ => None,
        };
        if let (Some(digest), Some(c)) = (&pinned_digest, &current) {
            if c.digest == *digest && finished(c) {
                return Ok("unchanged");
            }
        }
        let source = match &mut spec.source {
            Some(s) => {
                let source = self.sources.locate(s, base_dir).await.map_err(source_err)?;
                if s.file.is_some() {
                    s.file = Some(source.path().display().to_string());
                }
                Some(source)
            }
            None => None,
        };
        let spec_json = serde_json::to_string(&spec).unwrap_or_default();
        let digest = match pinned_digest {
            Some(digest) => digest,
            None => {
                let spec_json = spec_json.clone();
                let source = source.clone();
                tokio::task::spawn_blocking(move || inventory::digest(&spec_json, source.as_ref()))
                    .await
                    .map_err(|e| source_err(SourceError::Invalid(e.to_string())))?
                    .map_err(source_err)?
            }
        };
        let action = match &current {
            Some(c) if c.digest == digest && finished(c) => return Ok("unchanged"),
            Some(_) => "configured",
            None => "created",
        };
        let record = InventoryRecord {
            name: name.to_owned(),
            seller: spec.seller.id.clone(),
            seller_name: spec.seller.name.clone(),
            low_stock_threshold: spec.low_stock_threshold(),
            generation: current.map_or(0, |c| c.generation),
            spec_json,
            digest,
            publish: PublishState::default(),
        };
        self.publish(record, spec, source).await?;
        Ok(action)
    }

    /// Saves a new generation of the inventory and publishes it in the background, replacing
    /// a publisher still at work on an older one.
    async fn publish(
        &self,
        mut record: InventoryRecord,
        spec: InventorySpec,
        source: Option<Source>,
    ) -> Result<(), ApplyError> {
        record.generation += 1;
        record.publish = PublishState {
            started_ms: now_ms(),
            ..PublishState::default()
        };
        if let Some(old) = self.publishers.lock().remove(&record.name) {
            old.abort();
        }
        catalog::save_inventory(&*self.ports.store, &record).await?;
        let ports = self.ports.clone();
        let name = record.name.clone();
        let publishers = Arc::clone(&self.publishers);
        let task = tokio::spawn(async move {
            let name = record.name.clone();
            let publisher = Publisher {
                bus: &*ports.bus,
                store: &*ports.store,
                record,
                spec,
                source,
            };
            if let Err(e) = publisher.run().await {
                tracing::error!(inventory = name, error = %e, "publishing stopped; it resumes at the next start");
            }
        });
        publishers.lock().insert(name, task);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mercato_core::bus::{Bus, EmbeddedBus};
    use mercato_core::coord::EmbeddedCoord;
    use mercato_core::store::EmbeddedStore;

    use super::*;

    const EVENT: &str = r#"
apiVersion: mercato.dev/v1alpha1
kind: Event
metadata: {name: final}
spec:
  title: Final
  venue: {name: Ground, city: Leeds, lat: 53.8, lon: -1.5}
  startsAt: 2027-05-29T19:00:00Z
  onSaleAt: 2026-01-10T10:00:00Z
  tiers: [{id: a, name: A, price: {amount: 100, currency: GBP}}]
  sections: [{id: s1, tier: a, rows: 1, seatsPerRow: 2}]
"#;

    async fn ingest_records(bus: &dyn Bus) -> u64 {
        let mut total = 0;
        for p in 0..bus.partitions(topics::INGEST).await.expect("topic") {
            total += bus.end_offset(topics::INGEST, p).await.expect("offset");
        }
        total
    }

    /// The operator applies at every reconcile: an unchanged event must not be sent to the
    /// catalog each time (every upsert costs the index a commit), a changed one must.
    #[tokio::test]
    async fn an_event_is_catalogued_once_per_process_and_again_when_it_changes() {
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
        let ports = Ports {
            bus: Arc::clone(&bus),
            store: Arc::new(EmbeddedStore::in_memory().expect("store")),
            coord: Arc::new(EmbeddedCoord::new()),
        };
        let local = LocalReconciler::new(ports.clone());
        local.ensure_platform().await.expect("topics");
        let [event] = Manifest::parse_stream(EVENT)
            .expect("valid")
            .try_into()
            .expect("one");
        local.apply_manifest(&event).await.expect("first");
        assert_eq!(ingest_records(&*bus).await, 1);
        local.apply_manifest(&event).await.expect("again");
        assert_eq!(ingest_records(&*bus).await, 1, "unchanged: not sent again");
        let [changed] = Manifest::parse_stream(&EVENT.replace("title: Final", "title: Cup Final"))
            .expect("valid")
            .try_into()
            .expect("one");
        local.apply_manifest(&changed).await.expect("changed");
        assert_eq!(ingest_records(&*bus).await, 2, "changed: sent");
        // A new process (a restart, another operator replica) sends it once more.
        LocalReconciler::new(ports)
            .apply_manifest(&changed)
            .await
            .expect("new process");
        assert_eq!(ingest_records(&*bus).await, 3);
    }
}
