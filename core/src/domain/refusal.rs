//! Why a worker refused a command, in the domain's terms. The gateway alone decides what HTTP
//! status each one is; workers never speak HTTP. `code()` is the stable machine-readable name
//! clients match on (it appears in the API's error body), `Display` the sentence for people.

use serde::{Deserialize, Serialize};

use super::commerce::ShipmentStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold has expired")]
    HoldExpired,
    #[error("the hold was released")]
    HoldReleased,
    #[error("the hold was already purchased")]
    HoldPurchased,
    #[error("an order is paying for this hold")]
    HoldBeingPurchased,
    #[error("the hold kept changing; try again")]
    HoldContended,
    /// A command that did not pass the gateway's checks (an old gateway, a replay from
    /// elsewhere): its seat list or hold id is not one the worker can claim.
    #[error("seat ids or hold id are malformed")]
    InvalidSeatIds,
    #[error("the event no longer exists")]
    EventNotFound,
    #[error("tickets are not on sale yet")]
    NotOnSale,
    #[error("the event has started")]
    SalesClosed,
    #[error("no such checkout")]
    CheckoutNotFound,
    #[error("the checkout has expired; its stock was released")]
    CheckoutExpired,
    #[error("the checkout was cancelled")]
    CheckoutCancelled,
    #[error("the checkout was already paid for; cancel the order instead")]
    CheckoutPurchased,
    #[error("an order is paying for this checkout; cancel the order instead")]
    CheckoutBeingPurchased,
    #[error("no such order")]
    OrderNotFound,
    #[error("{}", if *partly {
        "part of the order has shipped; return it after delivery instead"
    } else {
        "the order has shipped; return it after delivery instead"
    })]
    AlreadyShipped { partly: bool },
    #[error("the order was never paid; there is nothing to cancel")]
    NotCancellable,
    #[error("items can be returned once they are delivered")]
    NotDelivered,
    #[error("{sku} is listed twice")]
    ReturnListsSkuTwice { sku: String },
    #[error("{sku}: {asked} to return, but {returnable} delivered and not yet returned")]
    ReturnExceedsDelivered {
        sku: String,
        asked: u64,
        returnable: u64,
    },
    #[error("no shipment {shipment:?} at warehouse {warehouse:?}")]
    ShipmentNotFound { shipment: String, warehouse: String },
    #[error("the order was cancelled; do not ship it")]
    ShipmentCancelled,
    #[error("the shipment has not shipped yet")]
    ShipmentNotShipped,
    #[error("the shipment is already {}", format!("{status:?}").to_lowercase())]
    ShipmentAlreadyAdvanced { status: ShipmentStatus },
    /// A refusal answered by a release from before refusals were typed (a result of layout 1
    /// still on the results topic during an upgrade), passed on exactly as it was given.
    #[error("{message}")]
    Earlier {
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "a refund of {asked} (minor units of {currency}) is more than is left of the charge \
         ({refundable})"
    )]
    RefundExceedsCharge {
        asked: i64,
        refundable: i64,
        currency: String,
    },
    /// The shopper's seats in live holds at this event would pass its `maxSeatsPerUser`.
    #[error("you may hold at most {cap} seats of this event at once; you hold {held}")]
    SeatCapReached { held: u32, cap: u32 },
    /// The shopper has as many live checkouts as one may (`MAX_LIVE_CHECKOUTS`).
    #[error(
        "you have {live} checkouts in progress, the most one may have; pay for one or cancel it"
    )]
    CheckoutCapReached { live: u32, cap: u32 },
}

impl Refusal {
    /// The error code the API answers with; stable across releases.
    pub fn code(&self) -> &str {
        match self {
            Refusal::HoldNotFound => "hold_not_found",
            Refusal::HoldExpired => "hold_expired",
            Refusal::HoldReleased => "hold_released",
            Refusal::HoldPurchased => "hold_purchased",
            Refusal::HoldBeingPurchased => "hold_being_purchased",
            Refusal::HoldContended => "hold_contended",
            Refusal::InvalidSeatIds => "invalid_seat_ids",
            Refusal::EventNotFound => "event_not_found",
            Refusal::NotOnSale => "not_on_sale",
            Refusal::SalesClosed => "sales_closed",
            Refusal::CheckoutNotFound => "checkout_not_found",
            Refusal::CheckoutExpired => "checkout_expired",
            Refusal::CheckoutCancelled => "checkout_cancelled",
            Refusal::CheckoutPurchased => "checkout_purchased",
            Refusal::CheckoutBeingPurchased => "checkout_being_purchased",
            Refusal::OrderNotFound => "order_not_found",
            Refusal::AlreadyShipped { .. } => "already_shipped",
            Refusal::NotCancellable => "not_cancellable",
            Refusal::NotDelivered => "not_delivered",
            Refusal::ReturnListsSkuTwice { .. } | Refusal::ReturnExceedsDelivered { .. } => {
                "invalid_return"
            }
            Refusal::ShipmentNotFound { .. } => "shipment_not_found",
            Refusal::ShipmentCancelled => "order_cancelled",
            Refusal::ShipmentNotShipped => "not_shipped",
            Refusal::ShipmentAlreadyAdvanced { .. } => "shipment_already_advanced",
            Refusal::RefundExceedsCharge { .. } => "refund_exceeds_charge",
            Refusal::SeatCapReached { .. } => "seat_cap_reached",
            Refusal::CheckoutCapReached { .. } => "checkout_cap_reached",
            Refusal::Earlier { code, .. } => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::commands::{CommandResult, Outcome};

    #[test]
    fn a_refusal_survives_the_results_topic_and_keeps_its_code() {
        let refusal = Refusal::ReturnExceedsDelivered {
            sku: "mug".into(),
            asked: 3,
            returnable: 1,
        };
        let result = CommandResult {
            command_id: "c1".into(),
            outcome: Outcome::Refused(refusal.clone()),
        };
        let back = match crate::codec::decode::<CommandResult>(&crate::codec::encode(&result)) {
            Ok(CommandResult {
                outcome: Outcome::Refused(back),
                ..
            }) => back,
            other => panic!("not a refusal: {other:?}"),
        };
        assert_eq!(back, refusal);
        assert_eq!(back.code(), "invalid_return");
        assert_eq!(
            back.to_string(),
            "mug: 3 to return, but 1 delivered and not yet returned"
        );
    }
}
