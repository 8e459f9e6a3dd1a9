//! The Bus suite: what Fluvio promises about topics, partitions, order and offsets.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::unique;
use mercato_core::bus::{partition_for, Bus, BusError, PartitionConsumer, StartAt, TopicChange};

const WAIT: Duration = Duration::from_millis(500);

/// Runs every check. `open` connects to the engine afresh; `restart_resumes` uses it to show
/// that records and committed offsets outlive the client (and, embedded, the process).
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Bus>>,
{
    let bus = open().await;
    topic_admin(&*bus).await;
    keyed_order_per_partition(Arc::clone(&bus)).await;
    fetch_waits_for_records(Arc::clone(&bus)).await;
    let topic = write_and_commit_half(Arc::clone(&bus)).await;
    drop(bus);
    restart_resumes(open().await, &topic).await;
}

pub async fn topic_admin(bus: &dyn Bus) {
    let t = unique("conf");
    assert_eq!(bus.ensure_topic(&t, 2).await.unwrap(), TopicChange::Created);
    assert_eq!(
        bus.ensure_topic(&t, 2).await.unwrap(),
        TopicChange::Unchanged,
        "already exists is success"
    );
    assert_eq!(
        bus.ensure_topic(&t, 4).await.unwrap(),
        TopicChange::Grown { from: 2 }
    );
    assert_eq!(bus.partitions(&t).await.unwrap(), 4);
    assert!(matches!(
        bus.ensure_topic(&t, 3).await,
        Err(BusError::CannotShrink { current: 4, .. })
    ));
    assert!(matches!(
        bus.ensure_topic("Bad_Name", 1).await,
        Err(BusError::InvalidName(_))
    ));
    topic_deletion(bus).await;
    assert!(matches!(
        bus.partitions(&unique("missing")).await,
        Err(BusError::UnknownTopic(_))
    ));
    assert!(matches!(
        bus.fetch(&t, 9, 0, 10, Duration::ZERO).await,
        Err(BusError::UnknownPartition { .. })
    ));
}

/// A deleted topic is gone with its records and offsets; created again, it starts empty.
pub async fn topic_deletion(bus: &dyn Bus) {
    let t = unique("gone");
    bus.ensure_topic(&t, 2).await.unwrap();
    let (p, _) = bus.send(&t, b"k", b"v".to_vec()).await.unwrap();
    bus.commit("conf-reader", &t, p, 1).await.unwrap();
    assert!(bus.delete_topic(&t).await.unwrap(), "it existed");
    assert!(matches!(
        bus.partitions(&t).await,
        Err(BusError::UnknownTopic(_))
    ));
    assert!(
        !bus.delete_topic(&t).await.unwrap(),
        "deleting twice is no error"
    );
    assert_eq!(bus.ensure_topic(&t, 2).await.unwrap(), TopicChange::Created);
    assert_eq!(bus.partitions(&t).await.unwrap(), 2);
    assert_eq!(bus.end_offset(&t, p).await.unwrap(), 0, "no old records");
    assert_eq!(
        bus.committed("conf-reader", &t, p).await.unwrap(),
        None,
        "no old offsets"
    );
}

/// Concurrent producers; every key's records come back in the order it sent them, on the
/// partition its key hashes to, with dense offsets.
pub async fn keyed_order_per_partition(bus: Arc<dyn Bus>) {
    let t = unique("conf");
    bus.ensure_topic(&t, 3).await.unwrap();
    let mut producers = Vec::new();
    for k in 0..8u32 {
        let bus = Arc::clone(&bus);
        let t = t.clone();
        producers.push(tokio::spawn(async move {
            let key = format!("key-{k}");
            for n in 0..50u32 {
                let batch = vec![(key.clone().into_bytes(), n.to_le_bytes().to_vec())];
                let placed = bus.send_batch(&t, batch).await.unwrap();
                assert_eq!(placed[0].0, partition_for(key.as_bytes(), 3));
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let mut next_expected: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut total = 0;
    for p in 0..3 {
        let mut offset = 0;
        loop {
            let records = bus.fetch(&t, p, offset, 64, Duration::ZERO).await.unwrap();
            if records.is_empty() {
                break;
            }
            for r in records {
                assert_eq!(r.offset, offset, "offsets are dense");
                assert_eq!(r.partition, p);
                assert_eq!(
                    partition_for(&r.key, 3),
                    p,
                    "a key always lands on its partition"
                );
                let n = u32::from_le_bytes(r.value[..4].try_into().unwrap());
                let want = next_expected.entry(r.key.clone()).or_insert(0);
                assert_eq!(n, *want, "per-key order is kept");
                *want += 1;
                offset += 1;
                total += 1;
            }
        }
        assert_eq!(bus.end_offset(&t, p).await.unwrap(), offset);
    }
    assert_eq!(total, 8 * 50, "every record arrives");
}

pub async fn fetch_waits_for_records(bus: Arc<dyn Bus>) {
    let t = unique("conf");
    bus.ensure_topic(&t, 1).await.unwrap();
    let empty = bus
        .fetch(&t, 0, 0, 10, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(empty.is_empty());
    let reader = {
        let bus = Arc::clone(&bus);
        let t = t.clone();
        tokio::spawn(async move {
            bus.fetch(&t, 0, 0, 10, Duration::from_secs(5))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.send(&t, b"k", b"hello".to_vec()).await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), 1, "a waiting fetch wakes when a record arrives");
    assert_eq!(got[0].value, b"hello");
}

/// Writes 10 records, consumes them, commits after the 5th; returns the topic.
pub async fn write_and_commit_half(bus: Arc<dyn Bus>) -> String {
    let t = unique("conf");
    bus.ensure_topic(&t, 1).await.unwrap();
    for n in 0..10u8 {
        bus.send(&t, b"same", vec![n]).await.unwrap();
    }
    let mut c = PartitionConsumer::open(Arc::clone(&bus), "worker-a", &t, 0, StartAt::Beginning)
        .await
        .unwrap();
    let first = c.next_batch(5, WAIT).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.value[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    c.commit().await.unwrap();
    let rest = c.next_batch(100, WAIT).await.unwrap();
    assert_eq!(rest.len(), 5, "fetched but not committed");
    assert_eq!(bus.committed("worker-a", &t, 0).await.unwrap(), Some(5));
    assert_eq!(
        bus.committed("worker-b", &t, 0).await.unwrap(),
        None,
        "offsets are per consumer id"
    );
    let late = PartitionConsumer::open(Arc::clone(&bus), "late", &t, 0, StartAt::End)
        .await
        .unwrap();
    assert_eq!(late.position(), 10, "a new consumer may start at the end");
    t
}

/// After reconnecting (or restarting), records are all there and a consumer resumes from its
/// committed offset: what was fetched but not committed is delivered again (at least once).
pub async fn restart_resumes(bus: Arc<dyn Bus>, topic: &str) {
    assert_eq!(bus.end_offset(topic, 0).await.unwrap(), 10);
    let mut c = PartitionConsumer::open(Arc::clone(&bus), "worker-a", topic, 0, StartAt::Beginning)
        .await
        .unwrap();
    assert_eq!(c.position(), 5);
    let again = c.next_batch(100, WAIT).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.value[0]).collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );
    let (p, offset) = bus.send(topic, b"same", vec![10]).await.unwrap();
    assert_eq!(
        (p, offset),
        (0, 10),
        "appends continue after the last record"
    );
}
