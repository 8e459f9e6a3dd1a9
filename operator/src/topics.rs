//! Topics with Strimzi's topic-operator semantics: "already exists" is success, partitions only
//! grow, and a refused change is an outcome to report in status, not an error to retry forever.

use std::sync::Arc;

use async_trait::async_trait;
use mercato_core::bus::{validate_topic_name, Bus, BusError, TopicChange};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::TopicSpec;

/// What the operator needs of a bus's topic administration. Every [`Bus`] is one (the embedded
/// log, Fluvio, Redis Streams): their `ensure_topic` already treats a topic another process
/// created first as success.
#[async_trait]
pub trait TopicAdmin: Send + Sync {
    /// The topic's partitions, or `None` when it does not exist.
    async fn partitions(&self, topic: &str) -> Result<Option<u32>, BusError>;
    /// Creates the topic, or grows it to `partitions`.
    async fn create_or_grow(&self, topic: &str, partitions: u32) -> Result<TopicChange, BusError>;
    /// Deletes the topic and everything in it; `false` when there was none.
    async fn delete(&self, topic: &str) -> Result<bool, BusError>;
}

#[async_trait]
impl TopicAdmin for Arc<dyn Bus> {
    async fn partitions(&self, topic: &str) -> Result<Option<u32>, BusError> {
        match Bus::partitions(&**self, topic).await {
            Ok(n) => Ok(Some(n)),
            Err(BusError::UnknownTopic(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_or_grow(&self, topic: &str, partitions: u32) -> Result<TopicChange, BusError> {
        self.ensure_topic(topic, partitions).await
    }

    async fn delete(&self, topic: &str) -> Result<bool, BusError> {
        self.delete_topic(topic).await
    }
}

/// What ensuring one topic came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum TopicOutcome {
    Created,
    Grown {
        from: u32,
    },
    Unchanged,
    /// The change was not made; the topic keeps the partitions it has.
    Refused {
        partitions: u32,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicReport {
    /// The name on the bus (see [`bus_topic_name`]).
    pub name: String,
    /// The partitions the topic has now.
    pub partitions: u32,
    #[serde(flatten)]
    pub outcome: TopicOutcome,
}

/// A declared topic name as the bus accepts it: lowercase letters, digits and '-', at most 63
/// characters (Fluvio's rule). Other characters become '-'; a longer name keeps its first 50
/// characters and gains a digest of the whole, so two long names never meet.
pub fn bus_topic_name(declared: &str) -> String {
    let mapped: String = declared
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mapped = mapped.trim_matches('-');
    if !mapped.is_empty() && mapped.len() <= 63 && mapped == declared {
        return mapped.to_owned();
    }
    let digest = hex::encode(&Sha256::digest(declared.as_bytes())[..6]);
    let head: String = mapped.chars().take(50).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        format!("t-{digest}")
    } else {
        format!("{head}-{digest}")
    }
}

/// Brings one topic to at least its declared partitions.
pub async fn ensure(admin: &dyn TopicAdmin, spec: &TopicSpec) -> Result<TopicReport, BusError> {
    let name = bus_topic_name(&spec.name);
    validate_topic_name(&name)?;
    let report = |partitions, outcome| TopicReport {
        name: name.clone(),
        partitions,
        outcome,
    };
    if let Some(current) = admin.partitions(&name).await? {
        if current > spec.partitions {
            return Ok(report(
                current,
                TopicOutcome::Refused {
                    partitions: current,
                    reason: format!(
                        "topic {name} has {current} partitions and partitions never shrink; \
                         {} asked for",
                        spec.partitions
                    ),
                },
            ));
        }
        if current == spec.partitions {
            return Ok(report(current, TopicOutcome::Unchanged));
        }
    }
    match admin.create_or_grow(&name, spec.partitions).await {
        Ok(TopicChange::Created) => Ok(report(spec.partitions, TopicOutcome::Created)),
        Ok(TopicChange::Grown { from }) => Ok(report(spec.partitions, TopicOutcome::Grown { from })),
        Ok(TopicChange::Unchanged) => Ok(report(spec.partitions, TopicOutcome::Unchanged)),
        // Another process grew it past us between the look and the change.
        Err(BusError::CannotShrink { current, .. }) => Ok(report(
            current,
            TopicOutcome::Refused {
                partitions: current,
                reason: format!(
                    "topic {name} has {current} partitions and partitions never shrink; {} asked for",
                    spec.partitions
                ),
            },
        )),
        Err(e) => Err(e),
    }
}

/// Ensures every topic, in order; the first engine error stops it (the reconcile is retried).
pub async fn ensure_all(
    admin: &dyn TopicAdmin,
    specs: &[TopicSpec],
) -> Result<Vec<TopicReport>, BusError> {
    let mut reports = Vec::with_capacity(specs.len());
    for spec in specs {
        reports.push(ensure(admin, spec).await?);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use mercato_core::bus::EmbeddedBus;

    use super::*;

    fn spec(name: &str, partitions: u32) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
        }
    }

    #[tokio::test]
    async fn topics_are_created_grown_and_never_shrunk() {
        let dir = tempfile::tempdir().expect("dir");
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(dir.path()).expect("bus"));
        let admin: &dyn TopicAdmin = &bus;
        let outcome = |r: TopicReport| (r.partitions, r.outcome);
        assert_eq!(
            outcome(ensure(admin, &spec("holds", 4)).await.expect("create")),
            (4, TopicOutcome::Created)
        );
        assert_eq!(
            outcome(ensure(admin, &spec("holds", 4)).await.expect("again")),
            (4, TopicOutcome::Unchanged)
        );
        assert_eq!(
            outcome(ensure(admin, &spec("holds", 6)).await.expect("grow")),
            (6, TopicOutcome::Grown { from: 4 })
        );
        let refused = ensure(admin, &spec("holds", 2))
            .await
            .expect("refusal is no error");
        assert_eq!(refused.partitions, 6);
        assert!(
            matches!(&refused.outcome, TopicOutcome::Refused { partitions: 6, reason } if reason.contains("never shrink")),
            "{refused:?}"
        );
        assert_eq!(Bus::partitions(&*bus, "holds").await.expect("still"), 6);
    }

    #[test]
    fn declared_names_map_to_the_bus_rules() {
        assert_eq!(bus_topic_name("wh-leeds"), "wh-leeds");
        let mapped = bus_topic_name("Wh_Leeds.North");
        assert!(mapped.starts_with("wh-leeds-north-"), "{mapped}");
        let long = "x".repeat(80);
        let a = bus_topic_name(&long);
        let b = bus_topic_name(&format!("{long}y"));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert!(validate_topic_name(&bus_topic_name("___")).is_ok());
    }
}
