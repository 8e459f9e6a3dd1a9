//! Commands on the bus and the results the gateway awaits.

use serde::{Deserialize, Serialize};

use super::commerce::{Address, Checkout, Shipment, ShipmentStatus};
use super::holds::Hold;
use super::orders::Order;
use super::payments::{PaymentMethod, ProviderEvent, ProviderEventV1};
use super::refusal::Refusal;
use crate::codec::{decode_body, decode_either, CodecError, Record};

/// On the `holds` topic, keyed by `<event>/<section of the first seat>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldCommand {
    Place {
        command_id: String,
        hold_id: String,
        user_id: String,
        event_id: String,
        seat_ids: Vec<String>,
        ttl_ms: u64,
    },
    Release {
        command_id: String,
        hold_id: String,
        user_id: String,
    },
}

impl HoldCommand {
    pub fn command_id(&self) -> &str {
        match self {
            HoldCommand::Place { command_id, .. } | HoldCommand::Release { command_id, .. } => {
                command_id
            }
        }
    }
}

/// On the `payments` topic, keyed by order id, so everything about one order is in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentCommand {
    PlaceOrder {
        command_id: String,
        order_id: String,
        user_id: String,
        hold_id: String,
        method: PaymentMethod,
    },
    /// A verified webhook from the provider.
    Provider(ProviderEvent),
    /// Pays for a checkout's goods.
    PlaceGoodsOrder {
        command_id: String,
        order_id: String,
        user_id: String,
        checkout_id: String,
        method: PaymentMethod,
        shipping: Option<Address>,
    },
    /// Cancels a product order before it ships.
    Cancel {
        command_id: String,
        order_id: String,
        user_id: String,
    },
    /// Takes delivered items back.
    Return {
        command_id: String,
        order_id: String,
        user_id: String,
        return_id: String,
        items: Vec<(String, u64)>,
        reason: String,
    },
    /// A shipment leaves its warehouse (`Shipped`, with its tracking number) or arrives
    /// (`Delivered`). Keyed by the order the shipment belongs to.
    AdvanceShipment {
        command_id: String,
        order_id: String,
        warehouse: String,
        shipment_id: String,
        to: ShipmentStatus,
        tracking_number: Option<String>,
    },
}

impl PaymentCommand {
    /// The id a caller waits on; a provider's event has none.
    pub fn command_id(&self) -> Option<&str> {
        match self {
            PaymentCommand::PlaceOrder { command_id, .. }
            | PaymentCommand::PlaceGoodsOrder { command_id, .. }
            | PaymentCommand::Cancel { command_id, .. }
            | PaymentCommand::Return { command_id, .. }
            | PaymentCommand::AdvanceShipment { command_id, .. } => Some(command_id),
            PaymentCommand::Provider(_) => None,
        }
    }
}

impl Record for PaymentCommand {
    /// 2: a provider's refund event names its refund (`ProviderEvent::refund_id`). Layout 1
    /// was written both without refund ids and, before layouts were versioned, with them.
    const VERSION: u8 = 2;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_either::<PaymentCommand, PaymentCommandV1>(body),
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

#[derive(Deserialize)]
enum PaymentCommandV1 {
    PlaceOrder {
        command_id: String,
        order_id: String,
        user_id: String,
        hold_id: String,
        method: PaymentMethod,
    },
    Provider(ProviderEventV1),
}

impl From<PaymentCommandV1> for PaymentCommand {
    fn from(old: PaymentCommandV1) -> Self {
        match old {
            PaymentCommandV1::PlaceOrder {
                command_id,
                order_id,
                user_id,
                hold_id,
                method,
            } => PaymentCommand::PlaceOrder {
                command_id,
                order_id,
                user_id,
                hold_id,
                method,
            },
            PaymentCommandV1::Provider(e) => PaymentCommand::Provider(e.into()),
        }
    }
}

/// On the `results` topic, keyed by command id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    HoldPlaced(Hold),
    SeatsUnavailable {
        seat_ids: Vec<String>,
    },
    HoldReleased,
    OrderAccepted(Order),
    /// A refusal the shopper can act on; the gateway maps it to HTTP.
    Refused(Refusal),
    /// The command kept failing in a way retrying cannot fix and was set aside in the dead
    /// letters; what it did before failing may be incomplete.
    Failed {
        message: String,
    },
    CheckoutPlaced(Checkout),
    /// Per short SKU, what is available.
    InsufficientStock {
        short: Vec<(String, u64)>,
    },
    CheckoutReleased,
    /// A cancellation or a return was accepted.
    OrderUpdated(Order),
}

impl Record for CommandResult {
    /// 2: a refusal is a typed [`Refusal`]; it was an HTTP status, a code and a message.
    /// Layout 1 was written both ways (the change went out without a bump).
    /// 3: `Refusal::RefundExceedsCharge`, added last: a body of layout 2 reads as 3.
    /// 4: `Refusal::SeatCapReached`, added last: a body of layout 3 reads as 4.
    /// 5: `Refusal::CheckoutCapReached`, added last: a body of layout 4 reads as 5.
    const VERSION: u8 = 5;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_either::<CommandResult, CommandResultV1>(body),
            2..=4 => decode_body(body),
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

/// Layout 1 of a result, before refusals were typed.
#[derive(Deserialize)]
struct CommandResultV1 {
    command_id: String,
    outcome: OutcomeV1,
}

#[derive(Deserialize)]
enum OutcomeV1 {
    HoldPlaced(Hold),
    SeatsUnavailable {
        seat_ids: Vec<String>,
    },
    HoldReleased,
    OrderAccepted(Order),
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    Failed {
        message: String,
    },
    CheckoutPlaced(Checkout),
    InsufficientStock {
        short: Vec<(String, u64)>,
    },
    CheckoutReleased,
    OrderUpdated(Order),
}

impl From<CommandResultV1> for CommandResult {
    fn from(old: CommandResultV1) -> Self {
        let outcome = match old.outcome {
            OutcomeV1::HoldPlaced(hold) => Outcome::HoldPlaced(hold),
            OutcomeV1::SeatsUnavailable { seat_ids } => Outcome::SeatsUnavailable { seat_ids },
            OutcomeV1::HoldReleased => Outcome::HoldReleased,
            OutcomeV1::OrderAccepted(order) => Outcome::OrderAccepted(order),
            OutcomeV1::Refused {
                status,
                code,
                message,
            } => Outcome::Refused(Refusal::Earlier {
                status,
                code,
                message,
            }),
            OutcomeV1::Failed { message } => Outcome::Failed { message },
            OutcomeV1::CheckoutPlaced(checkout) => Outcome::CheckoutPlaced(checkout),
            OutcomeV1::InsufficientStock { short } => Outcome::InsufficientStock { short },
            OutcomeV1::CheckoutReleased => Outcome::CheckoutReleased,
            OutcomeV1::OrderUpdated(order) => Outcome::OrderUpdated(order),
        };
        CommandResult {
            command_id: old.command_id,
            outcome,
        }
    }
}

impl Outcome {
    /// The answer to a command set aside as poison after failing with `error`.
    pub fn poisoned(error_kind: &str) -> Self {
        Outcome::Failed {
            message: format!(
                "the command failed repeatedly (a {error_kind} error) and was set aside for an \
                 operator; anything it did before failing may be incomplete"
            ),
        }
    }
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::Refused(refusal)
    }
}

/// On the `checkouts` topic, keyed by user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckoutCommand {
    /// Reserve every line for the checkout (priced by the gateway), all or nothing.
    Reserve {
        command_id: String,
        checkout: Checkout,
    },
    Release {
        command_id: String,
        checkout_id: String,
        user_id: String,
    },
}

impl CheckoutCommand {
    pub fn command_id(&self) -> &str {
        match self {
            CheckoutCommand::Reserve { command_id, .. }
            | CheckoutCommand::Release { command_id, .. } => command_id,
        }
    }
}

/// On the `allocations` topic, keyed by order id: a paid product order to split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateOrder {
    pub order_id: String,
}

/// On a warehouse's own topic (`wh-<name>`), keyed by order id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WarehouseMessage {
    Ship {
        order_id: String,
        shipment: Shipment,
        address: Option<Address>,
    },
    Cancel {
        order_id: String,
        shipment_id: String,
    },
}

/// On the `seat-changes` topic: what read caches need to stay fresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatChange {
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub change: SeatChangeKind,
    /// The hold the seats were held by, released from, lapsed from, or sold through: two
    /// workers may announce changes of one seat in the other order than they made them (a
    /// hold of one section releasing a seat another section's hold then takes), and a reader
    /// applies a release or a lapse only to seats still held by that hold. `None` in changes
    /// from before it was named.
    pub hold_id: Option<String>,
}

/// Layouts 1 and 2 of a seat change, before it named its hold.
#[derive(Deserialize)]
struct SeatChangeV2 {
    event_id: String,
    seat_ids: Vec<String>,
    change: SeatChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatChangeKind {
    Held {
        expires_at_ms: u64,
    },
    Released,
    Sold,
    /// The hold's time ran out and its seats came free, announced when they did.
    Lapsed,
}

impl Record for SeatChange {
    /// 2: `SeatChangeKind::Lapsed`, added last (a body of layout 1 reads as 2).
    /// 3: `hold_id`.
    const VERSION: u8 = 3;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 | 2 => decode_body::<SeatChangeV2>(body).map(|c| SeatChange {
                event_id: c.event_id,
                seat_ids: c.seat_ids,
                change: c.change,
                hold_id: None,
            }),
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

crate::first_layout!(
    HoldCommand,
    CheckoutCommand,
    AllocateOrder,
    WarehouseMessage
);
