//! `mercato up`: the gateway, every worker and a local reconciler in one process, on the
//! embedded engines. The same code the cluster runs, with topics as embedded topics and worker
//! Deployments as tasks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::coord::EmbeddedCoord;
use mercato_core::domain::users::Role;
use mercato_core::names::topics;
use mercato_core::repo;
use mercato_core::store::{EmbeddedStore, Store};
use mercato_core::Ports;
use mercato_gateway::error::ApiError;
use mercato_gateway::{AppState, GatewayConfig, ManifestSink};
use mercato_operator::local::ApplyError;
use mercato_operator::{Applied, LocalReconciler};
use mercato_search::{Search, SearchError};
use mercato_workers::allocator::AllocatorWorker;
use mercato_workers::checkout::CheckoutWorker;
use mercato_workers::holds::HoldsWorker;
use mercato_workers::ingest::IngestWorker;
use mercato_workers::payments::PaymentsWorker;
use mercato_workers::sandbox::SandboxProvider;
use mercato_workers::{run_worker, WorkerSpec};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warp::http::StatusCode;

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
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    // The inner error is the source: `{:#}` (anyhow) prints the chain once.
    #[error("cannot open the store")]
    Store(#[from] mercato_core::store::StoreError),
    #[error("cannot open the bus")]
    Bus(#[from] mercato_core::bus::BusError),
    #[error("cannot read shared settings")]
    Repo(#[from] mercato_core::repo::RepoError),
    #[error("cannot apply manifests")]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Gateway(#[from] mercato_gateway::GatewayError),
    #[error("cannot open the search index")]
    Search(#[from] SearchError),
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
    pub applied: Vec<Applied>,
    /// The engines behind it, for tests that inspect or tamper with state directly.
    pub ports: Ports,
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
            Err(e @ ApplyError::Source { .. }) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "source_unreadable",
                e.to_string(),
            )),
            Err(e) => Err(ApiError::unavailable("apply_failed", e.to_string())),
        }
    }
}

fn open_ports(data_dir: Option<&Path>) -> Result<Ports, PlatformError> {
    let (store, bus): (Arc<dyn Store>, Arc<dyn Bus>) = match data_dir {
        Some(dir) => (
            Arc::new(EmbeddedStore::open(&dir.join("store"))?),
            Arc::new(EmbeddedBus::open(&dir.join("bus"))?),
        ),
        None => (
            Arc::new(EmbeddedStore::in_memory()?),
            Arc::new(EmbeddedBus::in_memory()),
        ),
    };
    Ok(Ports {
        bus,
        store,
        coord: Arc::new(EmbeddedCoord::new()),
    })
}

impl Platform {
    pub async fn start(config: PlatformConfig) -> Result<Platform, PlatformError> {
        let ports = open_ports(config.data_dir.as_deref())?;
        let reconciler = LocalReconciler::new(ports.clone());
        reconciler.ensure_platform().await?;
        let resumed = reconciler.resume().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed interrupted inventory publishes");
        }
        let applied = match &config.manifests {
            Some(dir) => reconciler.apply_dir(dir).await?,
            None => Vec::new(),
        };
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        let search_dir = config.data_dir.as_ref().map(|d| d.join("search"));
        let (search, indexer) = Search::start(
            search_dir.as_deref(),
            config.search_cache,
            Arc::clone(&ports.bus),
            stop.clone(),
        )
        .await?;
        tasks.push(indexer);

        let webhook_secret = repo::shared_secret(&*ports.store, "webhook_secret").await?;
        let sandbox = Arc::new(SandboxProvider::new(
            Arc::clone(&ports.store),
            webhook_secret,
        ));
        let gateway_config = GatewayConfig {
            hold_ttl_override: config.hold_ttl,
            checkout_ttl: config
                .checkout_ttl
                .unwrap_or(mercato_core::domain::commerce::DEFAULT_CHECKOUT_TTL),
            ..GatewayConfig::default()
        };
        let state = Arc::new(
            AppState::new(
                ports.clone(),
                gateway_config,
                sandbox.clone(),
                Some(Arc::new(LocalSink(reconciler))),
            )
            .await?
            .with_search(Arc::clone(&search)),
        );
        let (addr, server) =
            mercato_gateway::serve(Arc::clone(&state), config.listen, stop.clone()).await?;
        tasks.push(server);
        sandbox.set_webhook_url(format!("http://{addr}/api/v1/payments/webhook"));
        tasks.push(tokio::spawn(
            Arc::clone(&sandbox).run_delivery(stop.clone()),
        ));

        let holds = Arc::new(HoldsWorker::new(Arc::clone(&ports.store)));
        let payments = Arc::new(PaymentsWorker::new(Arc::clone(&ports.store), sandbox));
        let ingest = Arc::new(IngestWorker::new(ports.clone()));
        let checkout = Arc::new(CheckoutWorker::new(
            Arc::clone(&ports.store),
            Arc::clone(&ports.bus),
        ));
        let allocator = Arc::new(AllocatorWorker::new(Arc::clone(&ports.store)));
        let workers: [(WorkerSpec, Arc<dyn mercato_workers::BatchHandler>); 5] = [
            (
                WorkerSpec {
                    role: "holds",
                    topic: topics::HOLDS,
                    replica: 0,
                    replicas: 1,
                    max_batch: 512,
                },
                holds,
            ),
            (
                WorkerSpec {
                    role: "payments",
                    topic: topics::PAYMENTS,
                    replica: 0,
                    replicas: 1,
                    max_batch: 256,
                },
                payments,
            ),
            (
                WorkerSpec {
                    role: "ingest",
                    topic: topics::INGEST,
                    replica: 0,
                    replicas: 1,
                    max_batch: 2048,
                },
                ingest,
            ),
            (
                WorkerSpec {
                    role: "checkout",
                    topic: topics::CHECKOUTS,
                    replica: 0,
                    replicas: 1,
                    max_batch: 256,
                },
                checkout,
            ),
            (
                WorkerSpec {
                    role: "allocator",
                    topic: topics::ALLOCATIONS,
                    replica: 0,
                    replicas: 1,
                    max_batch: 256,
                },
                allocator,
            ),
        ];
        for (spec, handler) in workers {
            let ports = ports.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let role = spec.role;
                if let Err(e) = run_worker(ports, spec, handler, stop).await {
                    tracing::error!(role, error = %e, "worker stopped");
                }
            }));
        }

        let (admin_token, _) = state
            .keys
            .issue("admin", Role::Admin, 30 * 24 * 3600)
            .map_err(|e| PlatformError::Write {
                path: "admin token".into(),
                source: std::io::Error::other(e.message),
            })?;
        if let Some(dir) = &config.data_dir {
            write_private(&dir.join("admin-token"), &admin_token)?;
        }
        Ok(Platform {
            addr,
            admin_token,
            applied,
            ports,
            shutdown,
            tasks,
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

fn write_private(path: &Path, text: &str) -> Result<(), PlatformError> {
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
