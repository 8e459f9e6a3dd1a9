//! Best available: which free seats to offer a shopper who asks for a number of seats rather
//! than naming them. Pure: the gateway hands in what is taken and places the offer it picks
//! like any hold (all or nothing), trying the next offer when it loses a race.
//!
//! The rule, the same for every event (declare a venue's sections nearest the stage first):
//! 1. Sections in the order the event declares them, among those asked for (one section, a
//!    tier's sections, or all).
//! 2. Within a section, the front row first: row 1 is nearest the stage.
//! 3. Within a row, nearest the centre line: the group whose middle is closest to the row's
//!    middle, the left one on a tie.
//!
//! With `together`, an offer is `quantity` adjacent free seats in one row; a group that fits
//! nowhere in one row is not split. Without, an offer is the best `quantity` free seats in
//! that order, wherever they are.
//!
//! General-admission sections have places, not seats, and no best: [`free_places`] lists a
//! floor's free places and the gateway takes the quantity asked for at random among them, so
//! shoppers racing for the last places of a floor spread over all of them instead of all
//! losing the same one. Seated offers never come from a general-admission section.

use std::collections::HashSet;

use mercato_crds::Section;

use crate::domain::seats::{all_seats, SeatId};

/// How far a group of `len` seats starting at `first` sits from the middle of a row of
/// `per_row`, in half seats.
fn off_centre(first: u32, len: u32, per_row: u32) -> u32 {
    (2 * first + len - 1).abs_diff(per_row + 1)
}

/// Up to `limit` offers of `quantity` free seats, best first, disjoint. `taken` holds the
/// canonical ids of seats held or sold.
pub fn best_available(
    sections: &[&Section],
    taken: &HashSet<String>,
    quantity: u32,
    together: bool,
    limit: usize,
) -> Vec<Vec<SeatId>> {
    if quantity == 0 || limit == 0 {
        return Vec::new();
    }
    let free = |section: &Section, row: u32, seat: u32| {
        !taken.contains(&format!("{}-{row}-{seat}", section.id))
    };
    let seat = |section: &Section, row: u32, seat: u32| SeatId {
        section: section.id.clone(),
        row,
        seat,
    };
    let mut offers = Vec::new();
    let seated = || sections.iter().filter(|s| !s.is_general_admission());
    if together {
        for section in seated() {
            let per_row = section.row_length();
            if quantity > per_row {
                continue;
            }
            for row in 1..=section.row_count() {
                let free_here: Vec<bool> = (1..=per_row).map(|s| free(section, row, s)).collect();
                // Every window of `quantity` free seats, nearest the centre first; then the
                // disjoint ones kept in that order.
                let mut windows: Vec<u32> = (1..=per_row - quantity + 1)
                    .filter(|&first| {
                        free_here[(first - 1) as usize..(first - 1 + quantity) as usize]
                            .iter()
                            .all(|f| *f)
                    })
                    .collect();
                windows.sort_by_key(|&first| (off_centre(first, quantity, per_row), first));
                let mut used = vec![false; per_row as usize];
                for first in windows {
                    let span = (first - 1) as usize..(first - 1 + quantity) as usize;
                    if used[span.clone()].iter().any(|u| *u) {
                        continue;
                    }
                    used[span].iter_mut().for_each(|u| *u = true);
                    offers.push(
                        (first..first + quantity)
                            .map(|s| seat(section, row, s))
                            .collect(),
                    );
                    if offers.len() == limit {
                        return offers;
                    }
                }
            }
        }
        return offers;
    }
    let mut current = Vec::new();
    for section in seated() {
        let per_row = section.row_length();
        for row in 1..=section.row_count() {
            let mut order: Vec<u32> = (1..=per_row).collect();
            order.sort_by_key(|&s| (off_centre(s, 1, per_row), s));
            for s in order.into_iter().filter(|&s| free(section, row, s)) {
                current.push(seat(section, row, s));
                if current.len() == quantity as usize {
                    offers.push(std::mem::take(&mut current));
                    if offers.len() == limit {
                        return offers;
                    }
                }
            }
        }
    }
    offers
}

/// The free places of general-admission sections, in order. `taken` holds the canonical ids
/// of places held or sold.
pub fn free_places(sections: &[&Section], taken: &HashSet<String>) -> Vec<SeatId> {
    sections
        .iter()
        .filter(|s| s.is_general_admission())
        .flat_map(|s| all_seats(s))
        .filter(|place| !taken.contains(&place.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: &str, rows: u32, per_row: u32) -> Section {
        Section::seated(id, "std", rows, per_row)
    }

    fn ids(offer: &[SeatId]) -> Vec<String> {
        offer.iter().map(ToString::to_string).collect()
    }

    fn taken(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_front_row_centre_first_then_outwards_then_the_next_row() {
        let a = section("a", 2, 10);
        let offers = best_available(&[&a], &taken(&[]), 2, true, 10);
        assert_eq!(ids(&offers[0]), ["a-1-5", "a-1-6"], "the middle of row 1");
        assert_eq!(
            ids(&offers[1]),
            ["a-1-3", "a-1-4"],
            "then beside it, left first"
        );
        assert_eq!(ids(&offers[2]), ["a-1-7", "a-1-8"]);
        assert_eq!(
            ids(&offers[5]),
            ["a-2-5", "a-2-6"],
            "row 1 is full of offers: row 2"
        );
        // Disjoint, and every offer adjacent in one row.
        let mut seen = HashSet::new();
        for offer in &offers {
            assert!(offer.iter().all(|s| seen.insert(s.to_string())));
            assert!(offer
                .windows(2)
                .all(|w| w[0].row == w[1].row && w[1].seat == w[0].seat + 1));
        }
    }

    #[test]
    fn together_never_splits_a_group_and_skips_rows_without_room() {
        let a = section("a", 2, 5);
        // Row 1 has free seats 1, 2 and 4, 5 only: no three together.
        let offers = best_available(&[&a], &taken(&["a-1-3"]), 3, true, 10);
        assert_eq!(ids(&offers[0]), ["a-2-2", "a-2-3", "a-2-4"]);
        assert_eq!(offers.len(), 1);
        // Apart, the best three free seats wherever they are.
        let apart = best_available(&[&a], &taken(&["a-1-3"]), 3, false, 1);
        assert_eq!(ids(&apart[0]), ["a-1-2", "a-1-4", "a-1-1"]);
        // More than a row holds: no offer together.
        assert!(best_available(&[&a], &taken(&[]), 6, true, 10).is_empty());
    }

    #[test]
    fn sections_in_declared_order_and_nothing_when_full() {
        let (a, b) = (section("a", 1, 2), section("b", 1, 4));
        let offers = best_available(&[&a, &b], &taken(&["a-1-1"]), 2, true, 10);
        assert_eq!(
            ids(&offers[0]),
            ["b-1-2", "b-1-3"],
            "a has no two together left"
        );
        let full = taken(&["a-1-1", "a-1-2"]);
        assert!(best_available(&[&a], &full, 1, false, 10).is_empty());
        assert!(best_available(&[&a], &full, 0, true, 10).is_empty());
    }

    #[test]
    fn a_standing_floor_offers_its_free_places_and_no_seats() {
        let (a, floor) = (section("a", 1, 4), Section::standing("floor", "std", 5));
        let taken = taken(&["floor-1-2", "floor-1-5", "a-1-1"]);
        let places = free_places(&[&a, &floor], &taken);
        assert_eq!(ids(&places), ["floor-1-1", "floor-1-3", "floor-1-4"]);
        // Seated offers never come from the floor, together or not.
        assert!(best_available(&[&floor], &taken, 1, false, 10).is_empty());
        assert!(best_available(&[&floor], &taken, 2, true, 10).is_empty());
        let seated = best_available(&[&floor, &a], &taken, 1, false, 10);
        assert!(
            seated.iter().flatten().all(|s| s.section == "a"),
            "{seated:?}"
        );
    }
}
