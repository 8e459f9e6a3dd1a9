//! A full disk mid-storm (hardening 2): writes are refused while it is full, none of the
//! refused ones exists, every acknowledged one survives a restart, and writing resumes once
//! space returns. The disk is a small tmpfs filled by a filler file (see `SmallDisk`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::small_disk::SmallDisk;
use mercato_core::bus::{Bus, BusError, EmbeddedBus};

const PRODUCERS: usize = 8;
/// Each producer stops after this many refusals.
const REFUSALS_EACH: usize = 20;

#[derive(Default)]
struct Outcomes {
    acked: Vec<String>,
    refused: Vec<String>,
}

async fn read_all(bus: &EmbeddedBus, topic: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for p in 0..bus.partitions(topic).await.unwrap() {
        let mut offset = 0;
        loop {
            let batch = bus
                .fetch(topic, p, offset, 500, Duration::ZERO)
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            offset += batch.len() as u64;
            keys.extend(batch.into_iter().map(|r| String::from_utf8(r.key).unwrap()));
        }
    }
    keys
}

/// Sends until space returns, for at most `within`; the key of the record written.
async fn send_when_space_returns(bus: &EmbeddedBus, topic: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    for attempt in 0.. {
        let key = format!("after-{attempt}");
        match bus.send(topic, key.as_bytes(), vec![7; 1024]).await {
            Ok(_) => return key,
            Err(BusError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("writing did not resume within {within:?} of freeing space: {e}"),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_refuses_records_on_a_full_disk_writes_none_of_them_and_resumes() {
    storm_on_a_filling_disk(mercato_core::bus::DEFAULT_SEGMENT_BYTES).await;
}

/// The same with segments of 32 KiB: new segments, index files and snapshots meet the full
/// disk too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_in_small_segments_refuses_records_on_a_full_disk_and_resumes() {
    storm_on_a_filling_disk(32 * 1024).await;
}

async fn storm_on_a_filling_disk(segment_bytes: u64) {
    let Some(disk) = SmallDisk::mount(4 << 20) else {
        return;
    };
    let dir = disk.path().join("bus");
    let topic = "orders";
    let open = || EmbeddedBus::open_with_segment_bytes(&dir, segment_bytes).unwrap();
    let bus = Arc::new(open());
    bus.ensure_topic(topic, 4).await.unwrap();
    disk.fill_leaving(256 * 1024).unwrap();

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let bus = Arc::clone(&bus);
            let outcomes = Arc::clone(&outcomes);
            tokio::spawn(async move {
                let mut refusals = 0;
                for i in 0.. {
                    let key = format!("p{p}-{i}");
                    match bus.send(topic, key.as_bytes(), vec![p as u8; 1024]).await {
                        Ok(_) => outcomes.lock().acked.push(key),
                        Err(BusError::Unavailable(why)) => {
                            assert!(why.contains("full"), "refused for another reason: {why}");
                            outcomes.lock().refused.push(key);
                            refusals += 1;
                            if refusals == REFUSALS_EACH {
                                break;
                            }
                        }
                        Err(e) => panic!("a full disk must refuse as unavailable, not {e}"),
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    let Outcomes { mut acked, refused } = std::mem::take(&mut *outcomes.lock());
    assert!(
        acked.len() > 50,
        "only {} records fit before the disk filled",
        acked.len()
    );
    assert_eq!(refused.len(), PRODUCERS * REFUSALS_EACH);

    // While full, what was acknowledged is readable and nothing refused is.
    let while_full: HashSet<String> = read_all(&bus, topic).await.into_iter().collect();
    assert!(acked.iter().all(|k| while_full.contains(k)));
    assert!(refused.iter().all(|k| !while_full.contains(k)));

    disk.free().unwrap();
    acked.push(send_when_space_returns(&bus, topic, Duration::from_secs(5)).await);
    // And it keeps going: a few more, through the same log.
    for i in 0..20 {
        let key = format!("later-{i}");
        bus.send(topic, key.as_bytes(), vec![9; 1024])
            .await
            .unwrap();
        acked.push(key);
    }
    // Consumers of the running bus see exactly what was acknowledged, at the offsets a restart
    // gives them.
    let live = read_all(&bus, topic).await;
    drop(bus);

    let reopened = open();
    let recovered = read_all(&reopened, topic).await;
    let unique: HashSet<&String> = recovered.iter().collect();
    assert_eq!(unique.len(), recovered.len(), "a record was written twice");
    let missing: Vec<&String> = acked.iter().filter(|k| !unique.contains(k)).collect();
    assert!(missing.is_empty(), "acknowledged records lost: {missing:?}");
    let ghosts: Vec<&String> = refused.iter().filter(|k| unique.contains(k)).collect();
    assert!(
        ghosts.is_empty(),
        "refused records were written: {ghosts:?}"
    );
    assert_eq!(recovered.len(), acked.len());
    assert_eq!(
        live, recovered,
        "the running bus and the reopened one disagree"
    );
}
