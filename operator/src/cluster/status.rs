//! A declaration's status: conditions from what the reconcile found, and the counts the
//! printer columns show. Every builder here is pure and typed: the reconcile passes in what it
//! found and the time, and gets the kind's own status struct back.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::jiff::Timestamp;
use mercato_core::coord::Coord;
use mercato_core::domain::seats::SeatStatus;
use mercato_core::domain::waiting_room::{self, Phase};
use mercato_core::names::rooms;
use mercato_core::repo;
use mercato_core::store::Store;
use mercato_crds::status::{
    conditions as types, CommonStatus, Condition, EventStatus, InventoryStatus, TopicStatus,
    WaitingRoomStatus, WarehouseStatus,
};
use mercato_crds::Manifest;
use serde::Serialize;

use super::apply::ObjectsApplied;
use super::Error;
use crate::conditions::Conditions;
use crate::topics::{TopicOutcome, TopicReport};
use crate::topology::Topology;
use crate::workloads::object_name;

/// The counts a kind's status shows besides its conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Counts {
    #[default]
    None,
    Event {
        capacity: u64,
        held: u64,
        sold: u64,
        /// General-admission places and how many are held or sold, when the event has floors.
        standing: Option<(u64, u64)>,
        /// The waiting room, when the event declares one.
        room: Option<RoomCounts>,
        /// When the on-sale surge starts or ends next, if one is declared.
        surge: Option<String>,
    },
    Inventory {
        generation: u64,
        products: u64,
        rejected: u64,
    },
    Warehouse {
        skus: u64,
        units: u64,
    },
}

/// An Event's waiting room: its state by the clock, and, where the operator shares the
/// gateways' Coord, how many wait and how many hold a live admission.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomCounts {
    pub state: &'static str,
    pub queued: Option<u64>,
    pub admitted: Option<u64>,
}

impl RoomCounts {
    /// Whether the room is taking shoppers: its counts move by the second.
    pub fn is_live(&self) -> bool {
        matches!(self.state, "pre_queue" | "open")
    }
}

/// The status of one kind: the common part, and its own counts.
pub trait KindStatus:
    Clone + Default + PartialEq + Serialize + std::fmt::Debug + Send + Sync
{
    fn common(&self) -> &CommonStatus;
    fn common_mut(&mut self) -> &mut CommonStatus;
    /// The status showing `counts` (those of another kind show as none).
    fn counted(common: CommonStatus, counts: &Counts) -> Self;
}

/// The common part sits in the field `common` of every kind's status.
macro_rules! common_fields {
    () => {
        fn common(&self) -> &CommonStatus {
            &self.common
        }
        fn common_mut(&mut self) -> &mut CommonStatus {
            &mut self.common
        }
    };
}

impl KindStatus for EventStatus {
    common_fields!();
    fn counted(common: CommonStatus, counts: &Counts) -> Self {
        match counts {
            Counts::Event {
                capacity,
                held,
                sold,
                standing,
                room,
                surge,
            } => EventStatus {
                common,
                capacity: Some(*capacity),
                available: Some(capacity.saturating_sub(held.saturating_add(*sold))),
                held: Some(*held),
                sold: Some(*sold),
                standing: standing.map(|(places, taken)| places.saturating_sub(taken)),
                waiting_room: room.as_ref().map(|room| WaitingRoomStatus {
                    state: room.state.to_owned(),
                    queued: room.queued,
                    admitted: room.admitted,
                }),
                surge: surge.clone(),
            },
            _ => EventStatus {
                common,
                ..EventStatus::default()
            },
        }
    }
}

impl KindStatus for InventoryStatus {
    common_fields!();
    fn counted(common: CommonStatus, counts: &Counts) -> Self {
        match counts {
            Counts::Inventory {
                generation,
                products,
                rejected,
            } => InventoryStatus {
                common,
                generation: Some(*generation),
                products: Some(*products),
                rejected: Some(*rejected),
            },
            _ => InventoryStatus {
                common,
                ..InventoryStatus::default()
            },
        }
    }
}

impl KindStatus for WarehouseStatus {
    common_fields!();
    fn counted(common: CommonStatus, counts: &Counts) -> Self {
        match counts {
            Counts::Warehouse { skus, units } => WarehouseStatus {
                common,
                skus: Some(*skus),
                units: Some(*units),
            },
            _ => WarehouseStatus {
                common,
                ..WarehouseStatus::default()
            },
        }
    }
}

/// Whether a status shows condition `type_` as True.
pub fn is_true(status: &CommonStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// What the engines say about a declaration's content: its counts, and whether it is done.
#[derive(Debug, Default)]
pub struct Content {
    pub counts: Counts,
    /// Still going (an inventory publishing or ingesting): why.
    pub pending: Option<String>,
    /// Stopped short (an unreadable product source): why.
    pub failed: Option<String>,
}

/// What the engines say about `manifest` at `now`; `rooms` is the gateways' Coord, when the
/// operator shares it.
pub async fn content(
    store: &dyn Store,
    rooms: Option<&dyn Coord>,
    manifest: &Manifest,
    now: DateTime<Utc>,
) -> Result<Content, Error> {
    let mut out = Content::default();
    match manifest {
        Manifest::Event { metadata, spec } => {
            let (mut held, mut sold) = (0u64, 0u64);
            let mut standing: Option<(u64, u64)> = None;
            for section in &spec.sections {
                let claims =
                    repo::holds::section_claims(store, &metadata.name, &section.id).await?;
                if section.is_general_admission() {
                    let (places, taken) = standing.get_or_insert((0, 0));
                    *places += section.capacity();
                    *taken += claims.len() as u64;
                }
                for (_, status) in claims {
                    match status {
                        SeatStatus::Sold => sold += 1,
                        _ => held += 1,
                    }
                }
            }
            let mut surge_text = None;
            if let Some(surge) = spec.workers.as_ref().and_then(|w| w.surge.as_ref()) {
                let (from, until) = surge.window(spec.on_sale_at);
                let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
                surge_text = Some(if now < from {
                    format!("from {} until {}", at(from), at(until))
                } else if now < until {
                    format!("on until {}", at(until))
                } else {
                    format!("ended {}", at(until))
                });
            }
            let room = match &spec.waiting_room {
                Some(room) => Some(room_counts(rooms, &metadata.name, room, spec, now).await),
                None => None,
            };
            out.counts = Counts::Event {
                capacity: spec.capacity(),
                held,
                sold,
                standing,
                room,
                surge: surge_text,
            };
        }
        Manifest::Inventory { metadata, .. } => {
            if let Some(status) = repo::catalog::inventory_status(store, &metadata.name).await? {
                out.counts = Counts::Inventory {
                    generation: status.generation,
                    products: status.accepted,
                    rejected: status.rejected,
                };
                match status.state {
                    "ready" => {}
                    "failed" => {
                        out.failed = status.error.clone().or(Some("publishing failed".into()))
                    }
                    state => {
                        out.pending = Some(format!(
                            "{state}: {} records published, {} accepted, {} rejected",
                            status.published, status.accepted, status.rejected
                        ))
                    }
                }
            } else {
                out.pending = Some("publishing has not started".into());
            }
        }
        Manifest::Warehouse { spec, .. } => {
            out.counts = Counts::Warehouse {
                skus: spec.stock.len() as u64,
                units: spec.units(),
            };
        }
    }
    Ok(out)
}

/// The room's state by the clock, and its counts where they can be read. A count the engine
/// cannot give now is left out (and logged), never made up: the status says what is known.
async fn room_counts(
    rooms: Option<&dyn Coord>,
    event: &str,
    room: &mercato_crds::WaitingRoom,
    spec: &mercato_crds::EventSpec,
    now: DateTime<Utc>,
) -> RoomCounts {
    let state = if !room.enabled {
        "disabled"
    } else {
        match waiting_room::phase(room, spec.on_sale_at, now) {
            Phase::Closed => "closed",
            Phase::PreQueue => "pre_queue",
            Phase::Open => "open",
        }
    };
    let Some(coord) = rooms.filter(|_| room.enabled) else {
        return RoomCounts {
            state,
            ..RoomCounts::default()
        };
    };
    let count = |key: String| async move {
        coord
            .rank_len(&key)
            .await
            .inspect_err(|e| tracing::warn!(event, key, error = %e, "cannot count a waiting room"))
            .ok()
    };
    RoomCounts {
        state,
        queued: count(rooms::queue(event)).await,
        admitted: count(rooms::active(event)).await,
    }
}

/// Everything a successful reconcile learned about one declaration.
pub struct Observation<'a> {
    pub generation: Option<i64>,
    pub manifest: &'a Manifest,
    pub topology: &'a Topology,
    pub topics: &'a [TopicReport],
    pub applied: &'a ObjectsApplied,
    pub content: Content,
    pub now: Timestamp,
}

/// The status a reconcile arrives at, starting from the current conditions.
pub fn observed<S: KindStatus>(obs: Observation<'_>, current: Option<&S>) -> S {
    let current = current.map(KindStatus::common);
    let by = format!("{}/{}", obs.manifest.kind(), obs.manifest.name());
    let roles: Vec<_> = obs
        .topology
        .roles
        .iter()
        .filter(|r| r.needed_by.contains(&by))
        .collect();
    let mut own_topics: Vec<&str> = roles.iter().map(|r| r.topic).collect();
    let warehouse_topic;
    if let Manifest::Warehouse { metadata, .. } = obs.manifest {
        warehouse_topic = mercato_core::domain::commerce::warehouse_topic(&metadata.name);
        own_topics.push(&warehouse_topic);
    }
    let topics: Vec<&TopicReport> = obs
        .topics
        .iter()
        .filter(|t| own_topics.contains(&t.name.as_str()))
        .collect();

    let mut problems = Vec::new();
    for t in &topics {
        if let TopicOutcome::Refused { reason, .. } = &t.outcome {
            problems.push(("TopicCannotShrink", reason.clone()));
        }
    }
    for r in &roles {
        if let Some(asked) = r.capped_from {
            problems.push((
                "ReplicasCapped",
                format!(
                    "{asked} {} replicas asked for, but topic {} has {} partitions: running {}",
                    r.role, r.topic, r.replicas, r.replicas
                ),
            ));
        }
    }
    if let Some(why) = &obs.content.failed {
        problems.push(("PublishFailed", why.clone()));
    }
    let starting: Vec<String> = roles
        .iter()
        .filter_map(|r| {
            let ready = obs.applied.readiness.get(&object_name(r.role))?;
            (ready.ready < ready.desired)
                .then(|| format!("{} {}/{}", r.role, ready.ready, ready.desired))
        })
        .collect();

    let mut conditions = Conditions::new(
        current.map_or(&[], |c| &c.conditions),
        obs.generation,
        obs.now,
    );
    match problems.first() {
        Some((reason, _)) => conditions.set(
            types::DEGRADED,
            true,
            reason,
            problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => conditions.set(
            types::DEGRADED,
            false,
            "AsExpected",
            "nothing is wrong".into(),
        ),
    }
    // Applying workloads is not progress in itself: what takes time is pods becoming ready,
    // which the StatefulSets' status shows (so a reconcile that applied and found them ready
    // is settled, and the next one writes nothing).
    let (progressing, reason, message) = if let Some(why) = &obs.content.pending {
        (true, "Publishing", why.clone())
    } else if !starting.is_empty() {
        (
            true,
            "WorkersStarting",
            format!("workers ready: {}", starting.join(", ")),
        )
    } else {
        (
            false,
            "Reconciled",
            "the declaration is in effect".to_owned(),
        )
    };
    conditions.set(types::PROGRESSING, progressing, reason, message);
    let ready =
        obs.content.failed.is_none() && obs.content.pending.is_none() && starting.is_empty();
    let (reason, message) = if let Some(why) = &obs.content.failed {
        ("PublishFailed", why.clone())
    } else if let Some(why) = &obs.content.pending {
        ("Publishing", why.clone())
    } else if !starting.is_empty() {
        (
            "WorkersStarting",
            format!("workers ready: {}", starting.join(", ")),
        )
    } else {
        (
            "Ready",
            "content published and its workers ready".to_owned(),
        )
    };
    conditions.set(types::READY, ready, reason, message);

    let common = CommonStatus {
        observed_generation: obs.generation,
        conditions: conditions.into_vec(),
        topics: topics
            .iter()
            .map(|t| TopicStatus {
                name: t.name.clone(),
                partitions: t.partitions,
            })
            .collect(),
        workers: roles
            .iter()
            .map(|r| {
                (
                    r.role.to_owned(),
                    i32::try_from(r.replicas).unwrap_or(i32::MAX),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    };
    S::counted(common, &obs.content.counts)
}

/// The status of a declaration that cannot be acted on: what is wrong with it, and nothing else.
pub fn invalid<S: KindStatus>(
    generation: Option<i64>,
    message: String,
    current: Option<&S>,
    now: Timestamp,
) -> S {
    let current = current.map(KindStatus::common);
    let mut conditions = Conditions::new(current.map_or(&[], |c| &c.conditions), generation, now);
    conditions.set(types::DEGRADED, true, "SpecInvalid", message.clone());
    conditions.set(
        types::PROGRESSING,
        false,
        "SpecInvalid",
        "waiting for a corrected spec".into(),
    );
    conditions.set(types::READY, false, "SpecInvalid", message);
    S::counted(
        CommonStatus {
            observed_generation: generation,
            conditions: conditions.into_vec(),
            ..CommonStatus::default()
        },
        &Counts::None,
    )
}

/// The current status with `Degraded` set by a failed reconcile (it is retried with backoff);
/// the counts stay as they were last seen.
pub fn failed<S: KindStatus>(current: Option<&S>, error: &Error, now: Timestamp) -> S {
    let mut status = current.cloned().unwrap_or_default();
    let common = status.common_mut();
    let mut conditions = Conditions::new(&common.conditions, common.observed_generation, now);
    conditions.set(
        types::DEGRADED,
        true,
        error.reason(),
        format!("{error}; retrying"),
    );
    common.conditions = conditions.into_vec();
    status
}

/// Whether a transition is published as a Warning event: only `Degraded` turning true. A
/// declaration that is not Ready yet (its workers starting) or no longer Progressing is news,
/// not trouble.
pub fn is_warning(change: &Condition) -> bool {
    change.type_ == types::DEGRADED && change.status == "True"
}

/// The conditions whose status differs between two statuses: the transitions worth an Event.
pub fn transitions<'a>(
    before: Option<&CommonStatus>,
    after: &'a CommonStatus,
) -> Vec<&'a Condition> {
    after
        .conditions
        .iter()
        .filter(|c| {
            let old = before.and_then(|b| b.conditions.iter().find(|o| o.type_ == c.type_));
            match old {
                Some(old) => {
                    old.status != c.status || (c.status == "True" && old.reason != c.reason)
                }
                // A first Degraded=False or Progressing=False is no news.
                None => c.status == "True" || c.type_ == types::READY,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mercato_core::coord::EmbeddedCoord;
    use mercato_core::store::EmbeddedStore;

    use super::*;

    const ROOM: &str = "apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: final
spec:
  title: The final
  venue: { name: Arena, city: Town, lat: 1.0, lon: 2.0 }
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: 2026-01-01T10:00:00Z
  waitingRoom: { opensAt: 1h }
  tiers:
    - { id: std, name: Standard, price: { amount: 100, currency: EUR } }
  sections:
    - { id: floor, tier: std, rows: 1, seatsPerRow: 10 }
";

    fn room_of(content: &Content) -> Option<RoomCounts> {
        match &content.counts {
            Counts::Event { room, .. } => room.clone(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn an_open_room_is_counted_where_the_gateways_keep_it() {
        let store = EmbeddedStore::in_memory().expect("an in-memory store");
        let coord = EmbeddedCoord::new();
        for (user, score) in [("ada", 1), ("bo", 2), ("cy", 3)] {
            coord
                .rank_insert(&rooms::queue("final"), user, score)
                .await
                .expect("embedded");
        }
        coord
            .rank_insert(&rooms::active("final"), "dee", u64::MAX >> 12)
            .await
            .expect("embedded");
        let manifest = &Manifest::parse_stream(ROOM).expect("valid event")[0];
        let now = Utc::now();

        let shared = content(&store, Some(&coord), manifest, now).await.unwrap();
        let room = room_of(&shared).expect("the event has a room");
        assert_eq!(
            room,
            RoomCounts {
                state: "open",
                queued: Some(3),
                admitted: Some(1),
            }
        );
        assert!(room.is_live());
        let status = EventStatus::counted(CommonStatus::default(), &shared.counts);
        let shown = status.waiting_room.expect("shown");
        assert_eq!((shown.queued, shown.admitted), (Some(3), Some(1)));

        // The operator's own embedded Coord is not the gateways': no counts, not zeros.
        let alone = content(&store, None, manifest, now).await.unwrap();
        assert_eq!(
            room_of(&alone),
            Some(RoomCounts {
                state: "open",
                queued: None,
                admitted: None,
            })
        );
    }
}
