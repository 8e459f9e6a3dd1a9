//! The desired state of a declaration, computed without I/O.

use mercato_core::domain::events::{index_key, EventRecord};
use mercato_core::names::topics;
use mercato_crds::Manifest;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredState {
    pub kind: &'static str,
    pub name: String,
    /// Topics that must exist (created, or grown to at least this many partitions).
    pub topics: Vec<TopicSpec>,
    /// The event as the store keeps it, and its key in the listing.
    pub event: Option<(EventRecord, String)>,
}

/// The shared platform topics every declaration relies on.
pub fn platform_topics() -> Vec<TopicSpec> {
    topics::PLATFORM
        .iter()
        .map(|(name, partitions)| TopicSpec {
            name: (*name).to_owned(),
            partitions: *partitions,
        })
        .collect()
}

pub fn desired(manifest: &Manifest) -> DesiredState {
    match manifest {
        Manifest::Event { metadata, spec } => {
            let record = EventRecord {
                id: metadata.name.clone(),
                // Serializing a validated spec to JSON cannot fail: it has only plain fields.
                spec_json: serde_json::to_string(spec).unwrap_or_default(),
                generation: 0,
            };
            let key = index_key(spec.starts_at.timestamp_millis(), &metadata.name);
            DesiredState {
                kind: "Event",
                name: metadata.name.clone(),
                topics: platform_topics(),
                event: Some((record, key)),
            }
        }
    }
}
