//! Commands on the bus and the results the gateway awaits.

use serde::{Deserialize, Serialize};

use super::holds::Hold;
use super::orders::Order;
use super::payments::{PaymentMethod, ProviderEvent};

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// On the `results` topic, keyed by command id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    HoldPlaced(Hold),
    SeatsUnavailable {
        seat_ids: Vec<String>,
    },
    HoldReleased,
    OrderAccepted(Order),
    /// A refusal the shopper can act on: an HTTP status and a machine-readable code.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    Failed {
        message: String,
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
