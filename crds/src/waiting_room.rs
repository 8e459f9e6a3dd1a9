//! An Event's virtual waiting room: a queue that opens before the on-sale and admits shoppers
//! against the seats left.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Problem;

/// How long before the on-sale the pre-queue opens when `opensAt` is not given.
pub const DEFAULT_PRE_QUEUE: Duration = Duration::from_secs(30 * 60);
const MAX_PRE_QUEUE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an admitted shopper has to hold seats when `admissionWindow` is not given.
pub const DEFAULT_ADMISSION_WINDOW: Duration = Duration::from_secs(10 * 60);
const MIN_ADMISSION_WINDOW: Duration = Duration::from_secs(30);
const MAX_ADMISSION_WINDOW: Duration = Duration::from_secs(3600);
/// How long a queued shopper may go without looking at their place (a poll or an open
/// stream) before the place is given up, when `abandonAfter` is not given.
pub const DEFAULT_ABANDON_AFTER: Duration = Duration::from_secs(120);
const MIN_ABANDON_AFTER: Duration = Duration::from_secs(10);
/// The ceiling on live admissions when `maxActive` is not given.
pub const DEFAULT_MAX_ACTIVE: u32 = 2_000;
const MAX_MAX_ACTIVE: u32 = 1_000_000;

/// Shoppers queue from `opensAt` before the on-sale; at the on-sale those already waiting are
/// put in a random order, later ones join first come, first served; the head of the queue is
/// admitted at the pace the seats left allow, never more than `maxActive` at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitingRoom {
    /// Whether holds for the event go through the room (true by default; false keeps the
    /// declaration while selling without it).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// How long before `onSaleAt` the pre-queue opens, as a duration ("30m" by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$"))]
    pub opens_at: Option<String>,
    /// How long an admitted shopper may take to hold seats before the admission lapses
    /// ("10m" by default, 30s..1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$"))]
    pub admission_window: Option<String>,
    /// The most shoppers with a live admission at once (2,000 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_active: Option<u32>,
    /// How long a queued shopper may go without polling or streaming their place before it is
    /// skipped as abandoned ("2m" by default, 10s..1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$"))]
    pub abandon_after: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

fn duration(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|s| humantime::parse_duration(s).ok())
        .unwrap_or(default)
}

impl WaitingRoom {
    /// How long before the on-sale the pre-queue opens. Only meaningful on a validated spec.
    pub fn pre_queue(&self) -> Duration {
        duration(self.opens_at.as_deref(), DEFAULT_PRE_QUEUE)
    }

    /// When the pre-queue opens for an on-sale at `on_sale_at`.
    pub fn opens(&self, on_sale_at: DateTime<Utc>) -> DateTime<Utc> {
        let lead = chrono::Duration::from_std(self.pre_queue()).unwrap_or_default();
        on_sale_at - lead
    }

    pub fn admission_window(&self) -> Duration {
        duration(self.admission_window.as_deref(), DEFAULT_ADMISSION_WINDOW)
    }

    pub fn abandon_after(&self) -> Duration {
        duration(self.abandon_after.as_deref(), DEFAULT_ABANDON_AFTER)
    }

    pub fn max_active(&self) -> u32 {
        self.max_active.unwrap_or(DEFAULT_MAX_ACTIVE)
    }
}

/// Checks a waiting room declared at `path`, adding every problem to `problems`.
pub(crate) fn validate_waiting_room(path: &str, room: &WaitingRoom, problems: &mut Vec<Problem>) {
    let mut check = |field: &str, text: &Option<String>, range: (Duration, Duration)| {
        let Some(text) = text else { return };
        let at = format!("{path}.{field}");
        match humantime::parse_duration(text) {
            Ok(d) if (range.0..=range.1).contains(&d) => {}
            Ok(_) => problems.push(Problem::new(
                &at,
                format!(
                    "{text} is outside {}..{}",
                    humantime::format_duration(range.0),
                    humantime::format_duration(range.1)
                ),
            )),
            Err(e) => problems.push(Problem::new(&at, format!("{text:?}: {e}"))),
        }
    };
    check("opensAt", &room.opens_at, (Duration::ZERO, MAX_PRE_QUEUE));
    check(
        "admissionWindow",
        &room.admission_window,
        (MIN_ADMISSION_WINDOW, MAX_ADMISSION_WINDOW),
    );
    check(
        "abandonAfter",
        &room.abandon_after,
        (MIN_ABANDON_AFTER, MAX_ADMISSION_WINDOW),
    );
    if let Some(max) = room.max_active {
        if !(1..=MAX_MAX_ACTIVE).contains(&max) {
            problems.push(Problem::new(
                format!("{path}.maxActive"),
                format!("{max} is outside 1..{MAX_MAX_ACTIVE}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(opens_at: Option<&str>, window: Option<&str>, max: Option<u32>) -> WaitingRoom {
        WaitingRoom {
            enabled: true,
            opens_at: opens_at.map(Into::into),
            admission_window: window.map(Into::into),
            max_active: max,
            abandon_after: None,
        }
    }

    fn problems(room: &WaitingRoom) -> Vec<String> {
        let mut out = Vec::new();
        validate_waiting_room("spec.waitingRoom", room, &mut out);
        out.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn defaults_and_bounds() {
        let plain: WaitingRoom = serde_json::from_str("{}").expect("an empty room parses");
        assert!(plain.enabled, "declaring a room enables it");
        assert_eq!(plain.pre_queue(), DEFAULT_PRE_QUEUE);
        assert_eq!(plain.admission_window(), DEFAULT_ADMISSION_WINDOW);
        assert_eq!(plain.max_active(), DEFAULT_MAX_ACTIVE);
        assert_eq!(plain.abandon_after(), DEFAULT_ABANDON_AFTER);
        let mut quick = room(None, None, None);
        quick.abandon_after = Some("5s".into());
        assert_eq!(problems(&quick), ["spec.waitingRoom.abandonAfter"]);
        let on_sale: DateTime<Utc> = "2027-01-01T10:00:00Z".parse().expect("a time");
        assert_eq!(
            room(Some("1h"), None, None).opens(on_sale).to_rfc3339(),
            "2027-01-01T09:00:00+00:00"
        );
        assert!(problems(&room(Some("0s"), Some("30s"), Some(1))).is_empty());
        assert_eq!(
            problems(&room(Some("8 days"), Some("10s"), Some(0))),
            [
                "spec.waitingRoom.opensAt",
                "spec.waitingRoom.admissionWindow",
                "spec.waitingRoom.maxActive"
            ]
        );
        assert_eq!(
            problems(&room(Some("soon"), None, None)),
            ["spec.waitingRoom.opensAt"]
        );
    }
}
