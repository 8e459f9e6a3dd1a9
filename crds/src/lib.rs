//! The declarations platform teams apply: `Event`, `Inventory` and `Warehouse` in group
//! `mercato.dev`, version `v1alpha1`.
//!
//! These are the exact documents the CRDs accept. `mercato up` and `mercato apply` read them from
//! YAML streams; the operator reads them from the cluster. Validation is pure and reports every
//! problem with the path of the offending field, so a platform team fixes a manifest in one pass.

mod definitions;
mod event;
#[cfg(test)]
mod fuzz_tests;
mod inventory;
mod manifest;
pub mod status;
mod waiting_room;
mod warehouse;
pub mod workers;

pub use definitions::{definitions, definitions_yaml, DEFINITION_FILES};
pub use event::{
    is_id, Event, EventSpec, GeneralAdmission, Money, PriceTier, Section, Venue, DEFAULT_HOLD,
    MAX_GA_CAPACITY, MAX_HOLD, MAX_SEATS_PER_HOLD, MIN_HOLD,
};
pub use inventory::{
    Inventory, InventorySpec, ProductSource, Seller, SourceFormat, DEFAULT_LOW_STOCK_THRESHOLD,
    MAX_INLINE_PRODUCTS,
};
pub use manifest::{
    validate_name, Manifest, ManifestError, ObjectMeta, Problem, API_VERSION, GROUP,
};
pub use waiting_room::{
    WaitingRoom, DEFAULT_ADMISSION_WINDOW, DEFAULT_MAX_ACTIVE, DEFAULT_PRE_QUEUE,
};
pub use warehouse::{
    DeletionPolicy, Location, StockEntry, Warehouse, WarehouseSpec, MAX_WAREHOUSE_SKUS,
};

/// The longest SKU: it appears in URLs, topic keys and row keys.
pub const MAX_SKU: usize = 64;

/// A SKU: 1-64 letters, digits, '.', '_' or '-'. One rule for products (the ingest worker),
/// warehouse stock (the Warehouse manifest) and URLs (the gateway).
pub fn is_sku(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SKU
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
