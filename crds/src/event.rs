use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Problem;
use crate::status::EventStatus;
use crate::waiting_room::{validate_waiting_room, WaitingRoom};
use crate::workers::{validate_scale, validate_surge, EventWorkers};

pub const DEFAULT_HOLD: Duration = Duration::from_secs(600);
pub const MIN_HOLD: Duration = Duration::from_secs(1);
pub const MAX_HOLD: Duration = Duration::from_secs(3600);
const MAX_SEATS_PER_ROW: u32 = 500;
const MAX_ROWS: u32 = 500;
/// The most places a general-admission section may have: a large festival floor.
pub const MAX_GA_CAPACITY: u32 = 100_000;
/// The most seats any event lets one hold take (`maxSeatsPerHold` is at most this).
pub const MAX_SEATS_PER_HOLD: u32 = 100;
/// A shopper's seats in live holds at one event, unless the event says otherwise.
pub const DEFAULT_SEATS_PER_USER: u32 = 8;
/// The largest per-shopper cap an event may declare.
pub const MAX_SEATS_PER_USER: u32 = 10_000;

/// An integer number of minor units plus an ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units (cents, pence).
    #[schemars(range(min = 0))]
    pub amount: i64,
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Venue {
    pub name: String,
    pub city: String,
    #[schemars(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    #[schemars(range(min = -180.0, max = 180.0))]
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    pub id: String,
    pub name: String,
    pub price: Money,
}

/// A block of seats: `rows` rows of `seatsPerRow` seats, all in one price tier. Seat ids are
/// `<section>-<row>-<seat>` with rows and seats numbered from 1.
///
/// Or a standing floor: `generalAdmission: {capacity}` instead of rows. Its places are
/// claimed like seats (each place is a seat id `<section>-1-<n>`, n from 1 to the capacity,
/// so holds, lapses, orders and tickets work the same and capacity is counted exactly), but a
/// shopper asks for a quantity, never for a place by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Section {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub tier: String,
    /// Rows of seats; with `seatsPerRow`, for a seated section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub rows: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub seats_per_row: Option<u32>,
    /// A standing floor of `capacity` places, instead of rows of seats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_admission: Option<GeneralAdmission>,
}

/// A general-admission section: places, not seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneralAdmission {
    /// How many people the floor takes.
    #[schemars(range(min = 1, max = 100000))]
    pub capacity: u32,
}

impl Section {
    /// A seated section of `rows` rows of `seats_per_row` seats.
    pub fn seated(id: &str, tier: &str, rows: u32, seats_per_row: u32) -> Section {
        Section {
            id: id.into(),
            name: None,
            tier: tier.into(),
            rows: Some(rows),
            seats_per_row: Some(seats_per_row),
            general_admission: None,
        }
    }

    /// A general-admission section of `capacity` places.
    pub fn standing(id: &str, tier: &str, capacity: u32) -> Section {
        Section {
            id: id.into(),
            name: None,
            tier: tier.into(),
            rows: None,
            seats_per_row: None,
            general_admission: Some(GeneralAdmission { capacity }),
        }
    }

    pub fn is_general_admission(&self) -> bool {
        self.general_admission.is_some()
    }

    /// Rows of seats; a general-admission section's places are one row.
    pub fn row_count(&self) -> u32 {
        match self.general_admission {
            Some(_) => 1,
            None => self.rows.unwrap_or(0),
        }
    }

    /// Seats in each row; a general-admission section's one row holds its capacity.
    pub fn row_length(&self) -> u32 {
        match self.general_admission {
            Some(ga) => ga.capacity,
            None => self.seats_per_row.unwrap_or(0),
        }
    }

    /// Seats or places.
    pub fn capacity(&self) -> u64 {
        u64::from(self.row_count()) * u64::from(self.row_length())
    }
}

/// A ticketed show: a venue, its seat map in sections, price tiers, and when tickets go on sale.
// The printer columns repeat `type_ = "integer"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mercato.dev",
    version = "v1alpha1",
    kind = "Event",
    namespaced,
    status = "EventStatus",
    shortname = "mev",
    category = "mercato",
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.available"),
    printcolumn(name = "Held", type_ = "integer", json_path = ".status.held"),
    printcolumn(name = "Sold", type_ = "integer", json_path = ".status.sold"),
    printcolumn(name = "Standing", type_ = "integer", json_path = ".status.standing"),
    printcolumn(
        name = "Queue",
        type_ = "integer",
        json_path = ".status.waitingRoom.queued"
    ),
    printcolumn(
        name = "Admitted",
        type_ = "integer",
        json_path = ".status.waitingRoom.admitted"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    pub title: String,
    #[serde(default)]
    pub performers: Vec<String>,
    pub venue: Venue,
    pub starts_at: DateTime<Utc>,
    pub on_sale_at: DateTime<Utc>,
    /// How long a hold keeps its seats, as a duration ("10m", "90s"); 10 minutes by default.
    #[serde(default)]
    #[schemars(regex(pattern = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$"))]
    pub hold_duration: Option<String>,
    /// The most seats one hold may take; 10 by default.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub max_seats_per_hold: Option<u32>,
    /// The most seats one shopper may have in live holds at this event at once, across all
    /// their holds: 8 by default, or `maxSeatsPerHold` when that is larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_seats_per_user: Option<u32>,
    #[schemars(length(min = 1))]
    pub tiers: Vec<PriceTier>,
    #[schemars(length(min = 1))]
    pub sections: Vec<Section>,
    /// The holds and payments workers this event needs, and a surge around its on-sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<EventWorkers>,
    /// A virtual waiting room in front of the on-sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoom>,
}

impl EventSpec {
    /// The hold length. Only meaningful on a validated spec, where it always parses.
    pub fn hold_duration(&self) -> Duration {
        self.hold_duration
            .as_deref()
            .and_then(|s| humantime::parse_duration(s).ok())
            .unwrap_or(DEFAULT_HOLD)
    }

    pub fn max_seats_per_hold(&self) -> u32 {
        self.max_seats_per_hold.unwrap_or(10)
    }

    /// The cap on one shopper's seats in live holds at this event.
    pub fn max_seats_per_user(&self) -> u32 {
        self.max_seats_per_user
            .unwrap_or_else(|| DEFAULT_SEATS_PER_USER.max(self.max_seats_per_hold()))
    }

    pub fn capacity(&self) -> u64 {
        self.sections.iter().map(Section::capacity).sum()
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut need = |ok: bool, path: &str, message: String| {
            if !ok {
                problems.push(Problem::new(path, message));
            }
        };
        need(
            !self.title.trim().is_empty(),
            "spec.title",
            "must not be empty".into(),
        );
        need(
            (-90.0..=90.0).contains(&self.venue.lat),
            "spec.venue.lat",
            format!("{} is not a latitude (-90..90)", self.venue.lat),
        );
        need(
            (-180.0..=180.0).contains(&self.venue.lon),
            "spec.venue.lon",
            format!("{} is not a longitude (-180..180)", self.venue.lon),
        );
        need(
            !self.venue.city.trim().is_empty(),
            "spec.venue.city",
            "must not be empty".into(),
        );
        need(
            self.on_sale_at <= self.starts_at,
            "spec.onSaleAt",
            "must not be after startsAt".into(),
        );
        if let Some(text) = &self.hold_duration {
            match humantime::parse_duration(text) {
                Ok(d) => need(
                    (MIN_HOLD..=MAX_HOLD).contains(&d),
                    "spec.holdDuration",
                    format!("{text} is outside 1s..1h"),
                ),
                Err(e) => need(false, "spec.holdDuration", format!("{text:?}: {e}")),
            }
        }
        if let Some(max) = self.max_seats_per_hold {
            need(
                (1..=MAX_SEATS_PER_HOLD).contains(&max),
                "spec.maxSeatsPerHold",
                format!("{max} is outside 1..{MAX_SEATS_PER_HOLD}"),
            );
        }
        if let Some(max) = self.max_seats_per_user {
            need(
                (1..=MAX_SEATS_PER_USER).contains(&max),
                "spec.maxSeatsPerUser",
                format!("{max} is outside 1..{MAX_SEATS_PER_USER}"),
            );
        }
        need(
            !self.tiers.is_empty(),
            "spec.tiers",
            "at least one price tier is needed".into(),
        );
        let mut tier_ids = HashSet::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            let path = format!("spec.tiers[{i}]");
            need(
                is_id(&tier.id),
                &format!("{path}.id"),
                format!("{:?} must be lowercase letters, digits or '_'", tier.id),
            );
            need(
                tier_ids.insert(tier.id.as_str()),
                &format!("{path}.id"),
                format!("duplicate tier {:?}", tier.id),
            );
            need(
                tier.price.amount >= 0,
                &format!("{path}.price.amount"),
                "must not be negative".into(),
            );
            need(
                tier.price.currency.len() == 3
                    && tier.price.currency.bytes().all(|b| b.is_ascii_uppercase()),
                &format!("{path}.price.currency"),
                format!("{:?} is not an ISO 4217 code", tier.price.currency),
            );
        }
        need(
            !self.sections.is_empty(),
            "spec.sections",
            "at least one section is needed".into(),
        );
        let mut section_ids = HashSet::new();
        let currencies: HashSet<_> = self.tiers.iter().map(|t| &t.price.currency).collect();
        need(
            currencies.len() <= 1,
            "spec.tiers",
            "all tiers must share one currency".into(),
        );
        for (i, section) in self.sections.iter().enumerate() {
            let path = format!("spec.sections[{i}]");
            need(
                is_id(&section.id),
                &format!("{path}.id"),
                format!("{:?} must be lowercase letters, digits or '_'", section.id),
            );
            need(
                section_ids.insert(section.id.as_str()),
                &format!("{path}.id"),
                format!("duplicate section {:?}", section.id),
            );
            need(
                tier_ids.contains(section.tier.as_str()),
                &format!("{path}.tier"),
                format!("unknown tier {:?}", section.tier),
            );
            validate_shape(section, &path, &mut need);
        }
        if let Some(room) = &self.waiting_room {
            validate_waiting_room("spec.waitingRoom", room, &mut problems);
        }
        if let Some(workers) = &self.workers {
            for (role, scale) in [("holds", &workers.holds), ("payments", &workers.payments)] {
                if let Some(scale) = scale {
                    validate_scale(&format!("spec.workers.{role}"), scale, &mut problems);
                }
            }
            if let Some(surge) = &workers.surge {
                validate_surge("spec.workers.surge", surge, &mut problems);
            }
        }
        problems
    }
}

/// A section is seated (`rows` and `seatsPerRow`, each in range) or general admission
/// (`generalAdmission.capacity` in range), never both.
fn validate_shape(section: &Section, path: &str, need: &mut impl FnMut(bool, &str, String)) {
    match (
        section.general_admission,
        section.rows,
        section.seats_per_row,
    ) {
        (Some(ga), None, None) => need(
            (1..=MAX_GA_CAPACITY).contains(&ga.capacity),
            &format!("{path}.generalAdmission.capacity"),
            format!("{} is outside 1..{MAX_GA_CAPACITY}", ga.capacity),
        ),
        (Some(_), _, _) => need(
            false,
            &format!("{path}.generalAdmission"),
            "a general-admission section has a capacity, not rows or seatsPerRow".into(),
        ),
        (None, rows, per_row) => {
            need(
                rows.is_some_and(|r| (1..=MAX_ROWS).contains(&r)),
                &format!("{path}.rows"),
                match rows {
                    Some(r) => format!("{r} is outside 1..{MAX_ROWS}"),
                    None => "a seated section needs rows (or generalAdmission)".into(),
                },
            );
            need(
                per_row.is_some_and(|n| (1..=MAX_SEATS_PER_ROW).contains(&n)),
                &format!("{path}.seatsPerRow"),
                match per_row {
                    Some(n) => format!("{n} is outside 1..{MAX_SEATS_PER_ROW}"),
                    None => "a seated section needs seatsPerRow (or generalAdmission)".into(),
                },
            );
        }
    }
}

/// Ids that appear inside seat ids and topic keys (tiers and sections): lowercase letters,
/// digits and '_', no '-' (the seat id separator) and no '.' (the hold id separator).
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
