//! Commands on the bus and the results the gateway awaits.

use serde::{Deserialize, Serialize};

use super::commerce::{Address, Checkout, Shipment, ShipmentStatus};
use super::holds::Hold;
use super::orders::Order;
use super::payments::{PaymentMethod, ProviderEvent, ProviderEventV1};
use super::refusal::Refusal;
use crate::codec::{decode, CodecError};

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

    /// Decodes a command, including those queued before refunds had ids.
    pub fn decode(bytes: &[u8]) -> Result<PaymentCommand, CodecError> {
        match decode::<PaymentCommand>(bytes) {
            Ok(c) => Ok(c),
            Err(first) => match decode::<PaymentCommandV1>(bytes) {
                Ok(PaymentCommandV1::PlaceOrder {
                    command_id,
                    order_id,
                    user_id,
                    hold_id,
                    method,
                }) => Ok(PaymentCommand::PlaceOrder {
                    command_id,
                    order_id,
                    user_id,
                    hold_id,
                    method,
                }),
                Ok(PaymentCommandV1::Provider(e)) => Ok(PaymentCommand::Provider(e.into())),
                Err(_) => Err(first),
            },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatChangeKind {
    Held { expires_at_ms: u64 },
    Released,
    Sold,
}
