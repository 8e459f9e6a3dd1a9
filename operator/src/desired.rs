//! The desired state of a declaration, computed without I/O.

use mercato_core::domain::catalog::{CatalogDoc, DocKind};
use mercato_core::domain::commerce::WarehouseRecord;
use mercato_core::domain::events::EventRecord;
use mercato_core::domain::Money;
use mercato_core::names::topics;
use mercato_crds::{EventSpec, InventorySpec, Manifest, WarehouseSpec};
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
    /// The event as the store keeps it.
    pub event: Option<EventRecord>,
    /// What the search index shows of the declaration (events; products come from ingest).
    pub catalog: Option<CatalogDoc>,
    /// An inventory's declaration: its products are published to the ingest topic.
    pub inventory: Option<InventorySpec>,
    /// A warehouse's declaration: its counts go into the SKUs' stock rows.
    pub warehouse: Option<(WarehouseRecord, WarehouseSpec)>,
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
    // The topics come from the same build the Kubernetes operator uses: the platform's, grown
    // where the declaration asks for more partitions, and a Warehouse's own.
    let topics =
        crate::topology::topology(std::slice::from_ref(manifest), chrono::Utc::now()).topics;
    match manifest {
        Manifest::Event { metadata, spec } => {
            let record = EventRecord {
                id: metadata.name.clone(),
                // Serializing a validated spec to JSON cannot fail: it has only plain fields.
                spec_json: serde_json::to_string(spec).unwrap_or_default(),
                generation: 0,
            };
            DesiredState {
                kind: "Event",
                name: metadata.name.clone(),
                topics,
                event: Some(record),
                catalog: Some(event_doc(&metadata.name, spec)),
                inventory: None,
                warehouse: None,
            }
        }
        Manifest::Inventory { metadata, spec } => DesiredState {
            kind: "Inventory",
            name: metadata.name.clone(),
            topics,
            event: None,
            catalog: None,
            inventory: Some(spec.clone()),
            warehouse: None,
        },
        Manifest::Warehouse { metadata, spec } => DesiredState {
            kind: "Warehouse",
            name: metadata.name.clone(),
            topics,
            event: None,
            catalog: None,
            inventory: None,
            warehouse: Some((crate::warehouse::record(&metadata.name, spec), spec.clone())),
        },
    }
}

/// An event as the catalog shows it: what it is, who plays, where, when, and for how much.
pub fn event_doc(id: &str, spec: &EventSpec) -> CatalogDoc {
    let prices = spec.tiers.iter().map(|t| t.price.amount);
    let min = prices.clone().min();
    let max = prices.max();
    let currency = spec
        .tiers
        .first()
        .map(|t| t.price.currency.clone())
        .unwrap_or_default();
    let mut body = spec.performers.clone();
    body.push(spec.venue.name.clone());
    CatalogDoc {
        kind: DocKind::Event,
        id: id.to_owned(),
        name: spec.title.clone(),
        body: body.join("\n"),
        category: Vec::new(),
        city: Some(spec.venue.city.clone()),
        geo: Some((spec.venue.lat, spec.venue.lon)),
        price: min.map(|amount| Money { amount, currency }),
        price_max: max,
        starts_at_ms: Some(spec.starts_at.timestamp_millis()),
        seller: None,
        venue: Some(spec.venue.name.clone()),
    }
}
