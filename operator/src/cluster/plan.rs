//! The build step of a reconcile: what the namespace's declarations ask of Kubernetes at one
//! instant, decided without I/O. The reconcile passes `now` in, so a test can ask what the
//! operator would do before, during and after a surge without waiting for one.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::declarations::Snapshot;
use crate::topology::{next_change, topology, Topology};
use crate::workloads::{workloads, BuildError, Object, WorkerSettings};

/// How often an unchanged declaration is looked at again, to refresh its counts and repair
/// drift in the objects it relies on.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon a declaration whose workers or content are still settling is looked at again.
pub const SETTLING: Duration = Duration::from_secs(10);
/// How soon an Event whose waiting room is taking shoppers is looked at again, for its counts.
pub const LIVE_ROOM: Duration = Duration::from_secs(30);

/// What one reconcile will bring about.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// The topics and worker roles of the whole namespace.
    pub topology: Topology,
    /// The shared worker Services and StatefulSets, sized for every declaration.
    pub objects: Vec<Object>,
    /// How long until the topology changes by itself (a surge starting or ending), if it will.
    pub next_change: Option<Duration>,
}

/// The plan for a namespace's declarations (`snapshot`) at `now`.
pub fn build(
    namespace: &str,
    snapshot: &Snapshot,
    settings: &WorkerSettings,
    now: DateTime<Utc>,
) -> Result<Plan, BuildError> {
    let topology = topology(&snapshot.manifests, now);
    let objects = workloads(namespace, &topology, &snapshot.owners, settings)?;
    // A second past the boundary, so the next reconcile lands inside the new window.
    let next_change = next_change(&snapshot.manifests, now)
        .map(|at| (at - now).to_std().unwrap_or_default() + Duration::from_secs(1));
    Ok(Plan {
        topology,
        objects,
        next_change,
    })
}

impl Plan {
    /// When to look again: soon while something is settling, at the next surge boundary, and
    /// otherwise now and then to refresh the counts.
    pub fn requeue_after(&self, settling: bool) -> Duration {
        let wait = if settling { SETTLING } else { RESYNC };
        self.next_change.map_or(wait, |until| wait.min(until))
    }
}

#[cfg(test)]
mod tests {
    use mercato_crds::Manifest;

    use super::*;
    use crate::topology::tests::EVENT;

    fn snapshot() -> Snapshot {
        Snapshot {
            manifests: Manifest::parse_stream(EVENT).expect("valid event"),
            ..Snapshot::default()
        }
    }

    fn at(t: &str) -> DateTime<Utc> {
        t.parse().expect("time")
    }

    fn holds_replicas(plan: &Plan) -> u32 {
        plan.topology
            .roles
            .iter()
            .find(|r| r.role == "holds")
            .map_or(0, |r| r.replicas)
    }

    #[test]
    fn a_surge_is_planned_for_its_window_and_the_reconcile_scheduled_at_its_edges() {
        let settings = WorkerSettings::default();
        let before =
            build("shop", &snapshot(), &settings, at("2027-01-10T09:00:00Z")).expect("plan");
        let during =
            build("shop", &snapshot(), &settings, at("2027-01-10T10:00:00Z")).expect("plan");
        let after =
            build("shop", &snapshot(), &settings, at("2027-01-10T12:00:00Z")).expect("plan");
        assert_eq!(holds_replicas(&before), 2);
        assert!(holds_replicas(&during) > holds_replicas(&before));
        assert_eq!(holds_replicas(&after), 2);
        // 50 minutes to the surge's start (10 minutes ahead of the on-sale): longer than the
        // resync, so a resting declaration waits the resync.
        assert_eq!(before.next_change, Some(Duration::from_secs(50 * 60 + 1)));
        assert_eq!(before.requeue_after(false), RESYNC);
        // The surge lasts 2 hours from the on-sale.
        assert_eq!(during.next_change, Some(Duration::from_secs(2 * 3600 + 1)));
        let near = build("shop", &snapshot(), &settings, at("2027-01-10T09:48:00Z")).expect("plan");
        assert_eq!(near.requeue_after(false), Duration::from_secs(121));
        assert_eq!(near.requeue_after(true), SETTLING);
        assert_eq!(after.next_change, None);
        assert_eq!(after.requeue_after(false), RESYNC);
        assert_eq!(after.requeue_after(true), SETTLING);
    }

    #[test]
    fn the_plan_is_the_same_for_the_same_declarations_and_time() {
        let settings = WorkerSettings::default();
        let now = at("2027-01-10T10:00:00Z");
        let a = build("shop", &snapshot(), &settings, now).expect("plan");
        let b = build("shop", &snapshot(), &settings, now).expect("plan");
        assert_eq!(a, b);
        assert!(!a.objects.is_empty());
    }
}
