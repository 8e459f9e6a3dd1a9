//! The seat changes workers put on `seat-changes`, for read caches and live seat maps: seats in
//! their canonical spelling, each once. A row from before seat ids were checked may hold an id
//! that names no seat in any spelling; it is left out of the change and logged with the hold it
//! came from, never dropped in silence. Every change names its hold.

use mercato_core::domain::commands::{SeatChange, SeatChangeKind};
use mercato_core::domain::seats::canonical_seats;
use mercato_core::names::topics;

use crate::runtime::Emit;

/// The change of `written` seats (as the row of `hold_id`, or of an order through it, spells
/// them) of `event_id`.
pub fn seat_change(
    event_id: &str,
    written: &[String],
    change: SeatChangeKind,
    hold_id: &str,
) -> Emit {
    let (seats, unreadable) = canonical_seats(written);
    if !unreadable.is_empty() {
        tracing::warn!(
            hold = hold_id,
            event = event_id,
            seats = ?unreadable,
            "seat ids that name no seat in any spelling; left out of the seat change"
        );
    }
    let change = SeatChange {
        event_id: event_id.to_owned(),
        seat_ids: seats.iter().map(ToString::to_string).collect(),
        change,
        hold_id: Some(hold_id.to_owned()),
    };
    Emit::new(topics::SEAT_CHANGES, event_id.to_owned(), &change)
}
