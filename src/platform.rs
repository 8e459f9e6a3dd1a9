//! The roles a process runs: the gateway (with the local reconciler that applies manifests and
//! the search index), and the stream workers. `mercato up` runs them all in one process, on the
//! embedded engines by default; `mercato gateway` and `mercato worker` run one role each, on
//! shared engines. The same code the cluster runs, with worker Deployments as tasks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mercato_core::domain::users::Role;
use mercato_core::names::topics;
use mercato_core::Ports;
use mercato_gateway::error::ApiError;
use mercato_gateway::{AppState, GatewayConfig, ManifestSink, Secrets};
pub use mercato_gateway::{ClientAddress, RateLimits};
use mercato_operator::local::ApplyError;
use mercato_operator::{ApplyReport, LocalReconciler};
pub use mercato_operator::{SourcePolicy, DEFAULT_MAX_SOURCE_BYTES};
use mercato_search::{Search, SearchError};
use mercato_workers::allocator::AllocatorWorker;
use mercato_workers::checkout::CheckoutWorker;
use mercato_workers::holds::HoldsWorker;
use mercato_workers::ingest::IngestWorker;
use mercato_workers::lapses::Lapses;
use mercato_workers::payments::PaymentsWorker;
pub use mercato_workers::runtime::DEFAULT_POISON_ATTEMPTS;
use mercato_workers::sandbox::SandboxProvider;
use mercato_workers::{run_worker, BatchHandler, WorkerSpec};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warp::http::StatusCode;

use crate::data_dir::{DataDirError, DataDirLock};
use crate::engines::{EngineError, Engines};

#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub listen: SocketAddr,
    /// Where state is kept; `None` keeps everything in memory (tests).
    pub data_dir: Option<PathBuf>,
    /// A folder of manifests to apply at start.
    pub manifests: Option<PathBuf>,
    pub hold_ttl: Option<Duration>,
    /// How long a checkout reserves its stock; 5 minutes by default.
    pub checkout_ttl: Option<Duration>,
    /// Search answers cached per index generation; 0 turns the cache off.
    pub search_cache: usize,
    /// The engines behind the ports: embedded unless flags name real ones.
    pub engines: Engines,
    /// How often one record may fail permanently before it goes to the dead letters.
    pub poison_attempts: u32,
    /// Which files an Inventory's `source.file` may name.
    pub sources: SourcePolicy,
    /// Token buckets on sign-up, sign-in, holds, checkouts and orders.
    pub rate_limits: RateLimits,
    /// Where the client's address is read.
    pub client_address: ClientAddress,
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    // The inner error is the source: `{:#}` (anyhow) prints the chain once.
    #[error(transparent)]
    Engines(#[from] EngineError),
    #[error("cannot read the payment provider's settings")]
    Store(#[from] mercato_core::store::StoreError),
    #[error("cannot reach the bus")]
    Bus(#[from] mercato_core::bus::BusError),
    #[error("unknown worker role {0:?}: expected one of {ROLES:?}")]
    UnknownRole(String),
    #[error("cannot read shared settings")]
    Repo(#[from] mercato_core::repo::RepoError),
    #[error("cannot apply manifests")]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Gateway(#[from] mercato_gateway::GatewayError),
    #[error("cannot open the search index")]
    Search(#[from] SearchError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot set up the installation's secrets")]
    Secrets(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

pub struct Platform {
    pub addr: SocketAddr,
    /// A token with the admin role, for `mercato apply`.
    pub admin_token: String,
    pub applied: Vec<ApplyReport>,
    /// The engines behind it, for tests that inspect or tamper with state directly.
    pub ports: Ports,
    /// The webhook secret, for tests that post the payment provider's webhooks themselves.
    pub webhook_secret: Vec<u8>,
    /// Held while the platform runs: no other process works on its data directory.
    _data_dir_lock: Option<DataDirLock>,
    /// The gateway's state: its session keys, for [`Platform::session_for`].
    gateway: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

struct LocalSink(LocalReconciler);

#[async_trait]
impl ManifestSink for LocalSink {
    async fn apply(
        &self,
        yaml: &str,
        base_dir: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        match self.0.apply_stream(yaml, base_dir.map(Path::new)).await {
            Ok(applied) => Ok(json!({ "applied": applied })),
            Err(ApplyError::Manifest(e)) => {
                let status = match e {
                    mercato_crds::ManifestError::Yaml { .. } => StatusCode::BAD_REQUEST,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let details = match &e {
                    mercato_crds::ManifestError::Invalid { problems, .. } => {
                        json!({ "problems": problems })
                    }
                    _ => json!({}),
                };
                Err(ApiError::new(status, e.code(), e.to_string()).with_details(details))
            }
            Err(ApplyError::Source { name, cause }) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                cause.code(),
                format!("Inventory {name}: {cause}"),
            )),
            Err(e) => Err(ApiError::unavailable("apply_failed", e.to_string())),
        }
    }
}

/// The worker roles, each consuming one topic.
pub const ROLES: [&str; 5] = ["holds", "payments", "ingest", "checkout", "allocator"];

/// What the gateway role needs beyond the ports.
pub struct GatewayRole {
    pub listen: SocketAddr,
    /// Where the search index is kept; in memory when `None`.
    pub search_dir: Option<PathBuf>,
    pub search_cache: usize,
    pub hold_ttl: Option<Duration>,
    pub checkout_ttl: Option<Duration>,
    pub manifests: Option<PathBuf>,
    /// Serve `POST /api/v1/admin/manifests` (applied by this process's local reconciler);
    /// off, the route does not exist and declarations go through the cluster.
    pub accept_manifests: bool,
    pub sources: SourcePolicy,
    /// Session keys and the webhook secret, the same for every gateway of the installation.
    pub secrets: Secrets,
    /// Serve TLS with this certificate; plain HTTP when `None`.
    pub tls: Option<mercato_gateway::ServerTls>,
    pub rate_limits: RateLimits,
    pub client_address: ClientAddress,
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub sandbox: Arc<SandboxProvider>,
    pub applied: Vec<ApplyReport>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Creates the platform's topics (idempotent: "already exists" is success), finishes inventory
/// publishes a crash interrupted, and applies the manifests folder if one is given.
async fn prepare(
    reconciler: &LocalReconciler,
    manifests: Option<&Path>,
) -> Result<Vec<ApplyReport>, PlatformError> {
    reconciler.ensure_platform().await?;
    let resumed = reconciler.resume().await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed interrupted inventory publishes");
    }
    Ok(match manifests {
        Some(dir) => reconciler.apply_dir(dir).await?,
        None => Vec::new(),
    })
}

/// Creates the platform's topics, for a process that runs no gateway.
pub async fn ensure_topics(ports: &Ports) -> Result<(), PlatformError> {
    Ok(LocalReconciler::new(ports.clone())
        .ensure_platform()
        .await?)
}

/// The sandbox payment provider; its charges and webhook outbox live in the store, so every
/// process that builds one sees the same payments.
/// The payment sandbox, signing its webhooks with `webhook_secret`; `webhook_client` says
/// whom the webhook endpoint's certificate is verified against.
pub fn sandbox(
    ports: &Ports,
    webhook_secret: Vec<u8>,
    webhook_client: reqwest::ClientBuilder,
) -> Arc<SandboxProvider> {
    Arc::new(
        SandboxProvider::new(Arc::clone(&ports.store), webhook_secret).with_client(webhook_client),
    )
}

/// Starts the gateway role: the HTTP API, the results consumer, the search indexer, and the
/// local reconciler behind `mercato apply`.
pub async fn start_gateway(
    ports: &Ports,
    role: GatewayRole,
    stop: &watch::Receiver<bool>,
) -> Result<Gateway, PlatformError> {
    mercato_core::repo::forget_stored_secrets(&*ports.store).await?;
    let reconciler = LocalReconciler::new(ports.clone()).with_sources(role.sources.clone());
    let applied = prepare(&reconciler, role.manifests.as_deref()).await?;
    let mut tasks = Vec::new();
    let (search, indexer) = Search::start(
        role.search_dir.as_deref(),
        role.search_cache,
        Arc::clone(&ports.bus),
        stop.clone(),
    )
    .await?;
    tasks.push(indexer);
    let sandbox = sandbox(
        ports,
        role.secrets.webhook_secret.clone(),
        reqwest::Client::builder(),
    );
    let gateway_config = GatewayConfig {
        hold_ttl_override: role.hold_ttl,
        checkout_ttl: role
            .checkout_ttl
            .unwrap_or(mercato_core::domain::commerce::DEFAULT_CHECKOUT_TTL),
        rate_limits: role.rate_limits,
        client_address: role.client_address,
        ..GatewayConfig::default()
    };
    let state = Arc::new(
        AppState::new(
            ports.clone(),
            gateway_config,
            role.secrets,
            sandbox.clone(),
            role.accept_manifests
                .then(|| Arc::new(LocalSink(reconciler)) as Arc<dyn ManifestSink>),
        )
        .with_search(Arc::clone(&search)),
    );
    let (addr, server) = mercato_gateway::serve(
        Arc::clone(&state),
        role.listen,
        role.tls.clone(),
        stop.clone(),
    )
    .await?;
    tasks.push(server);
    Ok(Gateway {
        addr,
        state,
        sandbox,
        applied,
        tasks,
    })
}

/// Starts replica `replica` of `replicas` of a worker role. The payments role takes the
/// provider whose webhooks it must deliver.
pub fn start_worker(
    ports: &Ports,
    role: &str,
    replica: u32,
    replicas: u32,
    poison_attempts: u32,
    sandbox: &Arc<SandboxProvider>,
    stop: &watch::Receiver<bool>,
) -> Result<JoinHandle<()>, PlatformError> {
    let store = || Arc::clone(&ports.store);
    let (role, topic, max_batch, handler): (&'static str, _, _, Arc<dyn BatchHandler>) = match role
    {
        "holds" => {
            let lapses = Lapses::new(store(), Arc::clone(&ports.bus));
            let (watching, stop) = (Arc::clone(&lapses), stop.clone());
            tokio::spawn(async move {
                // Holds placed before this replica started (a crash, a rescale) are watched too.
                match watching.rebuild(replica, replicas).await {
                    Ok(found) => tracing::debug!(found, "standing holds watched for their lapse"),
                    Err(e) => {
                        tracing::warn!(error = %e, "finding standing holds to watch failed; their lapses go unannounced")
                    }
                }
                watching.run(stop).await;
            });
            (
                "holds",
                topics::HOLDS,
                512,
                Arc::new(HoldsWorker::with_lapses(store(), lapses)),
            )
        }
        "payments" => (
            "payments",
            topics::PAYMENTS,
            256,
            Arc::new(PaymentsWorker::new(store(), sandbox.clone())),
        ),
        "ingest" => (
            "ingest",
            topics::INGEST,
            2048,
            Arc::new(IngestWorker::new(ports.clone())),
        ),
        "checkout" => (
            "checkout",
            topics::CHECKOUTS,
            256,
            Arc::new(CheckoutWorker::new(store(), Arc::clone(&ports.bus))),
        ),
        "allocator" => (
            "allocator",
            topics::ALLOCATIONS,
            256,
            Arc::new(AllocatorWorker::new(store())),
        ),
        other => return Err(PlatformError::UnknownRole(other.to_owned())),
    };
    let spec = WorkerSpec {
        role,
        topic,
        replica,
        replicas,
        max_batch,
        poison_attempts,
    };
    let ports = ports.clone();
    let stop = stop.clone();
    Ok(tokio::spawn(async move {
        if let Err(e) = run_worker(ports, spec, handler, stop).await {
            tracing::error!(role, error = %e, "worker stopped");
        }
    }))
}

impl Platform {
    /// Everything in one process: the gateway and one replica of every worker.
    pub async fn start(config: PlatformConfig) -> Result<Platform, PlatformError> {
        // Before anything opens a file there: a repair or another `up` may be at work on it.
        let data_dir_lock = match &config.data_dir {
            Some(dir) => Some(DataDirLock::acquire(dir, "mercato up")?),
            None => None,
        };
        let ports = config.engines.connect(config.data_dir.as_deref()).await?;
        // Kept beside the data, never in the store; in memory for a run without a folder.
        let secrets = match &config.data_dir {
            Some(dir) => crate::secrets::ensure(&dir.join("secrets")),
            None => Ok(crate::secrets::ephemeral()),
        }
        .map_err(|e| PlatformError::Secrets(e.into()))?;
        let webhook_secret = secrets.webhook_secret.clone();
        let (shutdown, stop) = watch::channel(false);
        let gateway = start_gateway(
            &ports,
            GatewayRole {
                listen: config.listen,
                search_dir: config.data_dir.as_ref().map(|d| d.join("search")),
                search_cache: config.search_cache,
                hold_ttl: config.hold_ttl,
                checkout_ttl: config.checkout_ttl,
                manifests: config.manifests.clone(),
                accept_manifests: true,
                sources: config.sources.clone(),
                secrets,
                // One process on a laptop: its payment sandbox posts webhooks to it in the clear.
                tls: None,
                rate_limits: config.rate_limits.clone(),
                client_address: config.client_address.clone(),
            },
            &stop,
        )
        .await?;
        let Gateway {
            addr,
            state,
            sandbox,
            applied,
            mut tasks,
        } = gateway;
        sandbox.set_webhook_url(format!("http://{addr}/api/v1/payments/webhook"));
        tasks.push(tokio::spawn(
            Arc::clone(&sandbox).run_delivery(stop.clone()),
        ));
        // The same topology the operator builds: a role runs the replicas the declarations
        // ask for (as tasks instead of pods), and at least one, since `mercato apply` may bring
        // declarations that need it later.
        let declared = match &config.manifests {
            Some(dir) => mercato_operator::local::read_manifests(dir)?,
            None => Vec::new(),
        };
        let topology = mercato_operator::topology::topology(&declared, chrono::Utc::now());
        for role in ROLES {
            let replicas = topology
                .roles
                .iter()
                .find(|r| r.role == role)
                .map_or(1, |r| r.replicas.max(1));
            for replica in 0..replicas {
                tasks.push(start_worker(
                    &ports,
                    role,
                    replica,
                    replicas,
                    config.poison_attempts,
                    &sandbox,
                    &stop,
                )?);
            }
        }
        let admin_token = admin_token(&state)?;
        if let Some(dir) = &config.data_dir {
            write_private(&dir.join("admin-token"), &admin_token)?;
        }
        Ok(Platform {
            addr,
            admin_token,
            applied,
            ports,
            webhook_secret,
            _data_dir_lock: data_dir_lock,
            gateway: state,
            shutdown,
            tasks,
        })
    }

    /// A shopper's session token for `user_id`, as signing in gives it, for tests and load
    /// generators that play thousands of shoppers: signing each in costs an argon2 hash (tens
    /// of milliseconds of a core and 19 MiB). A route reads nothing of a shopper but the
    /// token, so the account need not exist.
    pub fn session_for(&self, user_id: &str) -> Result<String, PlatformError> {
        self.gateway
            .keys
            .issue(user_id, Role::Shopper, mercato_gateway::auth::SESSION_SECS)
            .map(|(token, _)| token)
            .map_err(|e| PlatformError::Write {
                path: "session token".into(),
                source: std::io::Error::other(e.message),
            })
    }

    /// Stops serving and lets the workers finish their current batch.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// A token with the admin role, valid for 30 days, signed with the shared key: any gateway of
/// the same store accepts it.
pub fn admin_token(state: &AppState) -> Result<String, PlatformError> {
    state
        .keys
        .issue("admin", Role::Admin, 30 * 24 * 3600)
        .map(|(token, _)| token)
        .map_err(|e| PlatformError::Write {
            path: "admin token".into(),
            source: std::io::Error::other(e.message),
        })
}

pub fn write_private(path: &Path, text: &str) -> Result<(), PlatformError> {
    let err = |source| PlatformError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(path, text).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}
