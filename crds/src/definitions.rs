//! The CustomResourceDefinitions, generated from the types. The YAML committed under
//! `crds/generated/` and `charts/mercato/crds/` is this output; a test fails when they drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{Event, Inventory, Warehouse};

/// The file each definition is committed as, in the order of [`definitions`].
pub const DEFINITION_FILES: [&str; 3] = [
    "events.mercato.dev.yaml",
    "inventories.mercato.dev.yaml",
    "warehouses.mercato.dev.yaml",
];

const HEADER: &str = "# Generated from crds/src by `mercato operator crds`; do not edit.\n";

pub fn definitions() -> [CustomResourceDefinition; 3] {
    [Event::crd(), Inventory::crd(), Warehouse::crd()]
}

/// Each definition as its committed file: name and YAML.
pub fn definitions_yaml() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    DEFINITION_FILES
        .into_iter()
        .zip(definitions())
        .map(|(file, crd)| Ok((file, format!("{HEADER}{}", serde_yaml::to_string(&crd)?))))
        .collect()
}
