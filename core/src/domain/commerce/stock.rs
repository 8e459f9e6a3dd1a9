//! The stock of one SKU across every warehouse, as one row: what is on the shelves per
//! warehouse, what live checkouts have reserved, and what paid orders await allocation.
//!
//! Keeping it in one row makes every change a compare-and-set on that row, so concurrent
//! shoppers can never take more than there is. A reservation carries its own expiry and stops
//! counting the moment it lapses, so a lapsed checkout returns its stock exactly once and with
//! no sweeper; expired entries are pruned by whichever write comes next.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub warehouses: BTreeMap<String, WarehouseStock>,
    pub reservations: Vec<Reservation>,
    /// Paid order lines not yet split across warehouses.
    pub sold: Vec<SoldLine>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseStock {
    /// Units on the shelves.
    pub physical: u64,
    /// Units that may still be allocated to orders.
    pub available: u64,
    /// The counts the warehouse's latest declaration gave: a re-apply that leaves them as
    /// they were keeps the live counts instead of resetting them.
    pub declared_physical: u64,
    pub declared_available: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub checkout_id: String,
    pub quantity: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoldLine {
    pub order_id: String,
    pub quantity: u64,
}

/// What became of a checkout's reservation when its order was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Conversion {
    Converted,
    /// A replay: this order already holds the units.
    AlreadySold,
    /// The reservation lapsed (or was released) before the payment completed.
    Lapsed,
}

impl StockLevel {
    /// Units the warehouses may still allocate.
    pub fn on_hand(&self) -> u64 {
        self.warehouses.values().map(|w| w.available).sum()
    }

    pub fn reserved(&self, now_ms: u64) -> u64 {
        self.reservations
            .iter()
            .filter(|r| r.expires_at_ms > now_ms)
            .map(|r| r.quantity)
            .sum()
    }

    pub fn unallocated(&self) -> u64 {
        self.sold.iter().map(|s| s.quantity).sum()
    }

    /// What a shopper can still put in a checkout.
    pub fn available(&self, now_ms: u64) -> u64 {
        self.on_hand()
            .saturating_sub(self.reserved(now_ms) + self.unallocated())
    }

    /// Drops lapsed reservations; their units already count as available.
    pub fn prune(&mut self, now_ms: u64) {
        self.reservations.retain(|r| r.expires_at_ms > now_ms);
    }

    fn reservation(&self, checkout_id: &str, now_ms: u64) -> Option<&Reservation> {
        self.reservations
            .iter()
            .find(|r| r.checkout_id == checkout_id && r.expires_at_ms > now_ms)
    }

    /// Reserves `quantity` for a checkout; a replay for the same checkout changes nothing.
    /// Err carries what is available.
    pub fn reserve(
        &mut self,
        checkout_id: &str,
        quantity: u64,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<bool, u64> {
        if self.reservation(checkout_id, now_ms).is_some() {
            return Ok(false);
        }
        let available = self.available(now_ms);
        if quantity > available {
            return Err(available);
        }
        self.prune(now_ms);
        self.reservations.push(Reservation {
            checkout_id: checkout_id.to_owned(),
            quantity,
            expires_at_ms,
        });
        Ok(true)
    }

    /// Gives a checkout's reservation back; false if there was none (already released, lapsed
    /// or converted).
    pub fn release(&mut self, checkout_id: &str, now_ms: u64) -> bool {
        let before = self.reservations.len();
        self.reservations.retain(|r| r.checkout_id != checkout_id);
        let removed = self.reservations.len() != before;
        self.prune(now_ms);
        removed
    }

    /// Turns a checkout's live reservation into a sale awaiting allocation.
    pub fn convert(&mut self, checkout_id: &str, order_id: &str, now_ms: u64) -> Conversion {
        if self.sold.iter().any(|s| s.order_id == order_id) {
            return Conversion::AlreadySold;
        }
        let Some(quantity) = self.reservation(checkout_id, now_ms).map(|r| r.quantity) else {
            return Conversion::Lapsed;
        };
        self.reservations.retain(|r| r.checkout_id != checkout_id);
        self.prune(now_ms);
        self.sold.push(SoldLine {
            order_id: order_id.to_owned(),
            quantity,
        });
        Conversion::Converted
    }

    /// Takes an order's sold units back (cancelled before allocation, or a lapsed sibling
    /// line); false if it held none here.
    pub fn unsell(&mut self, order_id: &str) -> bool {
        let before = self.sold.len();
        self.sold.retain(|s| s.order_id != order_id);
        self.sold.len() != before
    }

    /// Moves an order's sold units onto warehouses: the planned takes while the units are
    /// still there (another order may have taken them since the plan), the rest from
    /// `fallback` warehouses in that order. Returns the takes made (none when the order holds
    /// nothing here: allocated already, or cancelled) and the units no warehouse had.
    pub fn allocate_from(
        &mut self,
        order_id: &str,
        planned: &[(String, u64)],
        fallback: &[String],
    ) -> (Vec<(String, u64)>, u64) {
        let Some(quantity) = self
            .sold
            .iter()
            .find(|s| s.order_id == order_id)
            .map(|s| s.quantity)
        else {
            return (Vec::new(), 0);
        };
        self.unsell(order_id);
        let mut need = quantity;
        let mut takes: Vec<(String, u64)> = Vec::new();
        let wishes = planned
            .iter()
            .cloned()
            .chain(fallback.iter().map(|w| (w.clone(), u64::MAX)));
        for (warehouse, wish) in wishes {
            if need == 0 {
                break;
            }
            let Some(w) = self.warehouses.get_mut(&warehouse) else {
                continue;
            };
            let take = wish.min(need).min(w.available);
            if take == 0 {
                continue;
            }
            w.available -= take;
            need -= take;
            match takes.iter_mut().find(|(name, _)| *name == warehouse) {
                Some((_, q)) => *q += take,
                None => takes.push((warehouse, take)),
            }
        }
        (takes, need)
    }

    /// Units back on a warehouse's shelves for sale: a cancelled allocation (`physical` false)
    /// or a return (`physical` true: they had left the building).
    pub fn restock(&mut self, warehouse: &str, quantity: u64, physical: bool) {
        let w = self.warehouses.entry(warehouse.to_owned()).or_default();
        w.available += quantity;
        if physical {
            w.physical += quantity;
        }
    }

    /// Units leave the warehouse with a shipment.
    pub fn ship(&mut self, warehouse: &str, quantity: u64) {
        if let Some(w) = self.warehouses.get_mut(warehouse) {
            w.physical = w.physical.saturating_sub(quantity);
        }
    }

    /// A warehouse declares its counts. Unchanged declared counts keep the live counts; new
    /// ones replace them (a stock take). Returns whether anything changed.
    pub fn declare(&mut self, warehouse: &str, physical: u64, available: u64) -> bool {
        let w = self.warehouses.entry(warehouse.to_owned()).or_default();
        if w.declared_physical == physical
            && w.declared_available == available
            && (physical, available) != (0, 0)
        {
            return false;
        }
        *w = WarehouseStock {
            physical,
            available,
            declared_physical: physical,
            declared_available: available,
        };
        true
    }

    /// The warehouse no longer stocks this SKU.
    pub fn withdraw(&mut self, warehouse: &str) -> bool {
        self.warehouses.remove(warehouse).is_some()
    }
}

crate::first_layout!(StockLevel);

#[cfg(test)]
mod tests {
    use super::*;

    fn level(available: u64) -> StockLevel {
        let mut s = StockLevel::default();
        s.declare("east", available, available);
        s
    }

    #[test]
    fn reservations_count_until_they_lapse() {
        let mut s = level(5);
        assert_eq!(s.reserve("c1", 3, 1_000, 0), Ok(true));
        assert_eq!(s.reserve("c1", 3, 1_000, 0), Ok(false), "a replay");
        assert_eq!(s.reserve("c2", 3, 1_000, 0), Err(2));
        assert_eq!(s.available(999), 2);
        assert_eq!(s.available(1_000), 5, "lapsed at its expiry");
        assert_eq!(s.reserve("c2", 5, 2_000, 1_000), Ok(true));
        assert_eq!(s.reservations.len(), 1, "the lapsed one was pruned");
    }

    #[test]
    fn conversion_needs_a_live_reservation_and_is_idempotent() {
        let mut s = level(5);
        s.reserve("c1", 2, 1_000, 0).unwrap();
        assert_eq!(s.convert("c1", "o1", 1_000), Conversion::Lapsed);
        s.reserve("c1", 2, 3_000, 1_500).unwrap();
        assert_eq!(s.convert("c1", "o1", 2_000), Conversion::Converted);
        assert_eq!(s.convert("c1", "o1", 2_000), Conversion::AlreadySold);
        assert_eq!(s.available(10_000), 3);
        assert_eq!(
            s.allocate_from("o1", &[("east".into(), 2)], &[]),
            (vec![("east".into(), 2)], 0)
        );
        assert_eq!(
            s.allocate_from("o1", &[("east".into(), 2)], &[]),
            (vec![], 0),
            "once"
        );
        assert_eq!((s.on_hand(), s.available(10_000)), (3, 3));
        s.restock("east", 2, false);
        assert_eq!(s.available(10_000), 5);
    }

    #[test]
    fn allocation_spills_over_when_a_planned_warehouse_ran_short() {
        let mut s = level(1);
        s.declare("west", 5, 5);
        s.reserve("c1", 3, 1_000, 0).unwrap();
        s.convert("c1", "o1", 0);
        let (takes, short) =
            s.allocate_from("o1", &[("east".into(), 3)], &["east".into(), "west".into()]);
        assert_eq!(takes, vec![("east".into(), 1), ("west".into(), 2)]);
        assert_eq!(short, 0);
        assert_eq!(s.on_hand(), 3);
    }

    #[test]
    fn an_unchanged_declaration_keeps_live_counts() {
        let mut s = level(5);
        s.reserve("c1", 2, 3_000, 0).unwrap();
        s.convert("c1", "o1", 0);
        s.allocate_from("o1", &[("east".into(), 2)], &[]);
        assert!(!s.declare("east", 5, 5));
        assert_eq!(s.on_hand(), 3);
        assert!(s.declare("east", 9, 8), "a stock take");
        assert_eq!(s.on_hand(), 8);
    }
}
