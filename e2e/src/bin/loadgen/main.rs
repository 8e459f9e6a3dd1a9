//! The load generator. Each scenario drives the whole platform through its HTTP gateway,
//! prints throughput and latency percentiles (medians of several runs), and checks the
//! platform's invariants afterwards.
//!
//! By default it starts the platform in this process (on a temporary data dir on disk, so every
//! write is as durable as under `mercato up`); `--url` and `--token` aim it at a running one.

mod catalog;
mod commerce;
mod onsale;
mod seatmap;
mod seatstream;
mod waiting_room;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Mercato load generator")]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Sell out a stadium: every seat held exactly once, under contention.
    Onsale(onsale::Onsale),
    /// Ingest a large catalog, then search it: beside a naive scan of the same data.
    Catalog(catalog::Catalog),
    /// Carts, checkouts and paid orders split across warehouses, end to end.
    Commerce(commerce::Commerce),
    /// Read a half-held stadium's seat map: listed seat by seat, compactly, revalidated.
    Seatmap(seatmap::SeatMap),
    /// Watch a section's live stream with many clients while it sells out.
    Seatstream(seatstream::SeatStream),
    /// A crowd joins a waiting room; many streams hear their admission at the on-sale.
    WaitingRoom(waiting_room::WaitingRoomBench),
}

/// The platform a scenario drives: a running gateway (`--url`, with an admin `--token`), or
/// one started in this process on a temporary data dir (`None`: in memory, no fsync).
pub struct Target {
    pub api: mercato_e2e::Api,
    pub admin: mercato_e2e::Api,
    /// Kept until the scenario ends: the in-process platform and its data dir.
    _platform: Option<(mercato::platform::Platform, tempfile::TempDir)>,
}

pub async fn target(
    url: Option<String>,
    token: Option<String>,
    in_memory: bool,
    server: &tokio::runtime::Runtime,
) -> anyhow::Result<Target> {
    use anyhow::Context;
    if let Some(url) = url {
        let token = token.context("--url needs --token (an admin token) to apply the event")?;
        let api = mercato_e2e::Api::new(&url);
        let admin = api.with_token(&token);
        return Ok(Target {
            api,
            admin,
            _platform: None,
        });
    }
    let dir = tempfile::tempdir()?;
    let data_dir = (!in_memory).then(|| dir.path().to_owned());
    let run = server
        .spawn(mercato_e2e::harness::start(data_dir, None))
        .await??;
    let kept = if in_memory {
        "in memory".to_owned()
    } else {
        format!("data in {}", dir.path().display())
    };
    println!("platform started in-process at {} ({kept})", run.api.base());
    Ok(Target {
        api: run.api,
        admin: run.admin,
        _platform: Some((run.platform, dir)),
    })
}

impl Target {
    /// The platform running in this process, if it is.
    pub fn platform(&self) -> Option<&mercato::platform::Platform> {
        self._platform.as_ref().map(|(p, _)| p)
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,warp=off")),
        )
        .init();
    // The clients and an in-process platform get runtimes of their own, as they would in two
    // processes: a client storm must not starve the gateway's accept loop.
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen-client")
        .enable_all()
        .build()?;
    // Named apart, so a profile tells the platform's CPU from the load generator's.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("platform")
        .enable_all()
        .build()?;
    let result = clients.block_on(async {
        match cli.command {
            Scenario::Onsale(o) => onsale::run(o, &server).await,
            Scenario::Catalog(c) => catalog::run(c, &server).await,
            Scenario::Commerce(c) => commerce::run(c, &server).await,
            Scenario::Seatmap(m) => seatmap::run(m, &server).await,
            Scenario::Seatstream(s) => seatstream::run(s, &server).await,
            Scenario::WaitingRoom(w) => waiting_room::run(w, &server).await,
        }
    });
    server.shutdown_background();
    result
}
