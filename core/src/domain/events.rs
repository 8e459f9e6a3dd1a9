//! Events as stored: the validated declaration, plus what the gateway shows.

use mercato_crds::EventSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    /// The declaration, as JSON: the spec has optional fields a positional binary format cannot
    /// carry, and it is read rarely (events are cached in memory).
    pub spec_json: String,
    pub generation: u64,
}

impl EventRecord {
    pub fn spec(&self) -> Result<EventSpec, serde_json::Error> {
        serde_json::from_str(&self.spec_json)
    }
}

/// The price of a seat in a section.
pub fn seat_price(spec: &EventSpec, section: &str) -> Option<mercato_crds::Money> {
    let tier = crate::domain::seats::section(spec, section)?.tier.clone();
    spec.tiers
        .iter()
        .find(|t| t.id == tier)
        .map(|t| t.price.clone())
}

crate::first_layout!(EventRecord);
