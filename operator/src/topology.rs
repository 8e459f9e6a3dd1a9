//! A namespace's declarations become its topology, without I/O: the topics (with the partitions
//! they need) and the worker roles (with the replicas they need now).
//!
//! Workers are shared: the holds workers serve every Event of the namespace, the ingest workers
//! every Inventory. So a role runs the most replicas any declaration asks for, and its topic has
//! the most partitions any declaration asks for (never fewer than the platform's default). An
//! Event's on-sale surge raises the holds and payments replicas inside its window only, which
//! makes the topology a function of the time as well; [`next_change`] says when to look again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mercato_core::domain::commerce::warehouse_topic;
use mercato_core::names::topics;
use mercato_crds::workers::WorkerScale;
use mercato_crds::Manifest;
use serde::Serialize;

use crate::desired::TopicSpec;

/// A worker role as the operator runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePlan {
    /// `holds`, `payments`, `ingest`, `checkout` or `allocator` (`mercato worker <role>`).
    pub role: &'static str,
    /// The topic the role consumes.
    pub topic: &'static str,
    pub replicas: u32,
    /// The declarations that need the role, as `Kind/name`.
    pub needed_by: Vec<String>,
    /// Set when more replicas were asked for than the topic has partitions: the extra ones
    /// would own no partition, so they are not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capped_from: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Every topic the namespace's declarations rely on, with the partitions they ask for.
    pub topics: Vec<TopicSpec>,
    /// The worker roles some declaration needs, in [`ROLE_ORDER`].
    pub roles: Vec<RolePlan>,
}

/// The worker roles, each with the topic it consumes, in the order they are listed.
pub const ROLE_ORDER: [(&str, &str); 5] = [
    ("holds", topics::HOLDS),
    ("payments", topics::PAYMENTS),
    ("ingest", topics::INGEST),
    ("checkout", topics::CHECKOUTS),
    ("allocator", topics::ALLOCATIONS),
];

/// What one declaration asks of one role.
struct Need<'a> {
    role: &'static str,
    by: String,
    scale: Option<&'a WorkerScale>,
    /// Replicas inside an active surge, which replace the declared ones.
    surge: Option<u32>,
}

fn needs(manifest: &Manifest, now: DateTime<Utc>) -> Vec<Need<'_>> {
    let by = format!("{}/{}", manifest.kind(), manifest.name());
    let need = |role, scale, surge| Need {
        role,
        by: by.clone(),
        scale,
        surge,
    };
    match manifest {
        Manifest::Event { spec, .. } => {
            let workers = spec.workers.as_ref();
            let surge = workers.and_then(|w| w.surge.as_ref()).filter(|s| {
                let (from, until) = s.window(spec.on_sale_at);
                (from..until).contains(&now)
            });
            vec![
                need(
                    "holds",
                    workers.and_then(|w| w.holds.as_ref()),
                    surge.map(|s| s.holds),
                ),
                need(
                    "payments",
                    workers.and_then(|w| w.payments.as_ref()),
                    surge.map(|s| s.payments),
                ),
            ]
        }
        Manifest::Inventory { spec, .. } => {
            let workers = spec.workers.as_ref();
            vec![
                need("ingest", workers.and_then(|w| w.ingest.as_ref()), None),
                need("checkout", workers.and_then(|w| w.checkout.as_ref()), None),
                // Paid product orders are charged by the payments workers and split across
                // warehouses by the allocator.
                need("payments", None, None),
            ]
        }
        Manifest::Warehouse { spec, .. } => vec![need(
            "allocator",
            spec.workers.as_ref().and_then(|w| w.allocator.as_ref()),
            None,
        )],
    }
}

/// The topology of a namespace's declarations at `now`.
pub fn topology(declarations: &[Manifest], now: DateTime<Utc>) -> Topology {
    let mut partitions: BTreeMap<String, u32> = crate::desired::platform_topics()
        .into_iter()
        .map(|t| (t.name, t.partitions))
        .collect();
    let mut roles: BTreeMap<&'static str, RolePlan> = BTreeMap::new();
    for manifest in declarations {
        if let Manifest::Warehouse { metadata, .. } = manifest {
            // Sub-orders reach each warehouse on its own topic, in order per order id.
            partitions.insert(warehouse_topic(&metadata.name), 1);
        }
        for need in needs(manifest, now) {
            let topic = role_topic(need.role);
            let asked = need.scale.and_then(|s| s.partitions).unwrap_or(0);
            let entry = partitions.entry(topic.to_owned()).or_insert(asked);
            *entry = (*entry).max(asked);
            let replicas = need
                .surge
                .or(need.scale.and_then(|s| s.replicas))
                .unwrap_or(1);
            let plan = roles.entry(need.role).or_insert_with(|| RolePlan {
                role: need.role,
                topic,
                replicas: 0,
                needed_by: Vec::new(),
                capped_from: None,
            });
            plan.replicas = plan.replicas.max(replicas);
            plan.needed_by.push(need.by);
        }
    }
    let roles = ROLE_ORDER
        .iter()
        .filter_map(|(role, _)| roles.remove(role))
        .map(|mut plan| {
            let limit = partitions.get(plan.topic).copied().unwrap_or(1);
            if plan.replicas > limit {
                plan.capped_from = Some(plan.replicas);
                plan.replicas = limit;
            }
            plan
        })
        .collect();
    Topology {
        topics: partitions
            .into_iter()
            .map(|(name, partitions)| TopicSpec { name, partitions })
            .collect(),
        roles,
    }
}

fn role_topic(role: &str) -> &'static str {
    ROLE_ORDER
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(topics::HOLDS, |(_, t)| t)
}

/// The next instant after `now` at which some surge starts or ends, so a reconcile can be
/// scheduled for it instead of polling.
pub fn next_change(declarations: &[Manifest], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    declarations
        .iter()
        .filter_map(|m| match m {
            Manifest::Event { spec, .. } => spec
                .workers
                .as_ref()
                .and_then(|w| w.surge.as_ref())
                .map(|s| s.window(spec.on_sale_at)),
            _ => None,
        })
        .flat_map(|(from, until)| [from, until])
        .filter(|t| *t > now)
        .min()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An Event with a surge, and a Warehouse asking for more allocators than partitions.
    pub(crate) const EVENT: &str = r#"
apiVersion: mercato.dev/v1alpha1
kind: Event
metadata: {name: final}
spec:
  title: Final
  venue: {name: Ground, city: Leeds, lat: 53.8, lon: -1.5}
  startsAt: 2027-05-29T19:00:00Z
  onSaleAt: 2027-01-10T10:00:00Z
  tiers: [{id: a, name: A, price: {amount: 100, currency: GBP}}]
  sections: [{id: s1, tier: a, rows: 1, seatsPerRow: 1}]
  workers:
    holds: {replicas: 2, partitions: 16}
    surge: {holds: 12, payments: 6, duration: 2h, lead: 10m}
---
apiVersion: mercato.dev/v1alpha1
kind: Warehouse
metadata: {name: leeds}
spec:
  location: {lat: 53.8, lon: -1.5}
  workers: {allocator: {replicas: 9}}
"#;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    fn replicas(t: &Topology, role: &str) -> Option<u32> {
        t.roles.iter().find(|r| r.role == role).map(|r| r.replicas)
    }

    #[test]
    fn the_surge_applies_inside_its_window_only() {
        let decls = Manifest::parse_stream(EVENT).expect("valid");
        let before = topology(&decls, at("2027-01-10T09:49:59Z"));
        assert_eq!(replicas(&before, "holds"), Some(2));
        assert_eq!(replicas(&before, "payments"), Some(1));
        let during = topology(&decls, at("2027-01-10T09:50:00Z"));
        assert_eq!(replicas(&during, "holds"), Some(12));
        assert_eq!(replicas(&during, "payments"), Some(6));
        let after = topology(&decls, at("2027-01-10T12:00:00Z"));
        assert_eq!(replicas(&after, "holds"), Some(2));
        assert_eq!(
            next_change(&decls, at("2027-01-01T00:00:00Z")),
            Some(at("2027-01-10T09:50:00Z"))
        );
        assert_eq!(
            next_change(&decls, at("2027-01-10T09:50:00Z")),
            Some(at("2027-01-10T12:00:00Z"))
        );
        assert_eq!(next_change(&decls, at("2027-01-10T12:00:00Z")), None);
    }

    #[test]
    fn partitions_take_the_largest_ask_and_replicas_never_exceed_them() {
        let decls = Manifest::parse_stream(EVENT).expect("valid");
        let t = topology(&decls, at("2026-01-01T00:00:00Z"));
        let partitions = |name: &str| {
            t.topics
                .iter()
                .find(|x| x.name == name)
                .map(|x| x.partitions)
        };
        assert_eq!(partitions("holds"), Some(16));
        assert_eq!(partitions("payments"), Some(8), "the platform default");
        assert_eq!(partitions("wh-leeds"), Some(1));
        let allocator = t
            .roles
            .iter()
            .find(|r| r.role == "allocator")
            .expect("role");
        assert_eq!((allocator.replicas, allocator.capped_from), (4, Some(9)));
        assert!(
            replicas(&t, "ingest").is_none(),
            "no Inventory, no ingest workers"
        );
        assert_eq!(
            t.roles.iter().map(|r| r.role).collect::<Vec<_>>(),
            ["holds", "payments", "allocator"]
        );
    }
}
