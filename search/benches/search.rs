//! Search latency on a 200,000-document index, per kind of query: what one request costs the
//! gateway's CPU before HTTP. Run with `cargo bench -p mercato-search`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::codec::encode;
use mercato_core::domain::catalog::{CatalogDoc, CatalogFact, DocKind};
use mercato_core::domain::Money;
use mercato_core::names::topics;
use mercato_search::{Search, SearchRequest, Sort};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DOCS: usize = 200_000;
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ran", "te", "vo", "sel", "dor", "bi", "nu", "ze", "ar", "pel", "tin", "go",
    "ru",
];

fn vocabulary() -> Vec<String> {
    let mut words = Vec::new();
    for a in SYLLABLES {
        for b in SYLLABLES {
            for c in ["", "s", "ra"] {
                words.push(format!("{a}{b}{c}"));
            }
        }
    }
    words
}

fn catalog(vocab: &[String]) -> Vec<CatalogDoc> {
    let mut rng = StdRng::seed_from_u64(1);
    let pick = |rng: &mut StdRng| {
        let u: f64 = rng.gen();
        vocab[((u * u) * vocab.len() as f64) as usize % vocab.len()].clone()
    };
    (0..DOCS)
        .map(|i| CatalogDoc {
            kind: DocKind::Product,
            id: format!("B-{i}"),
            name: (0..3).map(|_| pick(&mut rng)).collect::<Vec<_>>().join(" "),
            body: (0..8).map(|_| pick(&mut rng)).collect::<Vec<_>>().join(" "),
            category: vec![
                ["home", "books", "music", "toys"][i % 4].into(),
                format!("c{}", i % 7),
            ],
            city: None,
            geo: None,
            price: Some(Money {
                amount: rng.gen_range(100..100_000),
                currency: "USD".into(),
            }),
            price_max: None,
            starts_at_ms: None,
            seller: None,
            venue: None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let vocab = vocabulary();
    let docs = catalog(&vocab);
    let (search, _stop) = rt.block_on(async {
        let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::in_memory());
        bus.ensure_topic(topics::CATALOG, 4).await.expect("topic");
        for chunk in docs.chunks(10_000) {
            let facts = chunk
                .iter()
                .map(|d| {
                    let f = CatalogFact::Upsert(Box::new(d.clone()));
                    (f.key().into_bytes(), encode(&f))
                })
                .collect();
            bus.send_batch(topics::CATALOG, facts).await.expect("send");
        }
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (search, _task) = Search::start(None, 0, Arc::clone(&bus), shutdown)
            .await
            .expect("start");
        search
            .caught_up(&*bus, Duration::from_secs(300))
            .await
            .expect("indexed");
        (search, stop)
    });
    let common = vocab[0].clone();
    let rare = vocab[vocab.len() - 1].clone();
    let mut typo: Vec<char> = vocab[40].chars().collect();
    typo.swap(1, 2);
    let typo: String = typo.into_iter().collect();
    let cases: Vec<(&str, SearchRequest)> = vec![
        (
            "rare word",
            SearchRequest {
                q: rare.clone(),
                ..SearchRequest::default()
            },
        ),
        (
            "common word",
            SearchRequest {
                q: common.clone(),
                ..SearchRequest::default()
            },
        ),
        (
            "two words",
            SearchRequest {
                q: format!("{} {}", vocab[3], vocab[10]),
                ..SearchRequest::default()
            },
        ),
        (
            "typo",
            SearchRequest {
                q: typo,
                ..SearchRequest::default()
            },
        ),
        // The same words finished (a space after the last): no prefix, the baseline of the
        // as-you-type cases above.
        (
            "common word, finished",
            SearchRequest {
                q: format!("{common} "),
                ..SearchRequest::default()
            },
        ),
        (
            "two words, finished",
            SearchRequest {
                q: format!("{} {} ", vocab[3], vocab[10]),
                ..SearchRequest::default()
            },
        ),
        (
            "two-letter prefix",
            SearchRequest {
                q: "se".into(),
                ..SearchRequest::default()
            },
        ),
        (
            "prefix with a typo",
            SearchRequest {
                q: "sledor".into(),
                ..SearchRequest::default()
            },
        ),
        (
            "common word, category",
            SearchRequest {
                q: common.clone(),
                category: Some("books".into()),
                ..SearchRequest::default()
            },
        ),
        (
            "common word, by price",
            SearchRequest {
                q: common,
                sort: Sort::Price,
                ..SearchRequest::default()
            },
        ),
        (
            "browse a category",
            SearchRequest {
                category: Some("music/c3".into()),
                ..SearchRequest::default()
            },
        ),
    ];
    println!("{} segments", search.index().segments());
    let mut group = c.benchmark_group("search 200k");
    for (name, request) in &cases {
        let answer: serde_json::Value =
            serde_json::from_str(&search.index().search(request).expect("search")).expect("json");
        println!("{name}: {} matches", answer["total"]);
        group.bench_function(*name, |b| {
            b.iter(|| search.index().search(request).expect("search"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
