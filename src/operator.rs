//! `mercato operator`: the operator itself (`run`), what it would create (`render`), and its
//! CRDs (`crds`).

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use mercato_operator::cluster::{self, Metrics};
use mercato_operator::workloads::WorkerSettings;
use warp::Filter;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Run the operator in a cluster: one controller per kind, leader-elected so that
    /// several replicas can run, with Prometheus metrics on `--metrics-listen`.
    Run {
        #[command(flatten)]
        engines: crate::cli::EngineFlags,
        #[command(flatten)]
        workers: Box<WorkerFlags>,
        #[command(flatten)]
        sources: crate::cli::SourceFlags,
        /// Where `/metrics`, `/healthz` and `/readyz` are served.
        #[arg(long, env = "MERCATO_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
        metrics_listen: SocketAddr,
        /// The namespace whose declarations the operator serves, and where its leader-election
        /// Lease is [default: the pod's own]. The declarations of one namespace share the
        /// operator's engines, their topics and their workers.
        #[arg(short = 'n', long, env = "POD_NAMESPACE", default_value = "default")]
        namespace: String,
        /// Run without leader election (one replica only).
        #[arg(long)]
        no_leader_election: bool,
    },
    /// Print every topic and Kubernetes object the operator would create for the manifests
    /// of a file, as YAML (nothing is contacted).
    Render {
        /// A YAML file of Event/Inventory/Warehouse manifests, or `-` for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The namespace the declarations would live in.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Render as of this instant (RFC 3339), e.g. inside an on-sale surge [default: now].
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        #[command(flatten)]
        workers: Box<WorkerFlags>,
    },
    /// Print the CustomResourceDefinitions of Event, Inventory and Warehouse.
    Crds,
}

/// How the operator runs worker pods.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerFlags {
    /// The image worker pods run [default: the image of this release].
    #[arg(long, env = "MERCATO_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    #[arg(
        long,
        env = "MERCATO_WORKER_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    pub worker_image_pull_policy: String,
    /// Secrets worker pods pull the image with: repeat it, or separate names with ','.
    #[arg(long, env = "MERCATO_WORKER_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    pub worker_image_pull_secrets: Vec<String>,
    /// The Secret with MERCATO_BUS, MERCATO_STORE and MERCATO_COORD for worker pods.
    #[arg(
        long,
        env = "MERCATO_ENGINES_SECRET",
        default_value = "mercato-engines"
    )]
    pub engines_secret: String,
    /// Where the payments workers' sandbox provider posts its webhooks (a gateway).
    #[arg(
        long,
        env = "MERCATO_WEBHOOK_URL",
        default_value = "http://mercato-gateway:8080/api/v1/payments/webhook"
    )]
    pub webhook_url: String,
    /// The Secret whose key `webhook-secret` the payments workers sign webhooks with.
    #[arg(
        long,
        env = "MERCATO_WEBHOOK_SECRET_NAME",
        default_value = "mercato-webhook"
    )]
    pub webhook_secret_name: String,
    /// For an `https://` webhook URL: a Secret whose `ca.crt` signed the gateway's certificate,
    /// mounted into the payments workers' pods.
    #[arg(long, env = "MERCATO_WEBHOOK_CA_SECRET")]
    pub webhook_ca_secret: Option<String>,
    /// The ServiceAccount of worker pods [default: the namespace's default].
    #[arg(long, env = "MERCATO_WORKER_SERVICE_ACCOUNT")]
    pub worker_service_account: Option<String>,
    /// CPU requested by each worker pod.
    #[arg(long, env = "MERCATO_WORKER_CPU", default_value = "250m")]
    pub worker_cpu: String,
    /// Memory requested by each worker pod.
    #[arg(long, env = "MERCATO_WORKER_MEMORY", default_value = "256Mi")]
    pub worker_memory: String,
    /// Memory a worker pod may use before it is stopped.
    #[arg(long, env = "MERCATO_WORKER_MEMORY_LIMIT", default_value = "1Gi")]
    pub worker_memory_limit: String,
}

impl WorkerFlags {
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            image: self
                .worker_image
                .clone()
                .unwrap_or_else(|| WorkerSettings::default().image),
            image_pull_policy: self.worker_image_pull_policy.clone(),
            image_pull_secrets: self.worker_image_pull_secrets.clone(),
            engines_secret: self.engines_secret.clone(),
            webhook_url: self.webhook_url.clone(),
            webhook_secret: self.webhook_secret_name.clone(),
            webhook_ca_secret: self.webhook_ca_secret.clone(),
            service_account: self.worker_service_account.clone(),
            resources: mercato_operator::workloads::resources(
                &self.worker_cpu,
                &self.worker_memory,
                &self.worker_memory_limit,
            ),
        }
    }
}

pub async fn run(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Run {
            engines,
            workers,
            sources,
            metrics_listen,
            namespace,
            no_leader_election,
        } => {
            // A declaration names its source by absolute path, a file mounted in this pod.
            let sources = sources.policy(&[]).context("--sources-dir")?;
            run_controllers(
                engines,
                workers.settings(),
                sources,
                metrics_listen,
                namespace,
                !no_leader_election,
            )
            .await?
        }
        OperatorCommand::Render {
            file,
            namespace,
            at,
            workers,
        } => {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let out = mercato_operator::render::render(
                &text,
                &namespace,
                at.unwrap_or_else(Utc::now),
                &workers.settings(),
            )?;
            print!("{out}");
        }
        OperatorCommand::Crds => {
            for (i, (_, yaml)) in mercato_crds::definitions_yaml()?.into_iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{yaml}");
            }
        }
    }
    Ok(())
}

/// The name of the leader-election Lease.
const LEASE: &str = "mercato-operator";

async fn run_controllers(
    engines: crate::cli::EngineFlags,
    settings: WorkerSettings,
    sources: mercato_operator::SourcePolicy,
    metrics_listen: SocketAddr,
    namespace: String,
    elect_leader: bool,
) -> anyhow::Result<()> {
    let engines = engines.parse()?;
    engines.require_shared("mercato operator")?;
    let ports = engines
        .connect(None)
        .await
        .context("cannot reach the engines")?;
    // An embedded Coord is the operator's own, not the gateways': nothing to count there.
    let rooms = matches!(engines.coord, crate::engines::CoordEngine::Redis(_))
        .then(|| std::sync::Arc::clone(&ports.coord));
    // kube's error already carries its causes; printing the chain would repeat them.
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kubernetes API (in a pod, its ServiceAccount; outside, the kubeconfig): {e}"
        )
    })?;
    let metrics = Arc::new(Metrics::new());
    let served = Arc::clone(&metrics);
    let routes = warp::path("metrics")
        .map(move || served.render())
        .or(warp::path("healthz")
            .or(warp::path("readyz"))
            .unify()
            .map(|| "ok"));
    let listener = tokio::net::TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {metrics_listen}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    println!("mercato operator: serving namespace {namespace}, metrics on http://{addr}/metrics ({engines})");

    if !elect_leader {
        let stopped = when_done(async {
            crate::serve::shutdown_signal().await;
            false
        });
        cluster::run(
            client,
            &namespace,
            ports,
            cluster::RunOptions {
                settings,
                sources,
                rooms,
            },
            metrics,
            async move {
                let _ = stopped.await;
            },
        )
        .await;
        return Ok(());
    }
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("mercato-operator-{}", std::process::id()));
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEASE)
        .with_namespace(namespace.clone())
        .with_identity(identity.clone())
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .context("cannot set up leader election")?;
    let (mut leading, _renewing) = manager.watch().await;
    println!("{identity}: waiting for the Lease {namespace}/{LEASE}");
    tokio::select! {
        _ = crate::serve::shutdown_signal() => return Ok(()),
        waited = leading.wait_for(|lead| *lead) => {
            waited.context("leader election stopped")?;
        }
    }
    println!("{identity}: leading");
    let stopped = when_done(async move {
        tokio::select! {
            _ = crate::serve::shutdown_signal() => false,
            // The lease was lost (or its renewal stopped).
            _ = leading.wait_for(|lead| !*lead) => true,
        }
    });
    let (why_tx, why_rx) = tokio::sync::watch::channel(None::<bool>);
    tokio::spawn(async move {
        let lost_lease = stopped.await.unwrap_or(false);
        let _ = why_tx.send(Some(lost_lease));
    });
    let mut until = why_rx.clone();
    cluster::run(
        client,
        &namespace,
        ports,
        cluster::RunOptions {
            settings,
            sources,
            rooms,
        },
        metrics,
        async move {
            let _ = until.wait_for(Option::is_some).await;
        },
    )
    .await;
    let lost_lease = why_rx.borrow().unwrap_or(false);
    if lost_lease {
        // Another replica may be leading already: stop at once rather than race it.
        bail!("lost the leader Lease {namespace}/{LEASE}; exiting so that the restart waits for it again");
    }
    Ok(())
}

/// Runs `done` on its own task and hands back its answer: the controllers' shutdown future
/// must be `Sync`, which a signal listener is not.
fn when_done<F>(done: F) -> tokio::sync::oneshot::Receiver<bool>
where
    F: std::future::Future<Output = bool> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(done.await);
    });
    rx
}
