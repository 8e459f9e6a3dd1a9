//! `mercato operator`: what the operator would create (`render`), and its CRDs (`crds`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use mercato_operator::workloads::WorkerSettings;

#[derive(Subcommand)]
pub enum OperatorCommand {
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
        let defaults = WorkerSettings::default();
        let quantity = |q: &str| Quantity(q.to_owned());
        WorkerSettings {
            image: self.worker_image.clone().unwrap_or(defaults.image),
            image_pull_policy: self.worker_image_pull_policy.clone(),
            engines_secret: self.engines_secret.clone(),
            webhook_url: self.webhook_url.clone(),
            service_account: self.worker_service_account.clone(),
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), quantity(&self.worker_cpu)),
                    ("memory".to_owned(), quantity(&self.worker_memory)),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    quantity(&self.worker_memory_limit),
                )])),
                ..ResourceRequirements::default()
            },
        }
    }
}

pub fn run(command: OperatorCommand) -> anyhow::Result<()> {
    match command {
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
