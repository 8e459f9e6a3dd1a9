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

/// Hold rows outlive their seats' claims so a shopper can still see an expired hold.
pub const ROW_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Clustering keys of hold rows start with this; it sorts after every seat id, so a scan of a
/// section's seats can stop at the first hold row.
pub const ROW_PREFIX: &str = "~hold.";

/// A hold lives in the `seat_claims` partition of its first seat's section, beside the seats it
/// claims, so the hold and those claims are written by one conditional batch. Its id says where:
/// `hold-<event>.<section>.<unique>` (event names and section ids never contain '.').
pub fn new_id(event_id: &str, section: &str, unique: &str) -> String {
    format!("hold-{event_id}.{section}.{unique}")
}

/// Where a hold's row is: (partition, clustering key) of `seat_claims`.
pub fn locate(hold_id: &str) -> Option<(String, String)> {
    let rest = hold_id.strip_prefix("hold-")?;
    let mut parts = rest.split('.');
    let (event, section, unique) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || event.is_empty() || section.is_empty() || unique.is_empty() {
        return None;
    }
    Some((
        crate::domain::seats::claims_partition(event, section),
        format!("{ROW_PREFIX}{hold_id}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_say_where_the_hold_is() {
        let id = new_id("big-show", "s01", "abc123");
        assert_eq!(
            locate(&id),
            Some((
                "big-show/s01".into(),
                "~hold.hold-big-show.s01.abc123".into()
            ))
        );
        for bad in [
            "",
            "hold-",
            "hold-a.b",
            "hold-a.b.c.d",
            "nope-a.b.c",
            "hold-.b.c",
        ] {
            assert_eq!(locate(bad), None, "{bad:?}");
        }
    }
}
