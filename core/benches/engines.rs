//! The embedded engines' hot paths, on disk (every write durable): how much a group commit
//! buys when many writers arrive at once, against one writer at a time.
//!
//! `cargo bench -p mercato-core --bench engines`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::store::{EmbeddedStore, Store, Write};

const OPS: usize = 512;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Seat claims: `OPS` conditional batches of 2 seats, with `concurrency` writers in flight.
fn store_claims(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut group = c.benchmark_group("store_claims");
    group.throughput(Throughput::Elements(OPS as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let mut round = 0u64;
    for concurrency in [1usize, 64, 512] {
        group.bench_with_input(
            BenchmarkId::from_parameter(concurrency),
            &concurrency,
            |b, &concurrency| {
                b.to_async(&rt).iter(|| {
                    round += 1;
                    let store = Arc::clone(&store);
                    let partition = format!("event/{round}");
                    async move {
                        for chunk in (0..OPS).collect::<Vec<_>>().chunks(concurrency) {
                            join_all(chunk.iter().map(|i| {
                                let writes = (0..2)
                                    .map(|k| Write::InsertIfAbsent {
                                        clustering: format!("{i}-{k}"),
                                        value: b"hold".to_vec(),
                                        ttl: Some(Duration::from_secs(600)),
                                    })
                                    .collect();
                                store.batch("seat_claims", &partition, writes)
                            }))
                            .await;
                        }
                    }
                });
            },
        );
    }
    group.finish();
}

/// Bus appends: `OPS` single-record sends, `concurrency` in flight, spread over 8 partitions.
fn bus_sends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(dir.path()).unwrap());
    rt.block_on(bus.ensure_topic("bench", 8)).unwrap();
    let mut group = c.benchmark_group("bus_sends");
    group.throughput(Throughput::Elements(OPS as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for concurrency in [1usize, 64, 512] {
        group.bench_with_input(
            BenchmarkId::from_parameter(concurrency),
            &concurrency,
            |b, &concurrency| {
                b.to_async(&rt).iter(|| {
                    let bus = Arc::clone(&bus);
                    async move {
                        for chunk in (0..OPS).collect::<Vec<_>>().chunks(concurrency) {
                            join_all(chunk.iter().map(|i| {
                                let bus = Arc::clone(&bus);
                                async move {
                                    bus.send("bench", format!("k{i}").as_bytes(), vec![0u8; 200])
                                        .await
                                }
                            }))
                            .await;
                        }
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, store_claims, bus_sends);
criterion_main!(benches);
