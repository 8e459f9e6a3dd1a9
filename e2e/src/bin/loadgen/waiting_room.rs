//! The waiting room scenario: a crowd joins one event's pre-queue as fast as it can (joins per
//! second, and each join's latency), then many shoppers hold their place's stream open while
//! the on-sale is brought forward and the admitter lets them all in at once; each stream
//! measures the delay from the admitter's decision (`admitted_at`) to the `admitted` event's
//! arrival.
//!
//! Shoppers get their sessions minted, not signed in (each sign-in is an argon2 hash): from the
//! in-process platform, or, with `--url`, from the session keys the gateway signs with
//! (`--session-keys-dir`; for `mercato up`, `<data-dir>/secrets/session-keys`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem::Finder;
use mercato_core::domain::users::Role;
use mercato_e2e::Api;
use reqwest::StatusCode;
use serde_json::json;

/// Options of the waiting room scenario.
#[derive(clap::Args)]
pub struct WaitingRoomBench {
    /// Shoppers joining the pre-queue of one event.
    #[arg(long, default_value_t = 20_000)]
    joiners: usize,
    /// Join requests in flight at once.
    #[arg(long, default_value_t = 256)]
    at_once: usize,
    /// Shoppers holding their place's stream open (each its own connection), all admitted at
    /// the on-sale.
    #[arg(long, default_value_t = 1_000)]
    streams: usize,
    /// A running gateway; without it the platform runs in this process.
    #[arg(long)]
    url: Option<String>,
    /// An admin token for `--url` (to apply the events).
    #[arg(long, env = "MERCATO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The session keys of the gateway at `--url`, to give the shoppers sessions.
    #[arg(long)]
    session_keys_dir: Option<PathBuf>,
}

/// Gives each shopper a session.
enum Sessions<'a> {
    Platform(&'a mercato::platform::Platform),
    Keys(Box<mercato_gateway::auth::Keys>),
}

impl Sessions<'_> {
    fn for_user(&self, user: &str) -> anyhow::Result<String> {
        match self {
            Sessions::Platform(p) => Ok(p.session_for(user)?),
            Sessions::Keys(keys) => keys
                .issue(user, Role::Shopper, 24 * 3600)
                .map(|(token, _)| token)
                .map_err(|e| anyhow::anyhow!("{}", e.message)),
        }
    }
}

fn room_event(name: &str, on_sale: DateTime<Utc>, seats: usize) -> String {
    let rows = seats.div_ceil(100).max(1);
    format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Event\nmetadata:\n  name: {name}\nspec:\n  \
         title: Waiting room bench\n  venue: {{ name: Arena, city: Benchville, lat: 1.0, lon: 2.0 }}\n  \
         startsAt: 2099-01-01T20:00:00Z\n  onSaleAt: {}\n  maxSeatsPerUser: 1\n  \
         waitingRoom: {{ opensAt: 2h, admissionWindow: 10m, maxActive: {} }}\n  tiers:\n    \
         - {{ id: std, name: Standard, price: {{ amount: 5000, currency: USD }} }}\n  sections:\n    \
         - {{ id: floor, tier: std, rows: {rows}, seatsPerRow: 100 }}\n",
        on_sale.to_rfc3339(),
        seats.max(1),
    )
}

/// Joins the shopper `api` plays to the queue of `event`; their ticket.
async fn join(api: &Api, event: &str) -> anyhow::Result<String> {
    let a = api
        .post(&format!("/api/v1/events/{event}/queue"), &json!({}))
        .await?;
    ensure!(a.status == StatusCode::OK, "join: {} {}", a.status, a.body);
    a.body["ticket"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no ticket: {}", a.body))
}

static FRAME_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
const ADMITTED_AT: &[u8] = b"\"admitted_at\":\"";
static ADMITTED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(ADMITTED_AT));

/// The admitter's decision time in an `admitted` frame, in milliseconds.
fn admitted_at(frame: &[u8]) -> Option<i64> {
    let at = ADMITTED.find(frame)? + ADMITTED_AT.len();
    let end = at + memchr::memchr(b'"', &frame[at..])?;
    let text = std::str::from_utf8(&frame[at..end]).ok()?;
    Some(DateTime::parse_from_rfc3339(text).ok()?.timestamp_millis())
}

pub async fn run(opts: WaitingRoomBench, server: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let WaitingRoomBench {
        joiners,
        at_once,
        streams,
        url,
        token,
        session_keys_dir,
    } = opts;
    ensure!(
        joiners > 0 && at_once > 0 && streams > 0,
        "--joiners, --at-once and --streams must be positive"
    );
    let key_ring = match (&url, session_keys_dir) {
        (Some(_), Some(dir)) => {
            Some(mercato_gateway::keyring::KeyRing::from_dir(&dir).context("--session-keys-dir")?)
        }
        (Some(_), None) => {
            anyhow::bail!("--url needs --session-keys-dir to give shoppers sessions")
        }
        (None, _) => None,
    };
    let target = crate::target(url, token, true, server).await?;
    let sessions = match key_ring {
        Some(ring) => Sessions::Keys(Box::new(mercato_gateway::auth::Keys::new(ring))),
        None => Sessions::Platform(target.platform().context("an in-process platform")?),
    };
    let (api, admin) = (&target.api, &target.admin);
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];

    // Joins: one pool of connections, `at_once` requests in flight.
    let event = format!("wr-{tag}-join");
    admin
        .apply(&room_event(
            &event,
            Utc::now() + chrono::Duration::hours(1),
            10,
        ))
        .await?;
    let crowd: Vec<Api> = (0..joiners)
        .map(|i| Ok(api.with_token(&sessions.for_user(&format!("joiner-{tag}-{i}"))?)))
        .collect::<anyhow::Result<_>>()?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let started = Instant::now();
    let timed: Vec<anyhow::Result<u64>> = stream::iter(&crowd)
        .map(|shopper| {
            let event = &event;
            async move {
                let sent = Instant::now();
                join(shopper, event).await?;
                Ok(sent.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(at_once)
        .collect()
        .await;
    let joining = started.elapsed();
    for t in timed {
        latency.record(t?.max(1))?;
    }
    println!(
        "waiting-room joins: {joiners} in {:.2}s = {:.0}/s ({at_once} in flight); latency p50 {:.1} ms, p99 {:.1} ms",
        joining.as_secs_f64(),
        joiners as f64 / joining.as_secs_f64(),
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
    );

    // Streams: everyone in the pre-queue with a stream open, then the on-sale admits them all.
    let event = format!("wr-{tag}-stream");
    let far = Utc::now() + chrono::Duration::hours(1);
    admin.apply(&room_event(&event, far, streams)).await?;
    let mut tokens = Vec::with_capacity(streams);
    for i in 0..streams {
        tokens.push(sessions.for_user(&format!("streamer-{tag}-{i}"))?);
    }
    let joined = stream::iter(tokens)
        .map(|t| {
            let (shopper, event) = (api.with_token(&t), &event);
            async move { Ok::<_, anyhow::Error>((t, join(&shopper, event).await?)) }
        })
        .buffer_unordered(at_once)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<(String, String)>>>()?;
    let delays = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    let (opened, admitted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::with_capacity(streams);
    for (t, ticket) in joined {
        let url = format!("{}/api/v1/events/{event}/queue/{ticket}/stream", api.base());
        let (delays, opened, admitted) = (
            Arc::clone(&delays),
            Arc::clone(&opened),
            Arc::clone(&admitted),
        );
        tasks.push(tokio::spawn(async move {
            let mut resp = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&t)
                .send()
                .await?;
            ensure!(
                resp.status() == StatusCode::OK,
                "stream answered {}",
                resp.status()
            );
            opened.fetch_add(1, Ordering::Relaxed);
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                let now = Utc::now().timestamp_millis();
                pending.extend_from_slice(&chunk);
                while let Some(end) = FRAME_END.find(&pending) {
                    let frame: Vec<u8> = pending.drain(..end + 2).collect();
                    if let Some(at) = admitted_at(&frame) {
                        let delay = (now - at).max(1) as u64;
                        let _ = delays.lock().map(|mut h| h.record(delay));
                        admitted.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < streams {
        ensure!(
            Instant::now() < deadline,
            "only {} of {streams} streams opened",
            opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("waiting-room streams: {streams} open; bringing the on-sale forward");
    let opening = Instant::now();
    admin
        .apply(&room_event(
            &event,
            Utc::now() - chrono::Duration::seconds(1),
            streams,
        ))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while admitted.load(Ordering::Relaxed) < streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = admitted.load(Ordering::Relaxed);
    let all_in = opening.elapsed();
    for t in tasks {
        t.abort();
    }
    ensure!(
        got == streams,
        "{got} of {streams} streams heard their admission"
    );
    let d = delays
        .lock()
        .map_err(|_| anyhow::anyhow!("a stream panicked"))?;
    println!(
        "waiting-room streams: {streams} admitted within {:.2}s of the re-apply; delay from the admitter's decision to the stream p50 {} ms, p99 {} ms, max {} ms",
        all_in.as_secs_f64(),
        d.value_at_quantile(0.5),
        d.value_at_quantile(0.99),
        d.max(),
    );
    Ok(())
}
