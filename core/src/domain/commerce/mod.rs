//! Products as goods: carts, checkouts that reserve stock, what a product order carries, its
//! shipments, returns and refunds, and low-stock alerts. Pure data and decisions, no I/O.

pub mod allocation;
pub mod stock;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Money;

/// How long a checkout reserves its stock unless configured otherwise.
pub const DEFAULT_CHECKOUT_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// The most checkouts one shopper may have live at once (active: neither paid for, nor being
/// paid for, nor lapsed): each holds stock back from everyone else until it lapses. One being
/// paid for does not count: its shopper has committed to it.
pub const MAX_LIVE_CHECKOUTS: u32 = 5;
/// A cart holds at most this many lines, and a line at most this many units.
pub const MAX_CART_LINES: usize = 100;
pub const MAX_LINE_QUANTITY: u64 = 1_000;
/// Checkout and order rows outlive their reservation so a shopper can still see them.
pub const ROW_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// One line of a cart row (`carts`, partition user id, clustering SKU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub quantity: u64,
    pub added_ms: u64,
}

/// One line of a checkout or a product order, priced when the checkout was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodsLine {
    pub sku: String,
    pub name: String,
    pub quantity: u64,
    pub unit_price: Money,
}

pub fn total(lines: &[GoodsLine], currency: &str) -> Money {
    Money {
        amount: lines
            .iter()
            .map(|l| l.unit_price.amount * l.quantity as i64)
            .sum(),
        currency: currency.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckoutState {
    Active,
    Cancelled,
    Purchasing { order_id: String },
    Purchased { order_id: String },
}

/// Stock reserved for a shopper while they pay (`checkouts`, partition checkout id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub id: String,
    pub user_id: String,
    pub lines: Vec<GoodsLine>,
    pub total: Money,
    pub created_ms: u64,
    pub expires_at_ms: u64,
    pub state: CheckoutState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    Active,
    Expired,
    Cancelled,
    Purchasing,
    Purchased,
}

impl Checkout {
    /// Whether it holds stock back at `now_ms` with nobody paying for it: what the cap on a
    /// shopper's live checkouts counts.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.status(now_ms) == CheckoutStatus::Active
    }

    pub fn status(&self, now_ms: u64) -> CheckoutStatus {
        match self.state {
            CheckoutState::Cancelled => CheckoutStatus::Cancelled,
            CheckoutState::Purchased { .. } => CheckoutStatus::Purchased,
            _ if now_ms >= self.expires_at_ms => CheckoutStatus::Expired,
            CheckoutState::Active => CheckoutStatus::Active,
            CheckoutState::Purchasing { .. } => CheckoutStatus::Purchasing,
        }
    }
}

super::purchase::purchasable!(
    Checkout,
    CheckoutState { Active, Cancelled },
    refusals: [
        CheckoutNotFound,
        CheckoutExpired,
        CheckoutCancelled,
        CheckoutPurchased,
        CheckoutBeingPurchased
    ]
);

/// Where a product order goes. Coordinates let the allocator pick the nearest warehouse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Name, street, city, postcode, country: carried to the warehouse as given.
    pub fields: BTreeMap<String, String>,
}

impl Address {
    pub fn point(&self) -> Option<(f64, f64)> {
        Some((self.lat?, self.lon?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Allocated,
    Shipped,
    Delivered,
    Cancelled,
}

/// One warehouse's part of an order. Its id is `<order id>.<n>`, so it leads to its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    pub warehouse: String,
    pub items: Vec<(String, u64)>,
    pub status: ShipmentStatus,
    pub tracking_number: Option<String>,
    pub updated_ms: u64,
}

pub fn shipment_id(order_id: &str, n: usize) -> String {
    format!("{order_id}.{n}")
}

/// The order a shipment belongs to.
pub fn order_of_shipment(shipment_id: &str) -> Option<&str> {
    shipment_id.rsplit_once('.').map(|(order, _)| order)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    Requested,
    Refunded,
}

/// Money given back, once: its id is the provider's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: Money,
    pub reason: String,
    pub state: RefundState,
    pub created_ms: u64,
}

/// Items sent back after delivery, and the warehouse each unit returns to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub id: String,
    /// (sku, quantity, warehouse)
    pub items: Vec<(String, u64, String)>,
    pub reason: String,
    pub refund_id: String,
    pub created_ms: u64,
}

/// What a product order carries beyond the common order fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Goods {
    pub checkout_id: String,
    pub lines: Vec<GoodsLine>,
    pub shipping: Option<Address>,
    pub shipments: Vec<Shipment>,
    /// Per SKU, units no warehouse could supply: the order waits, flagged for admins.
    pub shortfall: Vec<(String, u64)>,
    pub refunds: Vec<Refund>,
    pub returns: Vec<Return>,
}

impl Goods {
    /// Units of `sku` delivered and not yet returned, per warehouse.
    pub fn returnable(&self, sku: &str) -> BTreeMap<String, u64> {
        let mut by_warehouse: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.shipments {
            if s.status == ShipmentStatus::Delivered {
                for (item, q) in &s.items {
                    if item == sku {
                        *by_warehouse.entry(s.warehouse.clone()).or_default() += q;
                    }
                }
            }
        }
        for r in &self.returns {
            for (item, q, warehouse) in &r.items {
                if item == sku {
                    if let Some(left) = by_warehouse.get_mut(warehouse) {
                        *left = left.saturating_sub(*q);
                    }
                }
            }
        }
        by_warehouse.retain(|_, q| *q > 0);
        by_warehouse
    }

    pub fn unit_price(&self, sku: &str) -> Option<&Money> {
        self.lines
            .iter()
            .find(|l| l.sku == sku)
            .map(|l| &l.unit_price)
    }

    pub fn all_returned(&self) -> bool {
        self.lines
            .iter()
            .all(|l| self.returnable(&l.sku).is_empty())
            && self
                .shipments
                .iter()
                .all(|s| s.status == ShipmentStatus::Delivered)
    }
}

/// A SKU's available stock fell to its inventory's low-stock threshold or below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStockAlert {
    pub seller: String,
    pub inventory: String,
    pub sku: String,
    pub available: u64,
    pub threshold: u64,
    pub at_ms: u64,
}

/// True when a change takes available stock from above the threshold to at or below it.
pub fn crosses_threshold(before: u64, after: u64, threshold: u64) -> bool {
    before > threshold && after <= threshold
}

/// The topic a warehouse receives its sub-orders on: `wh-<name>`, shortened with a hash when
/// the name is too long for a topic.
pub fn warehouse_topic(warehouse: &str) -> String {
    let topic = format!("wh-{warehouse}");
    if topic.len() <= 63 {
        return topic;
    }
    let hash = crate::bus::fnv1a(warehouse.as_bytes());
    format!("wh-{}-{hash:016x}", &warehouse[..42])
}

/// A warehouse as the store keeps it (`warehouses`, partition "all", clustering name). Its
/// stock lives in the SKUs' stock rows; `warehouse_skus` lists what it declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarehouseRecord {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub city: Option<String>,
    pub skus: u64,
    /// Units declared available.
    pub units: u64,
    /// The declaration as JSON: an identical apply changes nothing.
    pub spec_json: String,
    pub generation: u64,
    pub applied_ms: u64,
}

/// What a warehouse declared for one SKU (`warehouse_skus`, partition warehouse, clustering
/// SKU): a later declaration that drops the SKU withdraws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredStock {
    pub physical: u64,
    pub available: u64,
}

crate::first_layout!(
    CartLine,
    Checkout,
    DeclaredStock,
    LowStockAlert,
    WarehouseRecord
);

#[cfg(test)]
mod live_tests {
    use super::*;

    #[test]
    fn only_an_active_unexpired_checkout_is_live() {
        let mut c = Checkout {
            id: "co-1".into(),
            user_id: "ada".into(),
            lines: Vec::new(),
            total: Money {
                amount: 0,
                currency: "USD".into(),
            },
            created_ms: 0,
            expires_at_ms: 100,
            state: CheckoutState::Active,
        };
        assert!(c.is_live(99));
        assert!(!c.is_live(100), "lapsed");
        for state in [
            CheckoutState::Cancelled,
            CheckoutState::Purchasing {
                order_id: "o".into(),
            },
            CheckoutState::Purchased {
                order_id: "o".into(),
            },
        ] {
            c.state = state;
            assert!(!c.is_live(0), "{:?}", c.state);
        }
    }
}
