//! Orders and tickets.

use serde::{Deserialize, Serialize};

use super::commerce::Goods;
use super::Money;
use crate::codec::{decode_either, CodecError, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    /// The hold or checkout lapsed before the payment completed; any charge is refunded.
    Expired,
    /// Split across warehouses; shipments are waiting to leave.
    Allocated,
    Shipped,
    Delivered,
    /// Cancelled before shipment; the payment is refunded and the stock is back.
    Cancelled,
    /// Every delivered item came back.
    Returned,
    /// Cancelled or returned, and the provider confirmed every refund.
    Refunded,
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

/// An order for tickets (a hold) or for goods (a checkout: `goods` is set, and `event_id` and
/// `hold_id` are empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub goods: Option<Box<Goods>>,
}

impl Record for Order {
    /// 2: an order may carry goods. Layout 1 was written both as a ticket order and, before
    /// layouts were versioned, with goods.
    const VERSION: u8 = 2;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_either::<Order, TicketOrderV1>(body),
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

/// The shape of order rows before goods: a ticket order.
#[derive(Deserialize)]
struct TicketOrderV1 {
    id: String,
    user_id: String,
    event_id: String,
    hold_id: String,
    items: Vec<OrderItem>,
    total: Money,
    status: OrderStatus,
    payment_id: Option<String>,
    failure: Option<String>,
    refund: Option<RefundStatus>,
    tickets: Vec<Ticket>,
    created_ms: u64,
    updated_ms: u64,
}

impl From<TicketOrderV1> for Order {
    fn from(o: TicketOrderV1) -> Order {
        Order {
            id: o.id,
            user_id: o.user_id,
            event_id: o.event_id,
            hold_id: o.hold_id,
            items: o.items,
            total: o.total,
            status: o.status,
            payment_id: o.payment_id,
            failure: o.failure,
            refund: o.refund,
            tickets: o.tickets,
            created_ms: o.created_ms,
            updated_ms: o.updated_ms,
            goods: None,
        }
    }
}

pub mod after_sale;
pub mod allocate;
pub mod place;
pub mod settle;
pub mod shipping;

#[cfg(test)]
mod tests;
