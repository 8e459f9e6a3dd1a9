//! What the operator reports on each declaration: conditions, the generation it acted on, and
//! the counts `kubectl get` shows.

use std::collections::BTreeMap;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The standard condition types (those of Stackable's and Strimzi's operators).
pub mod conditions {
    /// Everything declared exists and is serving.
    pub const READY: &str = "Ready";
    /// The operator is still bringing the declaration about (content publishing, workers
    /// starting, a surge coming).
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong: an invalid spec, a refused change, an engine or API error.
    pub const DEGRADED: &str = "Degraded";
}

/// A topic as the operator found or made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    pub name: String,
    pub partitions: u32,
}

/// The fields every declaration's status has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The topics the declaration relies on, with the partitions they have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicStatus>,
    /// Replicas of each worker role the namespace runs now, this declaration's needs included.
    // Nullable: when an apply stops naming a map it set before, the server-side apply of
    // Kubernetes 1.20 leaves `null` there rather than removing it (seen on a real API server),
    // and a schema that refused the null would refuse the status patch.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub workers: BTreeMap<String, i32>,
}

fn null_as_empty<'de, D>(deserializer: D) -> Result<BTreeMap<String, i32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, i32>>::deserialize(deserializer)?.unwrap_or_default())
}

/// What the operator reports on an Event: its seats by state, and its workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sold: Option<u64>,
    /// General-admission places still available, when the event has standing floors (they
    /// are counted in `available` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<u64>,
    /// The waiting room, when the event declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoomStatus>,
    /// When the on-sale surge starts or ends next, if one is declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surge: Option<String>,
}

/// What the operator reports on an Event's waiting room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitingRoomStatus {
    /// `closed` (before the pre-queue), `pre_queue`, `admitting`, `paused`, `sold_out` or
    /// `disabled`.
    pub state: String,
    /// Shoppers waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// Shoppers with a live admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted: Option<u64>,
}

/// What the operator reports on an Inventory: how its latest publishing went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The publishing generation: each apply of a changed spec publishes a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Products of this generation the ingest workers accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<u64>,
    /// Records of this generation that went to the dead-letter topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
}

/// What the operator reports on a Warehouse: what it stocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skus: Option<u64>,
    /// Units available to sell across the warehouse's SKUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
}

/// A list of free-form objects: their fields are checked by a worker, not by the API server.
pub(crate) fn free_form_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

#[cfg(test)]
mod tests {
    use super::EventStatus;

    #[test]
    fn a_status_whose_workers_were_left_null_reads_as_none() {
        let status: EventStatus =
            serde_json::from_str(r#"{"workers": null, "held": 3}"#).expect("parses");
        assert!(status.common.workers.is_empty());
        assert_eq!(status.held, Some(3));
    }
}
