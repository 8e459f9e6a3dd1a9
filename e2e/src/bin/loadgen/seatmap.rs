//! The seat map scenario: reads a whole stadium's seat map, half of it held at random (the
//! worst case for runs), seat by seat (the full listing, one section per request, as it must
//! be past 10,000 seats), compactly (one request), and revalidated (304 with the ETag), and
//! prints bytes and latencies of each.

use std::time::Instant;

use anyhow::{ensure, Context};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use mercato_e2e::harness;
use reqwest::StatusCode;

use crate::onsale::{blocks, stadium};

/// Options of the seat map scenario.
#[derive(clap::Args)]
pub struct SeatMap {
    /// Sections of 50 x 50 seats (20 make the 50,000-seat stadium).
    #[arg(long, default_value_t = 20)]
    sections: u32,
    /// Reads of the whole map per kind.
    #[arg(long, default_value_t = 30)]
    reads: usize,
}

struct Kind {
    name: &'static str,
    bytes: usize,
    latency: Histogram<u64>,
}

pub async fn run(opts: SeatMap, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let SeatMap { sections, reads } = opts;
    ensure!(
        (1..=200).contains(&sections) && reads > 0,
        "--sections 1..200, --reads > 0"
    );
    let dir = tempfile::tempdir()?;
    let run = server
        .spawn(harness::start(Some(dir.path().to_owned()), None))
        .await??;
    let (api, admin) = (run.api.clone(), run.admin.clone());
    let event = "seatmap";
    admin.apply(&stadium(event, sections)).await?;
    // Half of the stadium held, in blocks of two at random.
    let mut shoppers = Vec::new();
    for u in 0..50 {
        shoppers.push(api.shopper(&format!("map{u}@loadgen.example")).await?);
    }
    let half: Vec<Vec<String>> = blocks(sections, 2).into_iter().step_by(2).collect();
    let held = stream::iter(half.iter().enumerate())
        .map(|(i, block)| {
            let shopper = &shoppers[i % shoppers.len()];
            async move { shopper.hold(event, block).await }
        })
        .buffer_unordered(64)
        .filter(|a| futures::future::ready(matches!(a, Ok(a) if a.status == StatusCode::CREATED)))
        .count()
        .await;
    println!(
        "seatmap: {} seats, {held} holds of 2 placed at random; {reads} reads of the whole map each",
        sections * 2500
    );
    let http = reqwest::Client::new();
    let base = api.base().to_owned();
    let get = |path: String, etag: Option<String>| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut req = http.get(format!("{base}{path}"));
            if let Some(tag) = etag {
                req = req.header("if-none-match", tag);
            }
            let resp = req.send().await.context("seat map request")?;
            let status = resp.status();
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = resp.bytes().await?.len();
            Ok::<_, anyhow::Error>((status, etag, bytes))
        }
    };
    let mut kinds = Vec::new();
    // The revalidations ask with the tag the compact reads got: the map has not changed.
    let mut etag = None;
    for name in [
        "full listing, per section",
        "compact",
        "compact, revalidated (304)",
    ] {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut bytes = 0;
        for _ in 0..reads {
            let t = Instant::now();
            bytes = 0;
            match name {
                "full listing, per section" => {
                    for s in 1..=sections {
                        let (status, _, n) = get(
                            format!("/api/v1/events/{event}/seats?section=s{s:02}"),
                            None,
                        )
                        .await?;
                        ensure!(status == StatusCode::OK, "listing answered {status}");
                        bytes += n;
                    }
                }
                "compact" => {
                    let (status, tag, n) =
                        get(format!("/api/v1/events/{event}/seatmap"), None).await?;
                    ensure!(status == StatusCode::OK, "compact map answered {status}");
                    bytes += n;
                    etag = tag;
                }
                _ => {
                    let (status, _, n) =
                        get(format!("/api/v1/events/{event}/seatmap"), etag.clone()).await?;
                    ensure!(
                        status == StatusCode::NOT_MODIFIED,
                        "revalidation answered {status}"
                    );
                    bytes += n;
                }
            }
            latency.record(t.elapsed().as_micros() as u64)?;
        }
        kinds.push(Kind {
            name,
            bytes,
            latency,
        });
    }
    let full = kinds[0].bytes.max(1) as f64;
    for k in &kinds {
        println!(
            "{:<28} {:>10} bytes ({:>6.2}% of the listing)  p50 {:>7.2} ms  p99 {:>7.2} ms",
            k.name,
            k.bytes,
            k.bytes as f64 * 100.0 / full,
            k.latency.value_at_quantile(0.5) as f64 / 1000.0,
            k.latency.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
    drop(run);
    Ok(())
}
