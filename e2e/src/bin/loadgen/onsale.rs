//! The on-sale scenario: sells out a stadium through the HTTP gateway with many concurrent
//! buyers, prints holds/s and latency percentiles, and verifies there was no double booking.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use hdrhistogram::Histogram;
use mercato_e2e::Api;
use rand::seq::SliceRandom;
use rand::Rng;
use reqwest::StatusCode;

use crate::median;

struct RunReport {
    holds: usize,
    conflicts: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl RunReport {
    fn holds_per_sec(&self) -> f64 {
        self.holds as f64 / self.elapsed.as_secs_f64()
    }
}

pub(crate) fn stadium(name: &str, sections: u32) -> String {
    let mut yaml = format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Event\nmetadata:\n  name: {name}\nspec:\n  title: Load test {name}\n  \
         venue: {{ name: Load Stadium, city: Benchmark, lat: 0.0, lon: 0.0 }}\n  startsAt: 2099-01-01T20:00:00Z\n  \
         onSaleAt: 2020-01-01T10:00:00Z\n  maxSeatsPerHold: 10\n  maxSeatsPerUser: 10000\n  tiers:\n    - {{ id: std, name: Standard, price: {{ amount: 5000, currency: USD }} }}\n  sections:\n"
    );
    for s in 1..=sections {
        yaml.push_str(&format!(
            "    - {{ id: s{s:02}, tier: std, rows: 50, seatsPerRow: 50 }}\n"
        ));
    }
    yaml
}

/// Every hold-sized block of adjacent seats, shuffled: the order buyers go for them.
pub(crate) fn blocks(sections: u32, per_hold: u32) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for s in 1..=sections {
        for row in 1..=50 {
            let mut seat = 1;
            while seat <= 50 {
                let end = (seat + per_hold - 1).min(50);
                out.push((seat..=end).map(|n| format!("s{s:02}-{row}-{n}")).collect());
                seat = end + 1;
            }
        }
    }
    out.shuffle(&mut rand::thread_rng());
    out
}

/// The shape of one sell-out.
struct Shape {
    buyers: usize,
    sections: u32,
    per_hold: u32,
    contention: f64,
}

async fn sell_out(
    api: &Api,
    admin: &Api,
    shoppers: &[Api],
    run: usize,
    shape: &Shape,
) -> anyhow::Result<RunReport> {
    let Shape {
        buyers: cli_buyers,
        sections,
        per_hold,
        contention,
    } = *shape;
    let event = format!("onsale-{}-{run}", std::process::id());
    admin.apply(&stadium(&event, sections)).await?;
    let blocks = Arc::new(blocks(sections, per_hold));
    let next = Arc::new(AtomicUsize::new(0));
    // Every buyer opens its connection before the clock starts: the figures are about selling
    // seats, not about a few hundred TCP handshakes arriving in the same millisecond.
    let mut buyers = Vec::with_capacity(cli_buyers);
    for b in 0..cli_buyers {
        let buyer = shoppers[b % shoppers.len()].separate();
        let ok = buyer.get("/healthz").await?;
        ensure!(
            ok.status == StatusCode::OK,
            "gateway not healthy: {}",
            ok.status
        );
        buyers.push(buyer);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for buyer in buyers {
        let blocks = Arc::clone(&blocks);
        let next = Arc::clone(&next);
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut won: Vec<Vec<String>> = Vec::new();
            let mut conflicts = 0;
            loop {
                let contended = rand::thread_rng().gen_bool(contention);
                let taken = next.load(Ordering::Relaxed);
                let block = if contended && taken > 0 {
                    &blocks[rand::thread_rng().gen_range(0..taken.min(blocks.len()))]
                } else {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= blocks.len() {
                        break;
                    }
                    &blocks[i]
                };
                let t = Instant::now();
                let answer = buyer.hold(&event, block).await?;
                latency.record(t.elapsed().as_micros() as u64)?;
                match answer.status {
                    StatusCode::CREATED => won.push(block.clone()),
                    StatusCode::CONFLICT => conflicts += 1,
                    other => bail!("hold answered {other}: {}", answer.body),
                }
            }
            Ok::<_, anyhow::Error>((won, conflicts, latency))
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut sold = HashSet::new();
    let mut holds = 0;
    let mut conflicts = 0;
    for t in tasks {
        let (won, c, l) = t.await??;
        latency.add(&l)?;
        conflicts += c;
        for block in won {
            holds += 1;
            for seat in block {
                ensure!(
                    sold.insert(seat.clone()),
                    "DOUBLE BOOKING: {seat} was held twice"
                );
            }
        }
    }
    let elapsed = started.elapsed();
    // Verify against the platform's own seat map: every seat held, by the holds we counted.
    let capacity = sections as usize * 2500;
    ensure!(
        sold.len() == capacity,
        "{} seats held of {capacity}",
        sold.len()
    );
    for s in 1..=sections {
        let section = format!("s{s:02}");
        let statuses = api.seat_statuses(&event, &section).await?;
        let held = statuses.iter().filter(|(_, st)| st == "held").count();
        ensure!(
            held == 2500,
            "section {section}: {held} seats held on the seat map, 2500 expected"
        );
    }
    Ok(RunReport {
        holds,
        conflicts,
        elapsed,
        latency,
    })
}

/// Options of the on-sale scenario.
#[derive(clap::Args)]
pub struct Onsale {
    /// A running gateway; without it the platform runs in this process.
    #[arg(long)]
    url: Option<String>,
    /// An admin token for `--url` (to apply the stadium).
    #[arg(long, env = "MERCATO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run the in-process platform without a data dir (no fsync): to see what durability costs.
    #[arg(long)]
    in_memory: bool,
    /// Concurrent buyers, each with its own HTTP connection.
    #[arg(long, default_value_t = 400)]
    buyers: usize,
    /// Distinct shopper accounts the buyers share.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Sections of 50 x 50 seats (20 make the 50,000-seat stadium).
    #[arg(long, default_value_t = 20)]
    sections: u32,
    /// Seats per hold (adjacent seats in a row).
    #[arg(long, default_value_t = 2)]
    seats_per_hold: u32,
    /// Share of attempts that go for seats someone probably already has.
    #[arg(long, default_value_t = 0.2)]
    contention: f64,
    /// Sell-outs to run (each on a fresh stadium); the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub async fn run(opts: Onsale, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let Onsale {
        url,
        token,
        in_memory,
        buyers,
        users,
        sections,
        seats_per_hold,
        contention,
        runs,
    } = opts;
    ensure!(
        (1..=10).contains(&seats_per_hold),
        "--seats-per-hold must be 1..10"
    );
    ensure!((1..=200).contains(&sections), "--sections must be 1..200");
    ensure!(
        buyers > 0 && users > 0 && runs > 0,
        "--buyers, --users and --runs must be positive"
    );
    let crate::Target {
        api,
        admin,
        _platform,
    } = crate::target(url, token, in_memory, server).await?;
    print!("signing up {users} shoppers ... ");
    let mut shoppers = Vec::with_capacity(users);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for u in 0..users {
        shoppers.push(
            api.shopper(&format!("buyer{u}-{}@loadgen.example", &tag[..8]))
                .await?,
        );
    }
    println!("done");
    println!(
        "onsale: {} seats per run, {buyers} concurrent buyers, {seats_per_hold} seats per hold, {:.0}% contended attempts, {runs} runs",
        sections * 2500,
        contention * 100.0
    );
    let mut reports = Vec::new();
    for run in 1..=runs {
        let shape = Shape {
            buyers,
            sections,
            per_hold: seats_per_hold,
            contention,
        };
        let r = sell_out(&api, &admin, &shoppers, run, &shape).await?;
        println!(
            "run {run}: {} holds ({} seats) in {:.2}s = {:.0} holds/s; {} conflicts (409); latency p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms; zero double bookings (verified against the seat map)",
            r.holds,
            sections * 2500,
            r.elapsed.as_secs_f64(),
            r.holds_per_sec(),
            r.conflicts,
            r.latency.value_at_quantile(0.5) as f64 / 1000.0,
            r.latency.value_at_quantile(0.99) as f64 / 1000.0,
            r.latency.value_at_quantile(0.999) as f64 / 1000.0,
        );
        reports.push(r);
    }
    println!(
        "median of {runs}: {:.0} holds/s, {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms",
        median(reports.iter().map(RunReport::holds_per_sec).collect()),
        median(reports.iter().map(|r| (r.holds + r.conflicts) as f64 / r.elapsed.as_secs_f64()).collect()),
        median(reports.iter().map(|r| r.latency.value_at_quantile(0.5) as f64 / 1000.0).collect()),
        median(reports.iter().map(|r| r.latency.value_at_quantile(0.99) as f64 / 1000.0).collect()),
        median(reports.iter().map(|r| r.latency.value_at_quantile(0.999) as f64 / 1000.0).collect()),
    );
    Ok(())
}
