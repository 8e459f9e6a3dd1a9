//! Lapses are announced when they happen: the holds worker, placing holds with a short TTL,
//! announces `lapsed` on `seat-changes` within a second of each hold's expiry, never for a hold
//! released or bought first, and once per hold, even when the replica that placed it stopped
//! and another took over the holds still standing.

use std::sync::Arc;
use std::time::Duration;

use mercato_core::bus::{Bus, EmbeddedBus, Record};
use mercato_core::clock::now_ms;
use mercato_core::codec::{decode, encode};
use mercato_core::domain::commands::{
    CommandResult, HoldCommand, Outcome, SeatChange, SeatChangeKind,
};
use mercato_core::domain::holds::{self, Hold, HoldState};
use mercato_core::names::topics;
use mercato_core::repo::holds as rows;
use mercato_core::store::{EmbeddedStore, Store};
use mercato_workers::holds::HoldsWorker;
use mercato_workers::lapses::Lapses;
use mercato_workers::BatchHandler;
use tokio::sync::watch;

const TTL_MS: u64 = 400;

fn place(n: u32, seats: &[&str]) -> Record {
    let command = HoldCommand::Place {
        command_id: format!("cmd-{n}"),
        hold_id: holds::new_id("gig", "pit", &format!("h{n}")),
        user_id: "ada".into(),
        event_id: "gig".into(),
        seat_ids: seats.iter().map(|s| s.to_string()).collect(),
        ttl_ms: TTL_MS,
    };
    Record {
        partition: 0,
        offset: u64::from(n),
        timestamp_ms: 0,
        key: b"gig/pit".to_vec(),
        value: encode(&command),
    }
}

async fn placed(worker: &HoldsWorker, record: Record) -> Hold {
    let emits = worker.handle(topics::HOLDS, &[record]).await.unwrap();
    let result = emits.iter().find(|e| e.topic == topics::RESULTS).unwrap();
    match decode::<CommandResult>(&result.value).unwrap().outcome {
        Outcome::HoldPlaced(hold) => hold,
        other => panic!("not placed: {other:?}"),
    }
}

/// The lapses announced so far.
async fn announced(bus: &dyn Bus) -> Vec<SeatChange> {
    let end = bus.end_offset(topics::SEAT_CHANGES, 0).await.unwrap();
    let got = bus
        .fetch(topics::SEAT_CHANGES, 0, 0, end as usize + 1, Duration::ZERO)
        .await
        .unwrap();
    got.into_iter()
        .map(|r| decode::<SeatChange>(&r.value).unwrap())
        .filter(|c| c.change == SeatChangeKind::Lapsed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapse_is_announced_within_a_second_once_and_never_for_a_hold_ended_first() {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    for topic in [topics::HOLDS, topics::SEAT_CHANGES] {
        bus.ensure_topic(topic, 1).await.unwrap();
    }
    mercato_testkit::fixtures::gig(&*store).await;
    let (stop_tx, stop) = watch::channel(false);
    let lapses = Lapses::new(Arc::clone(&store), Arc::clone(&bus));
    tokio::spawn(Arc::clone(&lapses).run(stop.clone()));
    let worker = HoldsWorker::with_lapses(Arc::clone(&store), Arc::clone(&lapses));

    let lapsing = placed(&worker, place(1, &["pit-1-1", "pit-1-2"])).await;
    let released = placed(&worker, place(2, &["pit-2-1"])).await;
    let bought = placed(&worker, place(3, &["pit-3-1"])).await;
    worker
        .handle(
            topics::HOLDS,
            &[Record {
                value: encode(&HoldCommand::Release {
                    command_id: "rel-2".into(),
                    hold_id: released.id.clone(),
                    user_id: "ada".into(),
                }),
                ..place(4, &[])
            }],
        )
        .await
        .unwrap();
    // Bought first (as the payments worker leaves it): its row says so.
    let row = rows::load(&*store, &bought.id).await.unwrap().unwrap();
    let purchased = Hold {
        state: HoldState::Purchased {
            order_id: "o1".into(),
        },
        ..row.value
    };
    rows::cas(&*store, &purchased, row.version)
        .await
        .unwrap()
        .unwrap();

    // The replica stops (as if killed) before anything lapses; one started now takes over the
    // holds still standing: only the lapsing one (released and bought are over).
    let _ = stop_tx.send(true);
    let (_later, later_stop) = watch::channel(false);
    let second = Lapses::new(Arc::clone(&store), Arc::clone(&bus));
    assert_eq!(second.rebuild(0, 1).await.unwrap(), 1);
    tokio::spawn(Arc::clone(&second).run(later_stop));

    let deadline = lapsing.expires_at_ms + 1_000;
    let mut heard = Vec::new();
    while now_ms() < deadline + 500 {
        heard = announced(&*bus).await;
        if !heard.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = now_ms();
    assert_eq!(heard.len(), 1, "announced once: {heard:?}");
    assert_eq!(heard[0].seat_ids, ["pit-1-1", "pit-1-2"]);
    assert!(
        at <= deadline,
        "announced {} ms after expiry",
        at - lapsing.expires_at_ms
    );
    // Nothing more comes: not for the released or bought holds, not from the second replica.
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS)).await;
    assert_eq!(announced(&*bus).await.len(), 1);
    assert_eq!(second.watched(), 0);
    // A replica started after the announcement finds nothing to watch.
    let third = Lapses::new(Arc::clone(&store), Arc::clone(&bus));
    assert_eq!(third.rebuild(0, 1).await.unwrap(), 0);
}

/// A seat that came free and was taken by another hold before anyone announced the first
/// hold's lapse is not announced as lapsed (it is held): only the second hold's lapse frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_taken_again_before_the_lapse_is_heard_is_not_announced_free() {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    for topic in [topics::HOLDS, topics::SEAT_CHANGES] {
        bus.ensure_topic(topic, 1).await.unwrap();
    }
    mercato_testkit::fixtures::gig(&*store).await;
    // No replica watches while the first hold lapses and another takes its seat.
    let worker = HoldsWorker::new(Arc::clone(&store));
    let first = placed(&worker, place(1, &["pit-4-1", "pit-4-2"])).await;
    tokio::time::sleep(Duration::from_millis(TTL_MS + 200)).await;
    let second = placed(&worker, place(2, &["pit-4-1"])).await;
    assert!(second.expires_at_ms > first.expires_at_ms);

    let (_stop_tx, stop) = watch::channel(false);
    let lapses = Lapses::new(Arc::clone(&store), Arc::clone(&bus));
    assert_eq!(lapses.rebuild(0, 1).await.unwrap(), 2);
    tokio::spawn(Arc::clone(&lapses).run(stop));
    let deadline = second.expires_at_ms + 1_000;
    while now_ms() < deadline && announced(&*bus).await.len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heard: Vec<Vec<String>> = announced(&*bus)
        .await
        .into_iter()
        .map(|c| c.seat_ids)
        .collect();
    assert_eq!(
        heard,
        [vec!["pit-4-2".to_owned()], vec!["pit-4-1".to_owned()]],
        "the first hold's lapse names only the seat still free; the second's frees pit-4-1"
    );
}
