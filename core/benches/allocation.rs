//! The allocator's planning (pure CPU, run once per paid order) and the stock row's decisions:
//! how their cost grows with the number of warehouses and of reservations on a hot SKU.
//!
//! `cargo bench -p mercato-core --bench allocation`

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mercato_core::domain::commerce::allocation::{plan, Source};
use mercato_core::domain::commerce::stock::StockLevel;

/// `warehouses` sources; each holds 3 of the 6 SKUs, so most orders need two shipments.
fn sources(warehouses: usize) -> Vec<Source> {
    (0..warehouses)
        .map(|w| Source {
            warehouse: format!("w{w:02}"),
            distance_km: (w * 37 % 101) as f64,
            available: (0..6)
                .filter(|s| (s + w) % 2 == 0)
                .map(|s| (format!("sku-{s}"), 5))
                .collect::<BTreeMap<_, _>>(),
        })
        .collect()
}

fn planning(c: &mut Criterion) {
    let lines: Vec<(String, u64)> = vec![
        ("sku-0".into(), 2),
        ("sku-1".into(), 1),
        ("sku-4".into(), 3),
    ];
    let mut group = c.benchmark_group("plan_3_lines");
    for warehouses in [3usize, 8, 12, 40] {
        let s = sources(warehouses);
        group.bench_with_input(BenchmarkId::from_parameter(warehouses), &s, |b, s| {
            b.iter(|| plan(&lines, s))
        });
    }
    // Nothing can supply it: the worst case, every subset tried before giving up.
    let short = vec![("sku-0".into(), 1_000u64)];
    let s = sources(12);
    group.bench_function("shortfall_12", |b| b.iter(|| plan(&short, &s)));
    group.finish();
}

fn reservations(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_on_a_hot_sku");
    for live in [0usize, 100, 1_000] {
        let mut level = StockLevel::default();
        level.declare("w", 1_000_000, 1_000_000);
        for i in 0..live {
            level.reserve(&format!("c{i}"), 1, u64::MAX, 0).unwrap();
        }
        group.bench_with_input(BenchmarkId::from_parameter(live), &level, |b, level| {
            b.iter(|| {
                let mut l = level.clone();
                l.reserve("new", 1, u64::MAX, 1).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, planning, reservations);
criterion_main!(benches);
