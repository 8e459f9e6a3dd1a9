//! The seat stream scenario: many clients watch one section's live stream while buyers sell it
//! out, and every client measures the delay of each delta from the hold's placement (its
//! `expires_at_ms` less the hold length: the decision, a moment before the store write) to
//! its arrival. Prints clients, deltas delivered per second, and the delay percentiles.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::ensure;
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem::Finder;
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
    /// A running gateway; without it the platform runs in this process (each watcher is a
    /// socket at both ends then: 10,000 watchers need twice the open files).
    #[arg(long)]
    url: Option<String>,
    /// An admin token for `--url` (to apply the event).
    #[arg(long, env = "MERCATO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The end of an SSE frame and the key of a placement time, searched with memchr's SIMD
/// finders built once: the watchers share the machine with the gateway they measure.
static FRAME_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
const KEY: &[u8] = b"\"expires_at_ms\":";
static EXPIRES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(KEY));

/// The `expires_at_ms` of a held delta's frame.
fn expires_at(block: &[u8]) -> Option<i64> {
    let at = EXPIRES.find(block)? + KEY.len();
    let digits = block[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&block[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

pub async fn run(opts: SeatStream, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let SeatStream {
        watchers,
        buyers,
        url,
        token,
    } = opts;
    ensure!(
        watchers > 0 && buyers > 0,
        "--watchers and --buyers must be positive"
    );
    let crate::Target {
        api,
        admin,
        _platform,
    } = crate::target(url, token, false, server).await?;
    // A fresh event each run, so runs against one running platform do not meet.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let event = &format!("seatstream-{}", &tag[..8]);
    admin.apply(&stadium(event, 1)).await?;
    // One histogram per watcher (its lock is never contended), merged at the end.
    let mut delays = Vec::with_capacity(watchers);
    let delivered = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let url = format!(
        "{}/api/v1/events/{event}/seats/stream?section=s01",
        api.base()
    );
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mine = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
            1, 600_000, 3,
        )?));
        delays.push(Arc::clone(&mine));
        let (url, delivered, connected) =
            (url.clone(), Arc::clone(&delivered), Arc::clone(&connected));
        tasks.push(tokio::spawn(async move {
            let mut resp = reqwest::Client::new().get(&url).send().await?;
            ensure!(
                resp.status() == StatusCode::OK,
                "stream answered {}",
                resp.status()
            );
            connected.fetch_add(1, Ordering::Relaxed);
            // Each watcher keeps its own histogram and counts per chunk: the watchers share
            // the machine with the gateway, so what they cost is kept small.
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                let now = chrono::Utc::now().timestamp_millis();
                pending.extend_from_slice(&chunk);
                let mut done = 0;
                let mut heard = 0;
                while let Some(end) = FRAME_END.find(&pending[done..]) {
                    let block = &pending[done..done + end];
                    done += end + 2;
                    // Only held deltas carry the placement time (through their expiry).
                    if let Some(expires) = expires_at(block) {
                        let delay = (now - (expires - HOLD_MS)).max(1) as u64;
                        let _ = mine.lock().map(|mut h| h.record(delay));
                        heard += 1;
                    }
                }
                pending.drain(..done);
                delivered.fetch_add(heard, Ordering::Relaxed);
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
        shoppers.push(
            api.shopper(&format!("stream{u}-{}@loadgen.example", &tag[..8]))
                .await?,
        );
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
    let mut d = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    for mine in &delays {
        let mine = mine
            .lock()
            .map_err(|_| anyhow::anyhow!("a watcher panicked"))?;
        d.add(&*mine)?;
    }
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
    Ok(())
}
