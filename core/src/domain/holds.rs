//! Holds: a shopper's claim on seats for a while.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    Active,
    Released,
    /// An order is paying for it; it can no longer be released by hand.
    Purchasing {
        order_id: String,
    },
    Purchased {
        order_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub user_id: String,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub created_ms: u64,
    pub expires_at_ms: u64,
    pub state: HoldState,
}

/// What a shopper sees: an active hold past its expiry is `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    Released,
    Expired,
    Purchasing,
    Purchased,
}

impl Hold {
    pub fn status(&self, now_ms: u64) -> HoldStatus {
        match self.state {
            HoldState::Released => HoldStatus::Released,
            HoldState::Purchased { .. } => HoldStatus::Purchased,
            _ if now_ms >= self.expires_at_ms => HoldStatus::Expired,
            HoldState::Active => HoldStatus::Active,
            HoldState::Purchasing { .. } => HoldStatus::Purchasing,
        }
    }
}
