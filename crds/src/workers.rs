//! How many worker replicas a declaration asks for, and how many partitions their topics need.
//!
//! Workers are shared by a namespace's declarations: the holds workers serve every Event, the
//! ingest workers every Inventory. Each declaration states what it needs; the operator runs the
//! most any declaration asks for (a topic's partitions only ever grow).

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Problem;

/// The most replicas of one role a declaration may ask for.
pub const MAX_REPLICAS: u32 = 256;
/// The most partitions a declaration may ask a topic to have.
pub const MAX_PARTITIONS: u32 = 1024;
/// How long a surge lasts from the on-sale time when `duration` is not given.
pub const DEFAULT_SURGE: Duration = Duration::from_secs(3600);
/// How long before the on-sale time a surge starts when `lead` is not given: new replicas need
/// a moment to start and to catch up on their partitions before the rush.
pub const DEFAULT_SURGE_LEAD: Duration = Duration::from_secs(300);
const MAX_SURGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// One worker role: its replicas, and the partitions of the topic it consumes. Replica i of n
/// consumes the partitions p with p % n == i, so replicas beyond the partitions would idle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerScale {
    /// Replicas of the role (1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub replicas: Option<u32>,
    /// Partitions of the role's topic (the platform's default when absent). Partitions only
    /// grow: asking for fewer than the topic has is reported in status and changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub partitions: Option<u32>,
}

/// Extra holds and payments replicas around an on-sale: from `lead` before `onSaleAt` until
/// `duration` after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Surge {
    /// Holds replicas during the surge.
    #[schemars(range(min = 1, max = 256))]
    pub holds: u32,
    /// Payments replicas during the surge.
    #[schemars(range(min = 1, max = 256))]
    pub payments: u32,
    /// How long the surge lasts after the on-sale time, e.g. "2h" (1h by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$"))]
    pub duration: Option<String>,
    /// How long before the on-sale time it starts, e.g. "10m" (5m by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$"))]
    pub lead: Option<String>,
}

impl Surge {
    pub fn duration(&self) -> Duration {
        parse_or(self.duration.as_deref(), DEFAULT_SURGE)
    }

    pub fn lead(&self) -> Duration {
        parse_or(self.lead.as_deref(), DEFAULT_SURGE_LEAD)
    }

    /// The instants the surge starts and ends for an on-sale at `on_sale_at`.
    pub fn window(&self, on_sale_at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let span = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
        (
            on_sale_at - span(self.lead()),
            on_sale_at + span(self.duration()),
        )
    }
}

fn parse_or(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(default)
}

/// The workers an Event relies on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventWorkers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<WorkerScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<WorkerScale>,
    /// More holds and payments replicas around the on-sale time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surge: Option<Surge>,
}

/// The workers an Inventory relies on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryWorkers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<WorkerScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<WorkerScale>,
}

/// The workers a Warehouse relies on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarehouseWorkers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocator: Option<WorkerScale>,
}

/// The same bounds the CRD's schema states, for declarations that do not pass an API server
/// (`mercato up`, `mercato apply`, `mercato operator render`).
pub(crate) fn validate_scale(path: &str, scale: &WorkerScale, problems: &mut Vec<Problem>) {
    if let Some(r) = scale.replicas {
        if !(1..=MAX_REPLICAS).contains(&r) {
            problems.push(Problem::new(
                format!("{path}.replicas"),
                format!("{r} is outside 1..{MAX_REPLICAS}"),
            ));
        }
    }
    if let Some(p) = scale.partitions {
        if !(1..=MAX_PARTITIONS).contains(&p) {
            problems.push(Problem::new(
                format!("{path}.partitions"),
                format!("{p} is outside 1..{MAX_PARTITIONS}"),
            ));
        }
    }
    if let (Some(r), Some(p)) = (scale.replicas, scale.partitions) {
        if r > p {
            problems.push(Problem::new(
                format!("{path}.replicas"),
                format!(
                    "{r} replicas for {p} partitions: {} would have nothing to read",
                    r - p
                ),
            ));
        }
    }
}

pub(crate) fn validate_surge(path: &str, surge: &Surge, problems: &mut Vec<Problem>) {
    for (field, n) in [("holds", surge.holds), ("payments", surge.payments)] {
        if !(1..=MAX_REPLICAS).contains(&n) {
            problems.push(Problem::new(
                format!("{path}.{field}"),
                format!("{n} is outside 1..{MAX_REPLICAS}"),
            ));
        }
    }
    for (field, text) in [("duration", &surge.duration), ("lead", &surge.lead)] {
        let Some(text) = text else { continue };
        match humantime::parse_duration(text) {
            Ok(d) if d <= MAX_SURGE => {}
            Ok(_) => problems.push(Problem::new(
                format!("{path}.{field}"),
                format!("{text} is longer than a week"),
            )),
            Err(e) => problems.push(Problem::new(
                format!("{path}.{field}"),
                format!("{text:?}: {e}"),
            )),
        }
    }
}
