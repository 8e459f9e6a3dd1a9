//! The command line: one binary, roles by subcommand.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

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
    },
    /// Apply manifests to a running `mercato up`, like `kubectl apply -f`.
    Apply {
        /// A YAML file of manifests, or `-` for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The gateway of the running instance.
        #[arg(long, env = "MERCATO_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An admin token [default: read from <data-dir>/admin-token].
        #[arg(long, env = "MERCATO_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, default_value = "./mercato-data")]
        data_dir: PathBuf,
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
            } => up(listen, data_dir, manifests, hold_ttl).await,
            Command::Apply {
                file,
                url,
                token,
                data_dir,
            } => apply(&file, &url, token, &data_dir).await,
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
  curl -s -X POST {base}/api/v1/users -H 'content-type: application/json' \
       -d '{{"email":"ada@example.com","password":"correct horse","name":"Ada"}}'
  curl -s -X POST {base}/api/v1/sessions -H 'content-type: application/json' \
       -d '{{"email":"ada@example.com","password":"correct horse"}}'
  (the README walks through a whole purchase)

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

async fn apply(
    file: &Path,
    url: &str,
    token: Option<String>,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let yaml = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let token = match token {
        Some(t) => t,
        None => {
            let path = data_dir.join("admin-token");
            std::fs::read_to_string(&path)
                .with_context(|| format!("no --token given and {} is unreadable (is `mercato up` running with that --data-dir?)", path.display()))?
                .trim()
                .to_owned()
        }
    };
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/admin/manifests",
            url.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("unknown");
        let message = body["error"]["message"].as_str().unwrap_or("");
        let problems = body["error"]["details"]["problems"].as_array();
        let mut text = match problems {
            Some(_) => format!("{status} {code}: the manifest is invalid:"),
            None => format!("{status} {code}: {message}"),
        };
        if let Some(problems) = problems {
            for p in problems {
                text.push_str(&format!(
                    "\n  {}: {}",
                    p["path"].as_str().unwrap_or(""),
                    p["message"].as_str().unwrap_or("")
                ));
            }
        }
        bail!(text);
    }
    for a in body["applied"].as_array().into_iter().flatten() {
        println!(
            "{}.mercato.dev/{} {}",
            a["kind"].as_str().unwrap_or("").to_lowercase(),
            a["name"].as_str().unwrap_or(""),
            a["action"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
