//! The CustomResourceDefinitions, generated from the types. The YAML committed under
//! `crds/generated/` and `charts/mercato/crds/` is this output; a test fails when they drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
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
    [Event::crd(), Inventory::crd(), Warehouse::crd()].map(|mut crd| {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                null_out_of_enums(schema);
            }
        }
        crd
    })
}

/// schemars lists `null` among an optional enum's values (`enum: [Retain, Delete, null]`),
/// which the API server refuses as a value of a `type: string` schema (kube-rs#1821; kube's
/// `OptionalEnum` transform covers only the `anyOf` form). `nullable: true` already admits
/// the absent value, so `null` leaves the list.
fn null_out_of_enums(schema: &mut JSONSchemaProps) {
    if let Some(values) = schema.enum_.as_mut() {
        let before = values.len();
        values.retain(|v| !v.0.is_null());
        if values.len() != before {
            schema.nullable = Some(true);
        }
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(match schema.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(one)) => vec![&mut **one],
            Some(JSONSchemaPropsOrArray::Schemas(many)) => many.iter_mut().collect(),
            None => Vec::new(),
        })
        .chain(match schema.additional_properties.as_mut() {
            Some(JSONSchemaPropsOrBool::Schema(one)) => Some(&mut **one),
            _ => None,
        })
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten());
    for child in children {
        null_out_of_enums(child);
    }
}

/// Each definition as its committed file: name and YAML.
pub fn definitions_yaml() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    DEFINITION_FILES
        .into_iter()
        .zip(definitions())
        .map(|(file, crd)| Ok((file, format!("{HEADER}{}", serde_yaml::to_string(&crd)?))))
        .collect()
}
