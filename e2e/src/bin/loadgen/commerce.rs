//! The commerce scenario: many shoppers fill carts, check out and pay, through the HTTP
//! gateway; the allocator splits every paid order across warehouses. Prints checkouts/s and
//! orders/s end to end (allocation included) with latency percentiles, and verifies that the
//! stock every warehouse lost is exactly what the orders' shipments took.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use mercato_e2e::{harness, Api};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::median;

const WAREHOUSES: [(&str, f64, f64); 3] = [
    ("lg-newark", 40.73, -74.17),
    ("lg-reno", 39.53, -119.81),
    ("lg-dallas", 32.78, -96.80),
];

/// Options of the commerce scenario.
#[derive(clap::Args)]
pub struct Commerce {
    /// A running gateway; without it the platform runs in this process.
    #[arg(long)]
    url: Option<String>,
    /// An admin token for `--url` (to apply the inventory and warehouses).
    #[arg(long, env = "MERCATO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run the in-process platform without a data dir (no fsync): to see what durability costs.
    #[arg(long)]
    in_memory: bool,
    /// Concurrent shoppers, each with its own account, cart and HTTP connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Orders per run.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Products in the catalog (every warehouse stocks each).
    #[arg(long, default_value_t = 1_000)]
    products: usize,
    /// Runs; the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn manifests(tag: &str, products: usize) -> String {
    let mut y = format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata: {{name: lg-{tag}}}\nspec:\n  seller: {{id: lg-{tag}, name: Loadgen}}\n  products:\n"
    );
    for p in 0..products {
        y.push_str(&format!(
            "    - {{sku: LG-{tag}-{p:05}, name: Item {p}, category: Load, price: {{amount: {}, currency: USD}}}}\n",
            100 + p % 900
        ));
    }
    for (name, lat, lon) in WAREHOUSES {
        y.push_str(&format!(
            "---\napiVersion: mercato.dev/v1alpha1\nkind: Warehouse\nmetadata: {{name: {name}-{tag}}}\nspec:\n  location: {{lat: {lat}, lon: {lon}}}\n  stock:\n"
        ));
        for p in 0..products {
            y.push_str(&format!(
                "    - {{sku: LG-{tag}-{p:05}, physical: 1000000}}\n"
            ));
        }
    }
    y
}

/// Per SKU, per warehouse: available units.
async fn stock(api: &Api, skus: &[String]) -> anyhow::Result<BTreeMap<(String, String), u64>> {
    let rows: Vec<Vec<((String, String), u64)>> = stream::iter(skus.iter().cloned())
        .map(|sku| async move {
            let a = api.get(&format!("/api/v1/products/{sku}")).await?;
            ensure!(a.status == StatusCode::OK, "product {sku}: {}", a.body);
            let ws = a.body["warehouses"].as_array().cloned().unwrap_or_default();
            Ok(ws
                .iter()
                .map(|w| {
                    (
                        (
                            sku.clone(),
                            w["warehouse"].as_str().unwrap_or("").to_owned(),
                        ),
                        w["available"].as_u64().unwrap_or(0),
                    )
                })
                .collect())
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    Ok(rows.into_iter().flatten().collect())
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Placed {
    id: String,
    sent_ms: i64,
}

struct RunReport {
    orders: usize,
    checkout_phase: Duration,
    end_to_end: Duration,
    checkout: Histogram<u64>,
    order: Histogram<u64>,
    settle: Histogram<u64>,
}

async fn one_run(
    admin: &Api,
    shoppers: &[Api],
    skus: Arc<Vec<String>>,
    orders: usize,
) -> anyhow::Result<RunReport> {
    let api = &shoppers[0];
    let before = stock(api, &skus).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let first_ms = wall_ms();
    let mut tasks = Vec::new();
    for shopper in shoppers {
        let shopper = shopper.clone();
        let (next, skus) = (Arc::clone(&next), Arc::clone(&skus));
        tasks.push(tokio::spawn(async move {
            let mut checkout_l = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut order_l = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut placed = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < orders {
                let (lines, lat, lon) = {
                    let mut rng = rand::thread_rng();
                    let n = rng.gen_range(1..=3);
                    let lines: Vec<(String, u64)> = (0..n)
                        .map(|_| {
                            (
                                skus[rng.gen_range(0..skus.len())].clone(),
                                rng.gen_range(1..=2),
                            )
                        })
                        .collect();
                    (
                        lines,
                        rng.gen_range(25.0..49.0),
                        rng.gen_range(-124.0..-67.0),
                    )
                };
                let t = Instant::now();
                for (sku, q) in &lines {
                    let a = shopper
                        .put(
                            &format!("/api/v1/cart/items/{sku}"),
                            &json!({"quantity": q}),
                        )
                        .await?;
                    ensure!(a.status == StatusCode::OK, "cart: {} {}", a.status, a.body);
                }
                let c = shopper.post("/api/v1/checkouts", &json!({})).await?;
                if c.status != StatusCode::CREATED {
                    bail!("checkout: {} {}", c.status, c.body);
                }
                checkout_l.record(t.elapsed().as_micros() as u64)?;
                let sent_ms = wall_ms();
                let t = Instant::now();
                let o = shopper
                    .post(
                        "/api/v1/orders",
                        &json!({
                            "checkout_id": c.body["id"],
                            "payment": {"card_number": "4242 4242 4242 4242"},
                            "shipping_address": {"lat": lat, "lon": lon},
                        }),
                    )
                    .await?;
                ensure!(
                    o.status == StatusCode::ACCEPTED,
                    "order: {} {}",
                    o.status,
                    o.body
                );
                order_l.record(t.elapsed().as_micros() as u64)?;
                let id = o.body["id"].as_str().unwrap_or_default().to_owned();
                placed.push(Placed { id, sent_ms });
            }
            Ok::<_, anyhow::Error>((placed, checkout_l, order_l))
        }));
    }
    let mut checkout = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut order = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut placed = Vec::with_capacity(orders);
    for t in tasks {
        let (p, c, o) = t.await??;
        placed.extend(p);
        checkout.add(&c)?;
        order.add(&o)?;
    }
    let checkout_phase = started.elapsed();
    // Every order must end allocated; its allocation time is on the order.
    let deadline = Instant::now() + Duration::from_secs(120);
    let settled: Vec<(i64, Value)> = stream::iter(placed.iter())
        .map(|p| async move {
            loop {
                let a = admin.get(&format!("/api/v1/orders/{}", p.id)).await?;
                if a.body["status"] == "allocated" {
                    let at = a.body["updated_at"].as_str().unwrap_or_default();
                    let at = chrono::DateTime::parse_from_rfc3339(at)
                        .context("updated_at")?
                        .timestamp_millis();
                    return Ok::<_, anyhow::Error>((at - p.sent_ms, a.body));
                }
                ensure!(
                    a.body["status"] == "pending_payment" || a.body["status"] == "paid",
                    "order {} ended {}: {}",
                    p.id,
                    a.body["status"],
                    a.body
                );
                ensure!(Instant::now() < deadline, "order {} never allocated", p.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let last_ms = settled
        .iter()
        .zip(&placed)
        .map(|((lat, _), p)| p.sent_ms + lat)
        .max()
        .unwrap_or(first_ms);
    let mut settle = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let mut shipped: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (latency, body) in &settled {
        settle.record((*latency).max(1) as u64)?;
        for s in body["shipments"].as_array().cloned().unwrap_or_default() {
            let w = s["warehouse"].as_str().unwrap_or_default().to_owned();
            for i in s["items"].as_array().cloned().unwrap_or_default() {
                let sku = i["sku"].as_str().unwrap_or_default().to_owned();
                *shipped.entry((sku, w.clone())).or_default() +=
                    i["quantity"].as_u64().unwrap_or(0);
            }
        }
    }
    // What each warehouse lost is exactly what the shipments took: nothing sold twice or lost.
    let after = stock(api, &skus).await?;
    for (key, was) in &before {
        let now = after.get(key).copied().unwrap_or(0);
        let took = shipped.get(key).copied().unwrap_or(0);
        ensure!(
            was - now == took,
            "STOCK MISMATCH at {key:?}: {was} before, {now} after, shipments took {took}"
        );
    }
    Ok(RunReport {
        orders: placed.len(),
        checkout_phase,
        end_to_end: Duration::from_millis((last_ms - first_ms).max(1) as u64),
        checkout,
        order,
        settle,
    })
}

pub async fn run(opts: Commerce, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    ensure!(
        opts.clients > 0 && opts.orders > 0 && opts.runs > 0 && opts.products > 0,
        "--clients, --orders, --runs and --products must be positive"
    );
    ensure!(
        opts.products <= 10_000,
        "--products is at most 10000 (inline products)"
    );
    let (_platform, _dir, api, admin) = match &opts.url {
        Some(url) => {
            let token = opts
                .token
                .clone()
                .context("--url needs --token (an admin token)")?;
            let api = Api::new(url);
            let admin = api.with_token(&token);
            (None, None, api, admin)
        }
        None => {
            let dir = tempfile::tempdir()?;
            let data_dir = (!opts.in_memory).then(|| dir.path().to_owned());
            let run = server.spawn(harness::start(data_dir, None)).await??;
            println!(
                "platform started in-process at {} ({})",
                run.api.base,
                if opts.in_memory {
                    "in memory".into()
                } else {
                    format!("data in {}", dir.path().display())
                }
            );
            (Some(run.platform), Some(dir), run.api, run.admin)
        }
    };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    admin.apply(&manifests(&tag, opts.products)).await?;
    let skus: Vec<String> = (0..opts.products)
        .map(|p| format!("LG-{tag}-{p:05}"))
        .collect();
    print!(
        "waiting for {} products in {} warehouses ... ",
        opts.products,
        WAREHOUSES.len()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    for sku in [&skus[0], &skus[skus.len() - 1]] {
        loop {
            let a = api.get(&format!("/api/v1/products/{sku}")).await?;
            if a.status == StatusCode::OK && a.body["available"] == 3_000_000 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{sku} was not ingested: {}",
                a.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("ready");
    print!("signing up {} shoppers ... ", opts.clients);
    let shoppers: Vec<Api> = stream::iter(0..opts.clients)
        .map(|c| {
            let api = api.separate();
            let tag = tag.clone();
            async move { api.shopper(&format!("lg{c}-{tag}@loadgen.example")).await }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    println!("done");
    println!(
        "commerce: {} orders per run (1-3 lines of 1-2 units), {} concurrent shoppers, {} products in {} warehouses, {} runs",
        opts.orders, opts.clients, opts.products, WAREHOUSES.len(), opts.runs
    );
    let skus = Arc::new(skus);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut reports = Vec::new();
    for run in 1..=opts.runs {
        let r = one_run(&admin, &shoppers, Arc::clone(&skus), opts.orders).await?;
        println!(
            "run {run}: {} checkouts in {:.2}s = {:.0} checkouts/s (cart + checkout p50 {:.1} ms, p99 {:.1} ms; order p50 {:.1} ms, p99 {:.1} ms); {} orders allocated end to end in {:.2}s = {:.0} orders/s (placed to allocated p50 {} ms, p99 {} ms); warehouse stock matches the shipments exactly",
            r.orders,
            r.checkout_phase.as_secs_f64(),
            r.orders as f64 / r.checkout_phase.as_secs_f64(),
            ms(&r.checkout, 0.5), ms(&r.checkout, 0.99), ms(&r.order, 0.5), ms(&r.order, 0.99),
            r.orders,
            r.end_to_end.as_secs_f64(),
            r.orders as f64 / r.end_to_end.as_secs_f64(),
            r.settle.value_at_quantile(0.5), r.settle.value_at_quantile(0.99),
        );
        reports.push(r);
    }
    println!(
        "median of {}: {:.0} checkouts/s, {:.0} orders/s end to end; checkout p50 {:.1} ms p99 {:.1} ms; order p50 {:.1} ms p99 {:.1} ms; placed to allocated p50 {:.0} ms p99 {:.0} ms",
        opts.runs,
        median(reports.iter().map(|r| r.orders as f64 / r.checkout_phase.as_secs_f64()).collect()),
        median(reports.iter().map(|r| r.orders as f64 / r.end_to_end.as_secs_f64()).collect()),
        median(reports.iter().map(|r| ms(&r.checkout, 0.5)).collect()),
        median(reports.iter().map(|r| ms(&r.checkout, 0.99)).collect()),
        median(reports.iter().map(|r| ms(&r.order, 0.5)).collect()),
        median(reports.iter().map(|r| ms(&r.order, 0.99)).collect()),
        median(reports.iter().map(|r| r.settle.value_at_quantile(0.5) as f64).collect()),
        median(reports.iter().map(|r| r.settle.value_at_quantile(0.99) as f64).collect()),
    );
    Ok(())
}
