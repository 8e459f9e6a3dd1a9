//! One poison record among 10,000 does not stop its partition: the holds worker, run by the
//! real runtime on the embedded bus and store, places 9,999 holds while a release of a hold
//! whose stored row is garbage fails the same way every time, is set aside in the dead letters
//! after its attempts, and is answered as failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::codec::{decode, encode};
use mercato_core::coord::EmbeddedCoord;
use mercato_core::domain::commands::{CommandResult, HoldCommand, Outcome};
use mercato_core::domain::dead_letters::DeadLetter;
use mercato_core::domain::holds;
use mercato_core::names::{tables, topics};
use mercato_core::store::{EmbeddedStore, Store};
use mercato_core::Ports;
use mercato_workers::holds::HoldsWorker;
use mercato_workers::{run_worker, WorkerSpec};
use tokio::sync::watch;

const COMMANDS: usize = 10_000;
const POISON_AT: usize = 5_000;

fn place(n: usize) -> HoldCommand {
    // Seats pit-1-1 .. pit-100-100: one distinct seat per hold, each for a shopper of its
    // own (under the seat cap), so every one can be placed.
    let seat = format!("pit-{}-{}", n / 100 + 1, n % 100 + 1);
    HoldCommand::Place {
        command_id: format!("cmd-{n}"),
        hold_id: holds::new_id("gig", "pit", &format!("h{n}")),
        user_id: format!("shopper{n}"),
        event_id: "gig".into(),
        seat_ids: vec![seat],
        ttl_ms: 600_000,
    }
}

async fn all(bus: &dyn Bus, topic: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in 0..bus.partitions(topic).await.unwrap() {
        let end = bus.end_offset(topic, p).await.unwrap();
        let mut at = 0;
        while at < end {
            let got = bus.fetch(topic, p, at, 4096, Duration::ZERO).await.unwrap();
            at = got.last().map_or(end, |r| r.offset + 1);
            out.extend(got.into_iter().map(|r| r.value));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_record_among_ten_thousand_is_set_aside_and_the_rest_are_done() {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
    for topic in [
        topics::HOLDS,
        topics::RESULTS,
        topics::SEAT_CHANGES,
        topics::DEAD_LETTERS,
    ] {
        bus.ensure_topic(topic, 1).await.unwrap();
    }
    mercato_testkit::fixtures::gig(&*store).await;
    // The poison: a hold whose row in the store is not a hold any more.
    let bad_hold = holds::new_id("gig", "pit", "garbled");
    let (partition, clustering) = mercato_core::repo::holds::hold_key(&bad_hold).unwrap();
    store
        .put(
            tables::SEAT_CLAIMS,
            &partition,
            &clustering,
            b"\xff\x00 not a hold".to_vec(),
            None,
        )
        .await
        .unwrap();
    let mut records = Vec::with_capacity(COMMANDS);
    for n in 0..COMMANDS {
        let command = if n == POISON_AT {
            HoldCommand::Release {
                command_id: "cmd-poison".into(),
                hold_id: bad_hold.clone(),
                user_id: "ada".into(),
            }
        } else {
            place(n)
        };
        records.push((b"gig/pit".to_vec(), encode(&command)));
    }
    for chunk in records.chunks(1000) {
        bus.send_batch(topics::HOLDS, chunk.to_vec()).await.unwrap();
    }

    let ports = Ports {
        bus: Arc::clone(&bus),
        store: Arc::clone(&store),
        coord: Arc::new(EmbeddedCoord::new()),
    };
    let spec = WorkerSpec {
        role: "holds",
        topic: topics::HOLDS,
        replica: 0,
        replicas: 1,
        max_batch: 512,
        poison_attempts: 3,
    };
    let (shutdown, stop) = watch::channel(false);
    let worker = tokio::spawn(run_worker(
        ports,
        spec,
        Arc::new(HoldsWorker::new(Arc::clone(&store))),
        stop,
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = bus.committed("holds", topics::HOLDS, 0).await.unwrap();
        if done == Some(COMMANDS as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partition stalled at {done:?} of {COMMANDS}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.send(true).unwrap();
    worker.await.unwrap().unwrap();

    let mut placed = 0;
    let mut failed = Vec::new();
    for value in all(&*bus, topics::RESULTS).await {
        let result: CommandResult = decode(&value).unwrap();
        match result.outcome {
            Outcome::HoldPlaced(_) => placed += 1,
            Outcome::Failed { message } => failed.push((result.command_id, message)),
            other => panic!("{}: unexpected {other:?}", result.command_id),
        }
    }
    assert_eq!(placed, COMMANDS - 1, "every other command is done");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "cmd-poison");
    assert!(failed[0].1.contains("set aside"), "{}", failed[0].1);

    let letters: Vec<DeadLetter> = all(&*bus, topics::DEAD_LETTERS)
        .await
        .iter()
        .map(|v| decode(v).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.topic.as_str(), letter.offset),
        (topics::HOLDS, POISON_AT as u64)
    );
    assert!(
        letter.reason.contains("undecodable row"),
        "the letter says why: {}",
        letter.reason
    );
    assert_eq!(
        decode::<HoldCommand>(&letter.value).unwrap().command_id(),
        "cmd-poison",
        "the letter keeps the original to replay"
    );
    // Every placed hold has its seat: the isolation replayed nothing twice.
    let claims = store
        .scan(tables::SEAT_CLAIMS, &partition, None, 20_000)
        .await
        .unwrap();
    let seats = claims
        .rows
        .iter()
        .filter(|r| {
            !r.clustering
                .starts_with(mercato_core::repo::holds::ROW_PREFIX)
        })
        .count();
    assert_eq!(seats, COMMANDS - 1);
}
