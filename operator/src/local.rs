//! The local runtime's apply step: topics become embedded topics, declarations become rows.

use std::path::Path;
use std::sync::Arc;

use mercato_core::bus::{BusError, TopicChange};
use mercato_core::domain::events::EventRecord;
use mercato_core::names::tables;
use mercato_core::repo::{self, RepoError};
use mercato_core::Ports;
use mercato_crds::{Manifest, ManifestError};
use serde::Serialize;

use crate::desired::{desired, platform_topics, DesiredState};

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
}

/// What applying one declaration did, as `kubectl apply` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub action: &'static str,
}

pub struct LocalReconciler {
    ports: Ports,
}

impl LocalReconciler {
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    /// Creates the platform topics (growing them if a release added partitions).
    pub async fn ensure_platform(&self) -> Result<(), ApplyError> {
        for t in platform_topics() {
            self.ensure_topic(&t.name, t.partitions).await?;
        }
        Ok(())
    }

    async fn ensure_topic(&self, name: &str, partitions: u32) -> Result<(), ApplyError> {
        match self.ports.bus.ensure_topic(name, partitions).await {
            Ok(TopicChange::Created) => tracing::info!(topic = name, partitions, "topic created"),
            Ok(TopicChange::Grown { from }) => {
                tracing::info!(topic = name, from, to = partitions, "topic grown")
            }
            Ok(TopicChange::Unchanged) => {}
            // Strimzi's rule: partitions never shrink; a larger existing topic is fine.
            Err(BusError::CannotShrink { .. }) => {}
            Err(cause) => {
                return Err(ApplyError::Topic {
                    topic: name.to_owned(),
                    cause,
                })
            }
        }
        Ok(())
    }

    /// Validates the whole stream first, then applies each declaration.
    pub async fn apply_stream(&self, yaml: &str) -> Result<Vec<Applied>, ApplyError> {
        let manifests = Manifest::parse_stream(yaml)?;
        let mut applied = Vec::with_capacity(manifests.len());
        for m in &manifests {
            applied.push(self.apply(desired(m)).await?);
        }
        Ok(applied)
    }

    /// Applies every `*.yaml` / `*.yml` file of a folder, in name order.
    pub async fn apply_dir(&self, dir: &Path) -> Result<Vec<Applied>, ApplyError> {
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
        let mut applied = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|cause| ApplyError::Read {
                path: file.display().to_string(),
                cause,
            })?;
            applied.extend(self.apply_stream(&text).await?);
        }
        Ok(applied)
    }

    async fn apply(&self, state: DesiredState) -> Result<Applied, ApplyError> {
        for t in &state.topics {
            self.ensure_topic(&t.name, t.partitions).await?;
        }
        let mut action = "unchanged";
        if let Some((mut record, index_key)) = state.event {
            let store = Arc::clone(&self.ports.store);
            let current = repo::get::<EventRecord>(&*store, tables::EVENTS, &record.id, "").await?;
            let previous_key = match &current {
                Some(c) if c.value.spec_json == record.spec_json => None,
                Some(c) => {
                    record.generation = c.value.generation + 1;
                    action = "configured";
                    c.value.spec().ok().map(|s| {
                        mercato_core::domain::events::index_key(
                            s.starts_at.timestamp_millis(),
                            &record.id,
                        )
                    })
                }
                None => {
                    record.generation = 1;
                    action = "created";
                    None
                }
            };
            if action != "unchanged" {
                repo::put(&*store, tables::EVENTS, &record.id, "", &record, None).await?;
                if let Some(old) = previous_key.filter(|k| *k != index_key) {
                    store
                        .delete(tables::EVENT_INDEX, "all", &old)
                        .await
                        .map_err(RepoError::from)?;
                }
                store
                    .put(
                        tables::EVENT_INDEX,
                        "all",
                        &index_key,
                        record.id.as_bytes().to_vec(),
                        None,
                    )
                    .await
                    .map_err(RepoError::from)?;
            }
        }
        tracing::info!(kind = state.kind, name = state.name, action, "applied");
        Ok(Applied {
            kind: state.kind,
            name: state.name,
            action,
        })
    }
}
