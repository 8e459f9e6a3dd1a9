//! The standard conditions (`Ready`, `Progressing`, `Degraded`) as a reconcile sets them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mercato_crds::status::Condition;

/// One condition's new state: its status, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed<'a> {
    pub kind: &'a str,
    pub status: bool,
    /// CamelCase, machine-readable (`TopicCannotShrink`, `SpecInvalid`, `ApiError`).
    pub reason: &'a str,
    pub message: String,
}

/// Sets a condition, keeping its `lastTransitionTime` unless its status changed: a reconcile
/// that finds nothing new therefore leaves the status exactly as it was, and writes nothing.
pub fn set(
    conditions: &mut Vec<Condition>,
    observed: Observed<'_>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if observed.status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == observed.kind) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status.to_owned();
            c.reason = observed.reason.to_owned();
            c.message = observed.message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: observed.kind.to_owned(),
            status: status.to_owned(),
            reason: observed.reason.to_owned(),
            message: observed.message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(status: bool, reason: &str) -> Observed<'_> {
        Observed {
            kind: "Ready",
            status,
            reason,
            message: reason.to_owned(),
        }
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_does() {
        let t0 = Timestamp::from_second(1_000).expect("time");
        let t1 = Timestamp::from_second(2_000).expect("time");
        let t2 = Timestamp::from_second(3_000).expect("time");
        let mut conditions = Vec::new();
        set(&mut conditions, observed(false, "Starting"), Some(1), t0);
        set(
            &mut conditions,
            observed(false, "StillStarting"),
            Some(1),
            t1,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].reason, "StillStarting");
        set(&mut conditions, observed(true, "Ready"), Some(2), t2);
        assert_eq!(conditions[0].last_transition_time, Time(t2));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }
}
