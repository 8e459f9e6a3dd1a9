//! The standard conditions (`Ready`, `Progressing`, `Degraded`) as a reconcile sets them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use mercato_crds::status::Condition;

/// The conditions of one status, as a reconcile updates them.
pub struct Conditions {
    list: Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl Conditions {
    /// Starts from the conditions the object shows; those set are stamped with `generation`.
    pub fn new(current: &[Condition], generation: Option<i64>, now: Timestamp) -> Self {
        Self {
            list: current.to_vec(),
            generation,
            now,
        }
    }

    /// Sets a condition (`reason` CamelCase and machine-readable), keeping its
    /// `lastTransitionTime` unless its status changed: a reconcile that finds nothing new
    /// therefore leaves the status exactly as it was, and writes nothing.
    pub fn set(&mut self, kind: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        match self.list.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Time(self.now);
                }
                c.status = status.to_owned();
                c.reason = reason.to_owned();
                c.message = message;
                c.observed_generation = self.generation;
            }
            None => self.list.push(Condition {
                type_: kind.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                observed_generation: self.generation,
                last_transition_time: Time(self.now),
            }),
        }
    }

    pub fn into_vec(self) -> Vec<Condition> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_when_the_status_does() {
        let t0 = Timestamp::from_second(1_000).expect("time");
        let t1 = Timestamp::from_second(2_000).expect("time");
        let t2 = Timestamp::from_second(3_000).expect("time");
        let mut c = Conditions::new(&[], Some(1), t0);
        c.set("Ready", false, "Starting", "Starting".into());
        let mut c = Conditions::new(&c.into_vec(), Some(1), t1);
        c.set("Ready", false, "StillStarting", "StillStarting".into());
        let conditions = c.into_vec();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].reason, "StillStarting");
        let mut c = Conditions::new(&conditions, Some(2), t2);
        c.set("Ready", true, "Ready", "Ready".into());
        let conditions = c.into_vec();
        assert_eq!(conditions[0].last_transition_time, Time(t2));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }
}
