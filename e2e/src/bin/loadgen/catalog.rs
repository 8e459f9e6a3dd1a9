//! The catalog scenario: ingests a generated catalog through an Inventory manifest (validated,
//! stored, indexed), then searches it with many concurrent HTTP clients. Each figure is printed
//! beside a naive baseline measured in the same run on the same data: for ingest, parsing the
//! file into memory with nothing validated, stored or indexed; for search, a scan of every name
//! for the query's word (`name LIKE '%term%'`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use hdrhistogram::Histogram;
use mercato_e2e::{harness, Api};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;

use crate::median;

#[derive(clap::Args)]
pub struct Catalog {
    /// Products in the generated catalog.
    #[arg(long, default_value_t = 1_000_000)]
    products: usize,
    /// Concurrent search clients, each with its own HTTP connection.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Length of each search run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Search runs; the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run the in-process platform without a data dir (no fsync).
    #[arg(long)]
    in_memory: bool,
    /// Turn the gateway's answer cache off: every query searches the index.
    #[arg(long)]
    no_cache: bool,
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ran", "te", "vo", "sel", "dor", "bi", "nu", "quo", "ze", "ar", "pel", "tin",
    "go", "ru", "fa", "lin", "mo", "ser", "ta", "wen", "xi",
];
const CATEGORIES: [&str; 12] = [
    "Home > Kitchen",
    "Home > Garden",
    "Home > Lighting",
    "Outdoor > Camping",
    "Outdoor > Cycling",
    "Books > Fiction",
    "Books > Science",
    "Music > Instruments",
    "Music > Vinyl",
    "Toys > Games",
    "Fashion > Shoes",
    "Fashion > Bags",
];

/// A deterministic vocabulary of pronounceable words (4 to 9 letters).
fn vocabulary(n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut words = std::collections::BTreeSet::new();
    while words.len() < n {
        let parts = rng.gen_range(2..=3);
        let w: String = (0..parts)
            .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
            .collect();
        if w.len() >= 4 {
            words.insert(w);
        }
    }
    words.into_iter().collect()
}

/// Picks common words more often than rare ones, as shoppers' words are.
fn skewed<'a>(rng: &mut StdRng, vocab: &'a [String]) -> &'a str {
    let u: f64 = rng.gen();
    &vocab[((u * u) * vocab.len() as f64) as usize % vocab.len()]
}

struct Dataset {
    /// Lowercase names, for the naive scan.
    names: Vec<String>,
    queries: Vec<(String, String)>,
}

fn generate(path: &Path, products: usize) -> anyhow::Result<Dataset> {
    let vocab = vocabulary(5_000);
    let mut rng = StdRng::seed_from_u64(42);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut names = Vec::with_capacity(products);
    for i in 0..products {
        let name = format!(
            "{} {} {}",
            skewed(&mut rng, &vocab),
            skewed(&mut rng, &vocab),
            skewed(&mut rng, &vocab)
        );
        let description: Vec<&str> = (0..8).map(|_| skewed(&mut rng, &vocab)).collect();
        let colour = ["red", "green", "blue", "black"][rng.gen_range(0..4)];
        let line = json!({
            "sku": format!("LG-{i:07}"),
            "name": name,
            "description": description.join(" "),
            "category": CATEGORIES[rng.gen_range(0..CATEGORIES.len())],
            "price": {"amount": rng.gen_range(100..100_000), "currency": "USD"},
            "attributes": {"colour": colour},
        });
        writeln!(out, "{line}")?;
        names.push(name.to_lowercase());
    }
    out.flush()?;
    // The query mix: one word mostly, two words often, a typo in some, filters and sorts in some.
    let mut queries = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let first = skewed(&mut rng, &vocab).to_owned();
        let mut q = first.clone();
        if rng.gen_bool(0.3) {
            q.push(' ');
            q.push_str(skewed(&mut rng, &vocab));
        }
        if rng.gen_bool(0.1) && q.len() >= 5 {
            // Swap two letters: one typo.
            let mut chars: Vec<char> = q.chars().collect();
            let at = rng.gen_range(0..chars.len().min(first.len()) - 1);
            chars.swap(at, at + 1);
            q = chars.into_iter().collect();
        }
        let mut params = format!("q={}", q.replace(' ', "+"));
        if rng.gen_bool(0.2) {
            let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())]
                .to_lowercase()
                .replace(" > ", "/");
            params.push_str(&format!("&category={}", category.replace('/', "%2F")));
        }
        if rng.gen_bool(0.1) {
            params.push_str("&sort=price");
        }
        queries.push((params, first));
    }
    Ok(Dataset { names, queries })
}

/// The naive ingest: parse every line into memory; nothing validated, stored or indexed.
fn naive_load(path: &Path) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let mut kept = Vec::new();
    for line in BufReader::new(std::fs::File::open(path)?).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        kept.push(v);
    }
    Ok((kept.len(), started.elapsed()))
}

/// The naive search: every name scanned for the term, on both cores.
fn naive_scan(names: &[String], queries: &[(String, String)], seconds: f64) -> f64 {
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let done = &done;
            s.spawn(move || {
                let mut i = t;
                let mut found = 0usize;
                while started.elapsed().as_secs_f64() < seconds {
                    let term = &queries[i % queries.len()].1;
                    found += names.iter().filter(|n| n.contains(term.as_str())).count();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 2;
                }
                std::hint::black_box(found);
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn wait_ready(admin: &Api, name: &str) -> anyhow::Result<serde_json::Value> {
    loop {
        let s = admin
            .get(&format!("/api/v1/admin/inventories/{name}"))
            .await?
            .body;
        ensure!(s["state"] != "failed", "ingest failed: {s}");
        if s["state"] == "ready" {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_searchable(admin: &Api) -> anyhow::Result<()> {
    loop {
        let s = admin.get("/api/v1/admin/search").await?.body;
        if s["lag"] == 0 && s["rebuilding_to"].is_null() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct SearchRun {
    queries: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
}

async fn search_run(
    api: &Api,
    queries: &Arc<Vec<(String, String)>>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<SearchRun> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let c = api.separate();
        ensure!(
            c.get("/healthz").await?.status == StatusCode::OK,
            "gateway not healthy"
        );
        conns.push(c);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(clients);
    for c in conns {
        let queries = Arc::clone(queries);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            while Instant::now() < deadline {
                let (q, _) = &queries[next.fetch_add(1, Ordering::Relaxed) % queries.len()];
                // The body is read whole but not parsed: on a shared machine, the client's
                // CPU is the server's loss.
                let t = Instant::now();
                let resp = c
                    .http
                    .get(format!("{}/api/v1/search?{q}", c.base))
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                latency.record(t.elapsed().as_micros() as u64)?;
                ensure!(
                    status == StatusCode::OK,
                    "search answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok::<_, anyhow::Error>(latency)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        latency.add(&t.await??)?;
    }
    Ok(SearchRun {
        queries: latency.len() as usize,
        elapsed: started.elapsed(),
        latency,
    })
}

pub async fn run(opts: Catalog, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    ensure!(
        opts.products > 0 && opts.clients > 0 && opts.runs > 0,
        "--products, --clients and --runs must be positive"
    );
    let dir = tempfile::tempdir()?;
    let feed = dir.path().join("catalog.ndjson");
    print!("generating {} products ... ", opts.products);
    std::io::stdout().flush()?;
    let data = generate(&feed, opts.products)?;
    println!("done ({} MB)", std::fs::metadata(&feed)?.len() / 1_000_000);

    let (parsed, naive_time) = naive_load(&feed)?;
    let naive_rate = parsed as f64 / naive_time.as_secs_f64();

    let data_dir = (!opts.in_memory).then(|| dir.path().join("data"));
    let config = mercato::platform::PlatformConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir,
        manifests: None,
        hold_ttl: None,
        checkout_ttl: None,
        engines: Default::default(),
        poison_attempts: mercato::platform::DEFAULT_POISON_ATTEMPTS,
        sources: mercato::platform::SourcePolicy::new(
            [dir.path().to_path_buf()],
            mercato::platform::DEFAULT_MAX_SOURCE_BYTES,
        )?,
        search_cache: if opts.no_cache {
            0
        } else {
            mercato_search::DEFAULT_CACHE_ENTRIES
        },
        ..harness::config(None, None)
    };
    let running = server.spawn(harness::start_with(config)).await??;
    println!(
        "platform started in-process at {} ({})",
        running.api.base,
        if opts.in_memory {
            "in memory"
        } else {
            "data on disk"
        }
    );
    let manifest = format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata:\n  name: loadgen\nspec:\n  seller: {{id: loadgen, name: Load Generator}}\n  source:\n    file: {}\n",
        feed.display()
    );
    let started = Instant::now();
    running.admin.apply(&manifest).await?;
    let status = wait_ready(&running.admin, "loadgen").await?;
    let ingested = started.elapsed();
    wait_searchable(&running.admin).await?;
    let searchable = started.elapsed();
    ensure!(
        status["accepted"] == opts.products as u64,
        "not every product was accepted: {status}"
    );
    let rate = opts.products as f64 / searchable.as_secs_f64();
    println!(
        "ingest+index: {} products stored in {:.1} s and searchable in {:.1} s = {:.0} products/s; naive load (parse into memory only) {:.0} records/s; ratio {:.2}",
        opts.products,
        ingested.as_secs_f64(),
        searchable.as_secs_f64(),
        rate,
        naive_rate,
        rate / naive_rate
    );

    // Merges of the freshly written segments go on in the background for a while (a large
    // one without changing the segment count for many seconds); searches are measured once
    // the process is idle, as the index is in steady operation.
    let settle = Instant::now();
    let mut idle_windows = 0;
    while settle.elapsed() < Duration::from_secs(300) && idle_windows < 2 {
        let before = cpu_seconds();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let busy = (cpu_seconds() - before) / 2.0;
        idle_windows = if busy < 0.1 { idle_windows + 1 } else { 0 };
    }
    let segments = running.admin.get("/api/v1/admin/search").await?.body["segments"].clone();
    println!(
        "index settled in {:.0} s (background merges done): {segments} segments",
        settle.elapsed().as_secs_f64()
    );
    let queries = Arc::new(data.queries);
    let mut runs = Vec::with_capacity(opts.runs);
    for run in 1..=opts.runs {
        let r = search_run(&running.api, &queries, opts.clients, opts.seconds).await?;
        println!(
            "search run {run}: {} queries in {:.1} s = {:.0} queries/s; p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
            r.queries,
            r.elapsed.as_secs_f64(),
            r.queries as f64 / r.elapsed.as_secs_f64(),
            r.latency.value_at_quantile(0.5) as f64 / 1000.0,
            r.latency.value_at_quantile(0.99) as f64 / 1000.0,
            r.latency.value_at_quantile(0.999) as f64 / 1000.0,
        );
        runs.push(r);
    }
    let status = running.admin.get("/api/v1/admin/search").await?.body;
    let cache = status["cache"].clone();
    println!(
        "index: {} documents in {} segments",
        status["docs"], status["segments"]
    );
    let (hits, misses) = (
        cache["hits"].as_u64().unwrap_or(0),
        cache["misses"].as_u64().unwrap_or(0),
    );
    println!(
        "answer cache: {}; {hits} hits, {misses} misses ({:.0}% of queries searched the index)",
        if opts.no_cache { "off" } else { "on" },
        100.0 * misses as f64 / (hits + misses).max(1) as f64
    );
    let qps = median(
        runs.iter()
            .map(|r| r.queries as f64 / r.elapsed.as_secs_f64())
            .collect(),
    );
    let naive = naive_scan(&data.names, &queries, 3.0);
    println!(
        "median of {}: {:.0} queries/s through the gateway, p50 {:.2} ms, p99 {:.2} ms ({} clients, {} products); naive scan (name LIKE '%term%', in process, 2 threads) {:.1} queries/s; ratio {:.0}x",
        opts.runs,
        qps,
        median(runs.iter().map(|r| r.latency.value_at_quantile(0.5) as f64 / 1000.0).collect()),
        median(runs.iter().map(|r| r.latency.value_at_quantile(0.99) as f64 / 1000.0).collect()),
        opts.clients,
        opts.products,
        naive,
        qps / naive
    );
    running.platform.stop().await;
    Ok(())
}

/// CPU time this process has used, in seconds (Linux; elsewhere the settle step just waits).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) are space separated; utime and
    // stime are the 14th and 15th fields, in clock ticks (100 per second on Linux).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
