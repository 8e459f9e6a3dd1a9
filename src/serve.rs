//! The long-running commands: `mercato up` (everything in one process), `mercato gateway` and
//! `mercato worker` (one role per process, on shared engines).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;

use crate::cli::{SourceFlags, Tuning};
use mercato_gateway::AdminAccount;
use mercato_operator::ApplyReport;

use crate::engines::Engines;
use crate::platform::{self, GatewayRole, Platform, PlatformConfig};

/// How long a stopping process lets its tasks finish their current batch.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub async fn up(
    listen: SocketAddr,
    data_dir: PathBuf,
    manifests: Option<PathBuf>,
    tuning: Tuning,
    sources: SourceFlags,
    engines: Engines,
) -> anyhow::Result<()> {
    let manifests = match manifests {
        Some(dir) if !dir.is_dir() => bail!("--manifests {}: not a folder", dir.display()),
        Some(dir) => Some(dir),
        None => Some(PathBuf::from("examples")).filter(|d| d.is_dir()),
    };
    let sources = sources
        .policy(&default_source_dirs(manifests.as_deref()))
        .context("--sources-dir")?;
    let (rate_limits, client_address) = tuning.limits()?;
    println!(
        "Starting Mercato (data in {}; {}) ...",
        data_dir.display(),
        engines
    );
    let platform = Platform::start(PlatformConfig {
        listen,
        data_dir: Some(data_dir.clone()),
        manifests,
        hold_ttl: tuning.hold_ttl,
        checkout_ttl: tuning.checkout_ttl,
        search_cache: tuning.search_cache,
        engines,
        poison_attempts: tuning.poison.attempts,
        sources,
        rate_limits,
        client_address,
    })
    .await
    .context("mercato up failed to start")?;
    print_applied(&platform.applied);
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

pub struct GatewayArgs {
    pub listen: SocketAddr,
    pub search_dir: Option<PathBuf>,
    pub manifests: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub accept_manifests: bool,
    pub tls: Option<mercato_gateway::ServerTls>,
    pub secrets: mercato_gateway::Secrets,
    /// The first admin's email and password, created at start if absent.
    pub admin: Option<(String, String)>,
    pub tuning: Tuning,
    pub sources: SourceFlags,
}

/// Where product sources are read from unless `--sources-dir` says: the current folder (where
/// `mercato apply` is usually run) and the manifests folder.
fn default_source_dirs(manifests: Option<&std::path::Path>) -> Vec<PathBuf> {
    std::iter::once(PathBuf::from("."))
        .chain(manifests.map(std::path::Path::to_path_buf))
        .collect()
}

pub async fn gateway(args: GatewayArgs, engines: Engines) -> anyhow::Result<()> {
    engines.require_shared("mercato gateway")?;
    if let Some(dir) = args.manifests.as_ref().filter(|d| !d.is_dir()) {
        bail!("--manifests {}: not a folder", dir.display());
    }
    let sources = args
        .sources
        .policy(&default_source_dirs(args.manifests.as_deref()))
        .context("--sources-dir")?;
    let (rate_limits, client_address) = args.tuning.limits()?;
    let ports = engines
        .connect(None)
        .await
        .context("cannot reach the engines")?;
    let (shutdown, stop) = watch::channel(false);
    let gateway = platform::start_gateway(
        &ports,
        GatewayRole {
            listen: args.listen,
            search_dir: args.search_dir,
            search_cache: args.tuning.search_cache,
            hold_ttl: args.tuning.hold_ttl,
            checkout_ttl: args.tuning.checkout_ttl,
            manifests: args.manifests,
            accept_manifests: args.accept_manifests,
            sources,
            secrets: args.secrets,
            tls: args.tls.clone(),
            rate_limits,
            client_address,
        },
        &stop,
    )
    .await
    .context("the gateway failed to start")?;
    print_applied(&gateway.applied);
    if let Some((email, password)) = args.admin {
        let outcome = mercato_gateway::ensure_admin(&gateway.state, &email, password)
            .await
            .map_err(|e| anyhow::anyhow!("--admin-email {email}: {} ({})", e.message, e.code))?;
        match outcome {
            AdminAccount::Created => println!("  admin {email} created"),
            AdminAccount::Exists => println!("  admin {email} exists"),
            AdminAccount::NotAnAdmin => tracing::warn!(
                %email,
                "the first admin's email belongs to an account without the admin role; left as it is"
            ),
        }
    }
    if let Some(path) = &args.admin_token_file {
        platform::write_private(path, &platform::admin_token(&gateway.state)?)?;
    }
    // Scripts wait for this line: it is printed once the gateway accepts requests.
    let scheme = if args.tls.is_some() { "https" } else { "http" };
    println!(
        "mercato gateway listening on {scheme}://{} ({})",
        gateway.addr, engines
    );
    shutdown_signal().await;
    let _ = shutdown.send(true);
    finish(gateway.tasks).await;
    Ok(())
}

/// Where a payments worker's sandbox provider posts its webhooks, whom it trusts there, and
/// the secret it signs them with.
pub struct Webhook {
    pub url: String,
    pub client: reqwest::ClientBuilder,
    pub secret: Vec<u8>,
}

pub async fn worker(
    role: &str,
    replica: u32,
    replicas: u32,
    poison_attempts: u32,
    webhook: Webhook,
    engines: Engines,
) -> anyhow::Result<()> {
    engines.require_shared(&format!("mercato worker {role}"))?;
    if replicas == 0 || replica >= replicas {
        bail!("--replica {replica} --replicas {replicas}: the replica must be below the count");
    }
    let ports = engines
        .connect(None)
        .await
        .context("cannot reach the engines")?;
    // Whichever process starts first creates the platform's topics; "already exists" is
    // success, so every worker may.
    platform::ensure_topics(&ports).await?;
    let (shutdown, stop) = watch::channel(false);
    let sandbox = platform::sandbox(&ports, webhook.secret, webhook.client);
    let mut tasks = Vec::new();
    if role == "payments" {
        // The provider's answers reach the platform as signed webhooks through a gateway.
        sandbox.set_webhook_url(webhook.url);
        tasks.push(tokio::spawn(
            Arc::clone(&sandbox).run_delivery(stop.clone()),
        ));
    }
    tasks.push(platform::start_worker(
        &ports,
        role,
        replica,
        replicas,
        poison_attempts,
        &sandbox,
        &stop,
    )?);
    println!(
        "mercato worker {role} replica {replica} of {replicas} running ({})",
        engines
    );
    shutdown_signal().await;
    let _ = shutdown.send(true);
    finish(tasks).await;
    Ok(())
}

async fn finish(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = tokio::time::timeout(STOP_GRACE, t).await;
    }
}

/// What applying the manifests at start did, one line a declaration, as kubectl says it.
fn print_applied(applied: &[ApplyReport]) {
    for a in applied {
        println!(
            "  {}.mercato.dev/{} {}",
            a.kind.to_lowercase(),
            a.name,
            a.action
        );
    }
}

pub(crate) async fn shutdown_signal() {
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
