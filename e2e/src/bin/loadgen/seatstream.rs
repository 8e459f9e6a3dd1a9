//! The seat stream scenario: many clients watch one section's live stream while buyers sell it
//! out, and every client measures the delay of each delta from the hold's placement (its
//! `expires_at_ms` less the hold length: the decision, a moment before the store write) to
//! its arrival. Prints clients, deltas delivered per second, and the delay percentiles.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use mercato_e2e::harness;
use reqwest::StatusCode;
use std::sync::Mutex;

use crate::onsale::{blocks, stadium};

/// The stadium's default hold length (10 minutes).
const HOLD_MS: i64 = 600_000;

/// Options of the seat stream scenario.
#[derive(clap::Args)]
pub struct SeatStream {
    /// Clients watching the section, each with its own connection.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Concurrent buyers holding pairs of seats until the section (2,500 seats) is sold out.
    #[arg(long, default_value_t = 100)]
    buyers: usize,
}

pub async fn run(opts: SeatStream, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let SeatStream { watchers, buyers } = opts;
    ensure!(
        watchers > 0 && buyers > 0,
        "--watchers and --buyers must be positive"
    );
    let dir = tempfile::tempdir()?;
    let run = server
        .spawn(harness::start(Some(dir.path().to_owned()), None))
        .await??;
    let (api, admin) = (run.api.clone(), run.admin.clone());
    let event = "seatstream";
    let applied = admin
        .send(
            reqwest::Method::POST,
            "/api/v1/admin/manifests",
            Some(stadium(event, 1).as_bytes()),
            None,
        )
        .await?;
    ensure!(applied.status == StatusCode::ACCEPTED, "{}", applied.body);
    let delays = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    let delivered = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let url = format!(
        "{}/api/v1/events/{event}/seats/stream?section=s01",
        api.base()
    );
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let (url, delays, delivered, connected) = (
            url.clone(),
            Arc::clone(&delays),
            Arc::clone(&delivered),
            Arc::clone(&connected),
        );
        tasks.push(tokio::spawn(async move {
            let mut resp = reqwest::Client::new().get(&url).send().await?;
            ensure!(
                resp.status() == StatusCode::OK,
                "stream answered {}",
                resp.status()
            );
            connected.fetch_add(1, Ordering::Relaxed);
            let mut text = String::new();
            while let Some(chunk) = resp.chunk().await? {
                let now = chrono::Utc::now().timestamp_millis();
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    // Only held deltas carry the placement time (through their expiry).
                    let Some(at) = block.find("\"expires_at_ms\":") else {
                        continue;
                    };
                    let digits: String = block[at + 16..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let Ok(expires) = digits.parse::<i64>() {
                        let delay = (now - (expires - HOLD_MS)).max(1) as u64;
                        let _ = delays.lock().map(|mut h| h.record(delay));
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) < watchers {
        ensure!(
            Instant::now() < deadline,
            "only {} watchers connected",
            connected.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut shoppers = Vec::new();
    for u in 0..20 {
        shoppers.push(api.shopper(&format!("stream{u}@loadgen.example")).await?);
    }
    let pairs = blocks(1, 2);
    let started = Instant::now();
    let placed = stream::iter(pairs.iter().enumerate())
        .map(|(i, block)| {
            let shopper = &shoppers[i % shoppers.len()];
            async move { shopper.hold(event, block).await }
        })
        .buffer_unordered(buyers)
        .filter(|a| futures::future::ready(matches!(a, Ok(a) if a.status == StatusCode::CREATED)))
        .count()
        .await;
    // Every watcher gets every held delta: wait for the last ones to arrive.
    let expected = placed * watchers;
    let wait_until = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let got = delivered.load(Ordering::Relaxed);
    ensure!(got == expected, "{got} deltas delivered of {expected}");
    let d = delays
        .lock()
        .map_err(|_| anyhow::anyhow!("a watcher panicked"))?;
    println!(
        "seatstream: {watchers} watchers, {placed} holds placed by {buyers} buyers in {:.2}s; {got} deltas delivered ({:.0}/s); delay from placement p50 {} ms, p99 {} ms, max {} ms",
        elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64(),
        d.value_at_quantile(0.5),
        d.value_at_quantile(0.99),
        d.max(),
    );
    for t in tasks {
        t.abort();
    }
    drop(run);
    Ok(())
}
