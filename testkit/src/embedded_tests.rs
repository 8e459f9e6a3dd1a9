//! The conformance suites against the embedded engines.

use std::sync::Arc;

use mercato_core::bus::{Bus, EmbeddedBus};

use mercato_core::coord::EmbeddedCoord;
use mercato_core::store::{EmbeddedStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_in_memory() {
    crate::store::run_all(Arc::new(EmbeddedStore::in_memory().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_on_disk_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    crate::store::run_all(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
    crate::store::versions_outlive_the_connection(|| async {
        Arc::new(EmbeddedStore::open(dir.path()).unwrap()) as Arc<dyn Store>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bus_in_memory() {
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
    crate::bus::run_all(|| {
        let bus = Arc::clone(&bus);
        async move { bus }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bus_on_disk_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    crate::bus::run_all(|| {
        let path = path.clone();
        async move { Arc::new(EmbeddedBus::open(&path).unwrap()) as Arc<dyn Bus> }
    })
    .await;
}

/// The same with segments of 4 KiB: every restart of the suite reads a snapshot, sealed
/// segments and index files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bus_in_small_segments_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    crate::bus::run_all(|| {
        let path = path.clone();
        async move {
            Arc::new(EmbeddedBus::open_with_segment_bytes(&path, 4096).unwrap()) as Arc<dyn Bus>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bus_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path()).unwrap();
        bus.ensure_topic("t", 1).await.unwrap();
        for n in 0..3u8 {
            bus.send("t", b"k", vec![n; 10]).await.unwrap();
        }
    }
    // A crash in the middle of a write leaves half a frame at the end.
    let log = dir.path().join("bus-00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[42, 0, 0, 0, 1, 2]);
    std::fs::write(&log, bytes).unwrap();
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    assert_eq!(bus.end_offset("t", 0).await.unwrap(), 3);
    assert_eq!(bus.send("t", b"k", vec![3]).await.unwrap(), (0, 3));
    drop(bus);
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    let all = bus
        .fetch("t", 0, 0, 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].value, vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_coord() {
    crate::coord::run_all(Arc::new(EmbeddedCoord::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_bus_reads_old_records_back_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let count = 5_000u32; // well past what a partition keeps in memory in tests
    {
        let bus = EmbeddedBus::open(dir.path()).unwrap();
        bus.ensure_topic("t", 1).await.unwrap();
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let batch = chunk
                .iter()
                .map(|n| (b"k".to_vec(), n.to_le_bytes().to_vec()))
                .collect();
            bus.send_batch("t", batch).await.unwrap();
        }
        check_all(&bus, count).await;
    }
    let reopened = EmbeddedBus::open(dir.path()).unwrap();
    check_all(&reopened, count).await;
    assert_eq!(
        reopened.send("t", b"k", vec![7]).await.unwrap(),
        (0, u64::from(count))
    );
    drop(reopened);
    let again = EmbeddedBus::open(dir.path()).unwrap();
    let last = again
        .fetch("t", 0, u64::from(count), 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        last[0].value,
        vec![7],
        "appends after a restart land where they belong"
    );
}

async fn check_all(bus: &EmbeddedBus, count: u32) {
    let mut offset = 0u64;
    while offset < u64::from(count) {
        let got = bus
            .fetch("t", 0, offset, 777, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(!got.is_empty());
        for r in got {
            assert_eq!(r.offset, offset);
            assert_eq!(r.value, (offset as u32).to_le_bytes().to_vec());
            offset += 1;
        }
    }
}

#[tokio::test]
async fn embedded_bus_remembers_a_deleted_topic_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path()).unwrap();
        bus.ensure_topic("wh-gone", 2).await.unwrap();
        let (p, _) = bus.send("wh-gone", b"k", b"v".to_vec()).await.unwrap();
        bus.commit("reader", "wh-gone", p, 1).await.unwrap();
        assert!(bus.delete_topic("wh-gone").await.unwrap());
        bus.ensure_topic("kept", 1).await.unwrap();
    }
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    assert!(matches!(
        bus.partitions("wh-gone").await,
        Err(mercato_core::bus::BusError::UnknownTopic(_))
    ));
    assert_eq!(bus.partitions("kept").await.unwrap(), 1);
    bus.ensure_topic("wh-gone", 2).await.unwrap();
    for p in 0..2 {
        assert_eq!(bus.end_offset("wh-gone", p).await.unwrap(), 0);
        assert_eq!(bus.committed("reader", "wh-gone", p).await.unwrap(), None);
    }
}
