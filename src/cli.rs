//! The command line: one binary, roles by subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::admin::{self, Target};
use crate::platform::{Platform, PlatformConfig};

#[derive(Parser)]
#[command(
    name = "mercato",
    version,
    about = "Kubernetes-native marketplace and ticketing platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process on embedded engines: gateway, workers, local reconciler.
    Up {
        /// Address the gateway listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the store, the bus and the admin token are kept across restarts.
        #[arg(long, default_value = "./mercato-data")]
        data_dir: PathBuf,
        /// A folder of Event/Inventory/Warehouse manifests to apply at start [default: examples/ if present].
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Override every event's hold length, e.g. `30s` (demos and tests).
        #[arg(long, value_parser = humantime::parse_duration)]
        hold_ttl: Option<Duration>,
        /// How long a checkout reserves its stock, e.g. `2m` [default: 5m].
        #[arg(long, value_parser = humantime::parse_duration)]
        checkout_ttl: Option<Duration>,
        /// Search answers kept per index generation (0 turns the cache off).
        #[arg(long, default_value_t = mercato_search::DEFAULT_CACHE_ENTRIES)]
        search_cache: usize,
    },
    /// Apply manifests to a running `mercato up`, like `kubectl apply -f`; follows each
    /// Inventory's ingest until its products are searchable.
    Apply {
        /// A YAML file of manifests, or `-` for standard input. Relative product sources are
        /// relative to the file's folder (the current folder for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Return once the manifests are accepted, without following ingest.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List dead letters: an inventory's rejected records with their reason and position, or
    /// (without --inventory) every record on the dead-letter topic.
    Dlq {
        #[arg(long)]
        inventory: Option<String>,
        /// A generation of the inventory other than its latest.
        #[arg(long)]
        generation: Option<u64>,
        /// List every one, not just the first hundred.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Rebuild the search index from offset 0 of the catalog topic; searches are served from
    /// the old index until the new one is complete.
    Reindex {
        #[command(flatten)]
        target: Target,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,hyper=warn,warp=warn")
            }),
        )
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up {
                listen,
                data_dir,
                manifests,
                hold_ttl,
                checkout_ttl,
                search_cache,
            } => {
                up(
                    listen,
                    data_dir,
                    manifests,
                    hold_ttl,
                    checkout_ttl,
                    search_cache,
                )
                .await
            }
            Command::Apply {
                file,
                no_wait,
                target,
            } => admin::apply(&target, &file, !no_wait).await,
            Command::Dlq {
                inventory,
                generation,
                all,
                target,
            } => admin::dlq(&target, inventory, generation, all).await,
            Command::Reindex { target } => admin::reindex(&target).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(
    listen: SocketAddr,
    data_dir: PathBuf,
    manifests: Option<PathBuf>,
    hold_ttl: Option<Duration>,
    checkout_ttl: Option<Duration>,
    search_cache: usize,
) -> anyhow::Result<()> {
    let manifests = match manifests {
        Some(dir) if !dir.is_dir() => bail!("--manifests {}: not a folder", dir.display()),
        Some(dir) => Some(dir),
        None => Some(PathBuf::from("examples")).filter(|d| d.is_dir()),
    };
    println!("Starting Mercato (data in {}) ...", data_dir.display());
    let platform = Platform::start(PlatformConfig {
        listen,
        data_dir: Some(data_dir.clone()),
        manifests,
        hold_ttl,
        checkout_ttl,
        search_cache,
    })
    .await
    .context("mercato up failed to start")?;
    for a in &platform.applied {
        println!(
            "  {}.mercato.dev/{} {}",
            a.kind.to_lowercase(),
            a.name,
            a.action
        );
    }
    let base = format!("http://{}", platform.addr);
    println!(
        r#"
Mercato is up at {base}
  admin token: {token_path}

Try it:
  curl -s {base}/api/v1/events
  curl -s {base}/api/v1/events/hamlet-globe/seats?section=stalls
  curl -s '{base}/api/v1/search?q=neuromancr'      (a typo, and still found)
  curl -s {base}/api/v1/products/RB-0002           (stock in two warehouses)
  curl -s -X POST {base}/api/v1/users -H 'content-type: application/json' \
       -d '{{"email":"ada@example.com","password":"correct horse","name":"Ada"}}'
  curl -s -X POST {base}/api/v1/sessions -H 'content-type: application/json' \
       -d '{{"email":"ada@example.com","password":"correct horse"}}'
  (the README walks through buying seats, and books)

Press Ctrl-C to stop."#,
        token_path = data_dir.join("admin-token").display(),
    );
    shutdown_signal().await;
    println!("Stopping ...");
    platform.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
