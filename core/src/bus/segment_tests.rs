//! The bus log in segments with a snapshot (hardening 2): start-up reads only what the
//! snapshot does not cover, and every record, offset and topic comes back all the same.

use std::time::Duration;

use super::segments::{list, segment_path};
use super::{Bus, EmbeddedBus};

/// Small segments, so that a few hundred records seal several.
const SEGMENT: u64 = 16 * 1024;

async fn all_values(bus: &EmbeddedBus, topic: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in 0..bus.partitions(topic).await.unwrap() {
        let mut offset = 0;
        loop {
            let batch = bus
                .fetch(topic, p, offset, 100, Duration::ZERO)
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for (i, r) in batch.iter().enumerate() {
                assert_eq!(r.offset, offset + i as u64, "offsets run on");
            }
            offset += batch.len() as u64;
            out.extend(batch.into_iter().map(|r| r.value));
        }
    }
    out.sort();
    out
}

fn value(n: u32) -> Vec<u8> {
    let mut v = n.to_be_bytes().to_vec();
    v.resize(200, 0xAB);
    v
}

/// Writes 3,000 records to two topics (one deleted and created again midway) and commits
/// offsets, sealing many segments; returns the values each topic holds.
async fn fill(bus: &EmbeddedBus) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    bus.ensure_topic("orders", 3).await.unwrap();
    bus.ensure_topic("scratch", 2).await.unwrap();
    let mut scratch = Vec::new();
    for n in 0..3_000u32 {
        let key = format!("k{}", n % 17);
        bus.send("orders", key.as_bytes(), value(n)).await.unwrap();
        if n % 3 == 0 {
            bus.send("scratch", key.as_bytes(), value(n)).await.unwrap();
            scratch.push(value(n));
        }
        if n == 1_500 {
            bus.delete_topic("scratch").await.unwrap();
            bus.ensure_topic("scratch", 1).await.unwrap();
            scratch.clear();
        }
        if n % 100 == 0 {
            bus.commit("worker", "orders", n % 3, u64::from(n / 3))
                .await
                .unwrap();
        }
    }
    bus.commit("worker", "orders", 1, 42).await.unwrap();
    let mut orders: Vec<Vec<u8>> = (0..3_000).map(value).collect();
    orders.sort();
    scratch.sort();
    (orders, scratch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_bus_reads_only_the_segments_its_snapshot_does_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), SEGMENT).unwrap();
    let (orders, scratch) = fill(&bus).await;
    bus.settle_compaction();
    // Positions of folded records are in the index files, not in memory: about a segment's
    // worth at most (a segment holds about 70 records).
    let in_memory = bus.most_positions_in_memory();
    assert!(in_memory < 200, "{in_memory} positions in memory");
    assert_eq!(all_values(&bus, "orders").await, orders);
    assert_eq!(all_values(&bus, "scratch").await, scratch);
    drop(bus);

    let segments = list(dir.path()).unwrap();
    assert!(segments.len() > 20, "only {} segments", segments.len());
    // Zero every sealed segment but the last two: were start-up reading them, it would refuse
    // (zeros followed by whole frames are corruption).
    let (last_base, _) = segments[segments.len() - 1];
    for (base, path) in &segments[..segments.len() - 2] {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::write(path, vec![0u8; len as usize]).unwrap();
        assert!(*base < last_base);
    }
    let reopened = EmbeddedBus::open_with_segment_bytes(dir.path(), SEGMENT).unwrap();
    assert_eq!(
        reopened.end_offset("orders", 0).await.unwrap()
            + reopened.end_offset("orders", 1).await.unwrap()
            + reopened.end_offset("orders", 2).await.unwrap(),
        3_000
    );
    assert_eq!(
        reopened.committed("worker", "orders", 1).await.unwrap(),
        Some(42)
    );
    // The newest records are read from the segments start-up read; old ones from the zeroed
    // ones fail with an error naming the segment, not with wrong records.
    let newest = reopened
        .fetch(
            "orders",
            0,
            reopened.end_offset("orders", 0).await.unwrap() - 1,
            1,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    let oldest = reopened.fetch("orders", 0, 0, 1, Duration::ZERO).await;
    let error = oldest
        .expect_err("the first record's segment is zeroed")
        .to_string();
    assert!(error.contains("bus-0000"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_offset_and_topic_survives_reopening_with_or_without_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), SEGMENT).unwrap();
    let (orders, scratch) = fill(&bus).await;
    drop(bus);
    let check = |why: &'static str| {
        let path = dir.path().to_owned();
        let (orders, scratch) = (orders.clone(), scratch.clone());
        async move {
            let bus = EmbeddedBus::open_with_segment_bytes(&path, SEGMENT).unwrap();
            assert_eq!(all_values(&bus, "orders").await, orders, "{why}");
            assert_eq!(all_values(&bus, "scratch").await, scratch, "{why}");
            assert_eq!(bus.partitions("scratch").await.unwrap(), 1, "{why}");
            assert_eq!(
                bus.committed("worker", "orders", 1).await.unwrap(),
                Some(42),
                "{why}"
            );
            assert_eq!(
                bus.committed("worker", "orders", 0).await.unwrap(),
                Some(900),
                "{why}"
            );
            // Appends after a reopen land after the last record.
            let (p, offset) = bus.send("orders", b"k0", value(9_999)).await.unwrap();
            let got = bus
                .fetch("orders", p, offset, 1, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(got[0].value, value(9_999), "{why}");
        }
    };
    check("as closed").await;
    // The snapshot gone (or damaged): every segment is read, and it is written again.
    std::fs::remove_file(dir.path().join("snapshot")).unwrap();
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), SEGMENT).unwrap();
    assert_eq!(all_values(&bus, "orders").await.len(), 3_001);
    drop(bus);
    std::fs::write(dir.path().join("snapshot"), b"not a snapshot").unwrap();
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), SEGMENT).unwrap();
    assert_eq!(all_values(&bus, "orders").await.len(), 3_001);
    drop(bus);
    // An index cut short (a disk that lost its last writes): the snapshot is not trusted.
    let index = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .flatten()
        .find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("orders.") && e.metadata().is_ok_and(|m| m.len() > 16)
        })
        .unwrap()
        .path();
    let len = std::fs::metadata(&index).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len - 16)
        .unwrap();
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), SEGMENT).unwrap();
    assert_eq!(all_values(&bus, "orders").await.len(), 3_001);
    assert_eq!(
        bus.committed("worker", "orders", 1).await.unwrap(),
        Some(42)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_log_from_before_segments_becomes_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path()).unwrap();
        bus.ensure_topic("t", 1).await.unwrap();
        bus.send("t", b"k", vec![1]).await.unwrap();
    }
    std::fs::rename(segment_path(dir.path(), 0), dir.path().join("bus.log")).unwrap();
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    let got = bus.fetch("t", 0, 0, 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(segment_path(dir.path(), 0).exists());
    assert!(!dir.path().join("bus.log").exists());
}
