use std::collections::HashSet;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Problem;
use crate::status::WarehouseStatus;
use crate::workers::{validate_scale, WarehouseWorkers};
use crate::MAX_SKU;

/// A warehouse declares at most this many SKUs inline; each is one row write on apply.
pub const MAX_WAREHOUSE_SKUS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
    /// For people reading the manifest and the order's shipments; not used to route.
    #[serde(default)]
    pub city: Option<String>,
}

/// How many units of one SKU a warehouse holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockEntry {
    #[schemars(regex(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
    pub sku: String,
    /// Units on the shelves, including any not for sale (damaged, held back).
    pub physical: u64,
    /// Units that may be sold; at most `physical`. Defaults to `physical`.
    #[serde(default)]
    pub available: Option<u64>,
}

impl StockEntry {
    pub fn available(&self) -> u64 {
        self.available.unwrap_or(self.physical)
    }
}

/// A place stock ships from. Applying a Warehouse is a stock take: a SKU whose declared counts
/// changed takes the new counts (allocations made since the last declaration are forgotten for
/// it), an unchanged SKU keeps its live counts, and a SKU no longer listed leaves the warehouse.
// The printer columns repeat `type_ = "integer"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mercato.dev",
    version = "v1alpha1",
    kind = "Warehouse",
    namespaced,
    status = "WarehouseStatus",
    shortname = "wh",
    category = "mercato",
    printcolumn(name = "SKUs", type_ = "integer", json_path = ".status.skus"),
    printcolumn(name = "Units", type_ = "integer", json_path = ".status.units"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarehouseSpec {
    pub location: Location,
    #[serde(default)]
    pub stock: Vec<StockEntry>,
    /// The allocator workers this warehouse needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WarehouseWorkers>,
    /// What deleting the Warehouse does to its sub-order topic: `Retain` (the default) keeps
    /// it, so a fulfilment system can still read what it was sent; `Delete` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What happens to the topics a declaration alone uses when it is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

impl WarehouseSpec {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(-90.0..=90.0).contains(&self.location.lat) {
            problems.push(Problem::new(
                "spec.location.lat",
                format!("{} is not a latitude (-90..90)", self.location.lat),
            ));
        }
        if !(-180.0..=180.0).contains(&self.location.lon) {
            problems.push(Problem::new(
                "spec.location.lon",
                format!("{} is not a longitude (-180..180)", self.location.lon),
            ));
        }
        if self.stock.len() > MAX_WAREHOUSE_SKUS {
            problems.push(Problem::new(
                "spec.stock",
                format!(
                    "{} SKUs; a warehouse declares at most {MAX_WAREHOUSE_SKUS}",
                    self.stock.len()
                ),
            ));
        }
        if let Some(scale) = self.workers.as_ref().and_then(|w| w.allocator.as_ref()) {
            validate_scale("spec.workers.allocator", scale, &mut problems);
        }
        let mut seen = HashSet::new();
        for (i, entry) in self.stock.iter().enumerate() {
            let path = format!("spec.stock[{i}]");
            if !crate::is_sku(&entry.sku) {
                problems.push(Problem::new(
                    format!("{path}.sku"),
                    format!(
                        "{:?} must be 1-{MAX_SKU} letters, digits, '.', '_' or '-'",
                        entry.sku
                    ),
                ));
            } else if !seen.insert(entry.sku.as_str()) {
                problems.push(Problem::new(
                    format!("{path}.sku"),
                    format!("{} is listed twice", entry.sku),
                ));
            }
            if entry.available() > entry.physical {
                problems.push(Problem::new(
                    format!("{path}.available"),
                    format!(
                        "{} available is more than the {} physically there",
                        entry.available(),
                        entry.physical
                    ),
                ));
            }
        }
        problems
    }

    pub fn units(&self) -> u64 {
        self.stock.iter().map(StockEntry::available).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_each_problem() {
        let spec = WarehouseSpec {
            location: Location {
                lat: 91.0,
                lon: 0.0,
                city: None,
            },
            stock: vec![
                StockEntry {
                    sku: "a".into(),
                    physical: 1,
                    available: Some(2),
                },
                StockEntry {
                    sku: "a".into(),
                    physical: 1,
                    available: None,
                },
                StockEntry {
                    sku: "bad sku".into(),
                    physical: 1,
                    available: None,
                },
            ],
            workers: None,
            deletion_policy: None,
        };
        let paths: Vec<String> = spec.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "spec.location.lat",
                "spec.stock[0].available",
                "spec.stock[1].sku",
                "spec.stock[2].sku"
            ]
        );
    }
}
