//! Orders and tickets.

use serde::{Deserialize, Serialize};

use super::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    /// The hold lapsed before the payment completed; any charge is refunded.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub seat_id: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub seat_id: String,
    pub price: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Requested,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub event_id: String,
    pub hold_id: String,
    pub items: Vec<OrderItem>,
    pub total: Money,
    pub status: OrderStatus,
    pub payment_id: Option<String>,
    pub failure: Option<String>,
    pub refund: Option<RefundStatus>,
    pub tickets: Vec<Ticket>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// Clustering key of a user's order list: newest first, then by id.
pub fn user_order_key(created_ms: u64, order_id: &str) -> String {
    format!("{:020}/{order_id}", u64::MAX - created_ms)
}

/// Created time back from a user-order key.
pub fn created_from_key(key: &str) -> Option<u64> {
    key.split('/')
        .next()?
        .parse::<u64>()
        .ok()
        .map(|inv| u64::MAX - inv)
}
