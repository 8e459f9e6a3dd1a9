use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::manifest::Problem;
use crate::MAX_SKU;

/// A warehouse declares at most this many SKUs inline; each is one row write on apply.
pub const MAX_WAREHOUSE_SKUS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    /// For people reading the manifest and the order's shipments; not used to route.
    #[serde(default)]
    pub city: Option<String>,
}

/// How many units of one SKU a warehouse holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockEntry {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarehouseSpec {
    pub location: Location,
    #[serde(default)]
    pub stock: Vec<StockEntry>,
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
