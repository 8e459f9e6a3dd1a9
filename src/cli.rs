//! The command line: one binary, roles by subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::admin::{self, Target};
use crate::engines::Engines;
use crate::platform::ROLES;
use crate::secrets::{AdminFlags, SecretFlags};
use crate::serve;
use mercato_gateway::{ClientAddress, RateLimits};

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

/// Settings of the gateway role.
#[derive(clap::Args, Debug, Clone)]
pub struct Tuning {
    /// Override every event's hold length, e.g. `30s` (demos and tests).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hold_ttl: Option<Duration>,
    /// How long a checkout reserves its stock, e.g. `2m` [default: 5m].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub checkout_ttl: Option<Duration>,
    /// Search answers kept per index generation (0 turns the cache off).
    #[arg(long, default_value_t = mercato_search::DEFAULT_CACHE_ENTRIES)]
    pub search_cache: usize,
    #[command(flatten)]
    pub poison: Poison,
    /// A rate limit changed from its default: `NAME=BURST/PERIOD` (`holds-per-user=20/200ms`),
    /// `NAME=off`, or `off` for every limit (load tests playing many shoppers from one
    /// machine). Repeat it, or separate them with ',' in the variable. The limits:
    /// sign-up-per-address, sign-in-per-address, sign-in-per-account, holds-per-user,
    /// checkouts-per-user, orders-per-user.
    #[arg(
        long = "rate-limit",
        env = "MERCATO_RATE_LIMITS",
        value_delimiter = ','
    )]
    pub rate_limits: Vec<String>,
    /// Read the client's address (what per-address limits count) from this header, which the
    /// proxy in front sets (`x-forwarded-for`: its last address), not from the connection.
    #[arg(long, env = "MERCATO_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
}

impl Tuning {
    /// The rate limits and where the client's address is read, as the flags say.
    pub fn limits(&self) -> anyhow::Result<(RateLimits, ClientAddress)> {
        let limits = RateLimits::parse(&self.rate_limits).context("--rate-limit")?;
        let address = match &self.client_address_header {
            Some(name) => ClientAddress::Header(name.trim().to_ascii_lowercase()),
            None => ClientAddress::Peer,
        };
        Ok((limits, address))
    }
}

/// When a record is given up on.
#[derive(clap::Args, Debug, Clone)]
pub struct Poison {
    /// How many times one record may fail in a way a retry cannot fix (an unreadable row, an
    /// event spec that no longer parses) before it goes to the dead letters and its partition
    /// moves on.
    #[arg(
        long = "poison-attempts",
        env = "MERCATO_POISON_ATTEMPTS",
        default_value_t = mercato_workers::runtime::DEFAULT_POISON_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub attempts: u32,
}

/// Which files an Inventory's `source.file` may name: anyone who may apply a manifest may
/// name a path, so only regular files under these folders, up to a cap, are read.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceFlags {
    /// A folder product sources may be read from; repeat it, or separate folders with ':' in
    /// the variable [default for up and gateway: the current folder and --manifests; for the
    /// operator: none].
    #[arg(
        long = "sources-dir",
        env = "MERCATO_SOURCES_DIRS",
        value_delimiter = ':'
    )]
    pub dirs: Vec<PathBuf>,
    /// The largest product source read or downloaded, in bytes.
    #[arg(
        long,
        env = "MERCATO_MAX_SOURCE_BYTES",
        default_value_t = mercato_operator::DEFAULT_MAX_SOURCE_BYTES
    )]
    pub max_source_bytes: u64,
    /// URLs an Inventory's `source.url` may name, by prefix: repeat it, or separate prefixes
    /// with ',' in the variable (`https://catalogs.example.com/`, `s3://our-catalogs/`).
    /// Narrow it where the process can reach internal services.
    #[arg(
        long = "sources-url-prefix",
        env = "MERCATO_SOURCES_URL_PREFIXES",
        value_delimiter = ',',
        default_value = "https://"
    )]
    pub url_prefixes: Vec<String>,
}

impl SourceFlags {
    /// The policy these flags name, or the `defaults` folders when none is named.
    pub fn policy(&self, defaults: &[PathBuf]) -> anyhow::Result<mercato_operator::SourcePolicy> {
        let dirs = if self.dirs.is_empty() {
            defaults.to_vec()
        } else {
            self.dirs.clone()
        };
        Ok(
            mercato_operator::SourcePolicy::new(dirs, self.max_source_bytes)?
                .with_url_prefixes(self.url_prefixes.clone()),
        )
    }
}

/// TLS served by the gateway itself, for clusters without an ingress that terminates it.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeTlsFlags {
    /// A PEM certificate chain, leaf first (cert-manager's `tls.crt`); with --tls-key the
    /// gateway serves HTTPS only.
    #[arg(long, env = "MERCATO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (cert-manager's `tls.key`).
    #[arg(long, env = "MERCATO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ServeTlsFlags {
    pub fn load(&self) -> anyhow::Result<Option<mercato_gateway::ServerTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(
                mercato_gateway::ServerTls::from_pem_files(cert, key)
                    .context("--tls-cert/--tls-key")?,
            )),
            _ => Ok(None),
        }
    }
}

/// The engines behind the ports.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineFlags {
    /// The bus: `embedded`, `fluvio://SC_HOST:9003[?replication=N]`, or
    /// `redis://HOST:PORT[/DB]` (Redis Streams).
    #[arg(long, env = "MERCATO_BUS", default_value = "embedded")]
    bus: String,
    /// The store: `embedded[:DIR]`, `scylla://[USER:PASSWORD@]HOST[:PORT][,HOST…]/KEYSPACE
    /// [?replication_factor=N&serial=local|global]`, or
    /// `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE`.
    #[arg(long, env = "MERCATO_STORE", default_value = "embedded")]
    store: String,
    /// Coordination (rate limits, fan-out): `embedded`, or `redis://HOST:PORT[/DB]`.
    #[arg(long, env = "MERCATO_COORD", default_value = "embedded")]
    coord: String,
}

impl EngineFlags {
    pub fn parse(&self) -> anyhow::Result<Engines> {
        Ok(Engines::parse(&self.bus, &self.store, &self.coord)?)
    }
}

#[derive(Subcommand)]
enum DlqAction {
    /// Send dead letters back to the topic they came from, once what made them fail is fixed:
    /// the offsets `mercato dlq` lists (`#N`), or --all for every one not replayed yet.
    Replay {
        #[arg(required_unless_present = "all")]
        offsets: Vec<u64>,
        #[arg(long, conflicts_with = "offsets")]
        all: bool,
        /// Replay letters that were replayed before, too.
        #[arg(long)]
        again: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: gateway, workers, local reconciler. Embedded engines by
    /// default; `--bus`, `--store` and `--coord` put it on real ones.
    Up {
        /// Address the gateway listens on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the embedded engines, the search index and the admin token are kept.
        #[arg(long, default_value = "./mercato-data")]
        data_dir: PathBuf,
        /// A folder of Event/Inventory/Warehouse manifests to apply at start [default: examples/ if present].
        #[arg(long)]
        manifests: Option<PathBuf>,
        #[command(flatten)]
        tuning: Tuning,
        #[command(flatten)]
        sources: SourceFlags,
        #[command(flatten)]
        engines: EngineFlags,
    },
    /// Run the gateway alone (HTTP API, search index), sharing its engines with the workers'
    /// processes. Run as many as you like behind a load balancer.
    Gateway {
        /// Address the gateway listens on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where this gateway keeps its search index [default: in memory, rebuilt at start].
        #[arg(long)]
        search_dir: Option<PathBuf>,
        /// Manifests to apply at start.
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Write an admin token (for `mercato apply`) to this file, readable by you alone.
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// Serve `POST /api/v1/admin/manifests` (`mercato apply`), applying manifests with this
        /// gateway's own reconciler. Off, the route does not exist: on a cluster, declarations
        /// go through the Kubernetes API and the operator.
        #[arg(long)]
        accept_manifests: bool,
        #[command(flatten)]
        tls: ServeTlsFlags,
        #[command(flatten)]
        secrets: SecretFlags,
        #[command(flatten)]
        admin: AdminFlags,
        #[command(flatten)]
        tuning: Tuning,
        #[command(flatten)]
        sources: SourceFlags,
        #[command(flatten)]
        engines: EngineFlags,
    },
    /// Run one replica of a stream worker, sharing its engines with the other processes.
    /// Replica i of n consumes the partitions p with p % n == i.
    Worker {
        /// holds, payments, ingest, checkout or allocator.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(ROLES))]
        role: String,
        /// This replica's ordinal (a StatefulSet sets it from the pod's index).
        #[arg(long, env = "MERCATO_REPLICA", default_value_t = 0)]
        replica: u32,
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Where the sandbox provider of a payments worker posts its webhooks: a gateway.
        #[arg(long, default_value = "http://127.0.0.1:8080/api/v1/payments/webhook")]
        webhook_url: String,
        /// For an `https://` webhook URL whose certificate a private CA signed: that CA's PEM
        /// certificate (trusted instead of the system's roots).
        #[arg(long, env = "MERCATO_WEBHOOK_CACERT")]
        webhook_cacert: Option<PathBuf>,
        /// The payment provider's webhook secret (payments only; the gateways verify with it).
        #[arg(long, env = "MERCATO_WEBHOOK_SECRET_FILE")]
        webhook_secret_file: Option<PathBuf>,
        #[command(flatten)]
        poison: Poison,
        #[command(flatten)]
        engines: EngineFlags,
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
    /// (without --inventory) every record on the dead-letter topic; `dlq replay` sends them
    /// back.
    #[command(args_conflicts_with_subcommands = true)]
    Dlq {
        #[command(subcommand)]
        action: Option<DlqAction>,
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
    /// The Kubernetes operator: `render` shows what it would create for a manifest, `crds`
    /// prints its CustomResourceDefinitions.
    Operator {
        #[command(subcommand)]
        command: crate::operator::OperatorCommand,
    },
    /// Check the embedded engines' logs in a data dir and cut damage that keeps them from
    /// opening, keeping a copy of every byte cut beside the file. Stop `mercato up` first.
    Repair {
        #[arg(long, default_value = "./mercato-data")]
        data_dir: PathBuf,
        /// Only report; exit non-zero if a log is damaged.
        #[arg(long)]
        check: bool,
    },
    /// Rebuild the search index from offset 0 of the catalog topic; searches are served from
    /// the old index until the new one is complete.
    Reindex {
        #[command(flatten)]
        target: Target,
    },
    /// Make the installation's secrets in a folder, readable by you alone: session-token
    /// signing keys and the webhook secret, for `mercato gateway` and `mercato worker`, or to
    /// load into Kubernetes Secrets. Keeps what is there already.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Make what is missing under DIR and print how to use it.
    Init { dir: PathBuf },
}

/// Whether the command line accepts these arguments (the first is the program name): the
/// chart's test checks the arguments it gives `mercato` this way.
pub fn accepts(args: &[String]) -> Result<(), String> {
    Cli::try_parse_from(args)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
                tuning,
                sources,
                engines,
            } => {
                serve::up(
                    listen,
                    data_dir,
                    manifests,
                    tuning,
                    sources,
                    engines.parse()?,
                )
                .await
            }
            Command::Gateway {
                listen,
                search_dir,
                manifests,
                admin_token_file,
                accept_manifests,
                tls,
                secrets,
                admin,
                tuning,
                sources,
                engines,
            } => {
                serve::gateway(
                    serve::GatewayArgs {
                        listen,
                        search_dir,
                        manifests,
                        admin_token_file,
                        accept_manifests,
                        tls: tls.load()?,
                        secrets: secrets.gateway()?,
                        admin: admin.read()?,
                        tuning,
                        sources,
                    },
                    engines.parse()?,
                )
                .await
            }
            Command::Worker {
                role,
                replica,
                replicas,
                webhook_url,
                webhook_cacert,
                webhook_secret_file,
                poison,
                engines,
            } => {
                let engines = engines.parse()?;
                let roots = match &webhook_cacert {
                    Some(path) => crate::trust::ca_certificates("--webhook-cacert", path)?,
                    None => Vec::new(),
                };
                serve::worker(
                    &role,
                    replica,
                    replicas,
                    poison.attempts,
                    serve::Webhook {
                        url: webhook_url,
                        client: crate::trust::trusting(reqwest::Client::builder(), roots),
                        // Only the payments role posts webhooks.
                        secret: if role == "payments" {
                            crate::secrets::webhook_secret(
                                webhook_secret_file.as_deref(),
                                "mercato worker payments",
                            )?
                        } else {
                            Vec::new()
                        },
                    },
                    engines,
                )
                .await
            }
            Command::Apply {
                file,
                no_wait,
                target,
            } => admin::apply(&target, &file, !no_wait).await,
            Command::Dlq {
                action: None,
                inventory,
                generation,
                all,
                target,
            } => admin::dlq(&target, inventory, generation, all).await,
            Command::Dlq {
                action:
                    Some(DlqAction::Replay {
                        offsets,
                        all,
                        again,
                        target,
                    }),
                ..
            } => admin::dlq_replay(&target, offsets, all, again).await,
            Command::Reindex { target } => admin::reindex(&target).await,
            Command::Repair { data_dir, check } => crate::repair::run(&data_dir, check),
            Command::Secrets {
                command: SecretsCommand::Init { dir },
            } => crate::secrets::init(&dir),
            Command::Operator { command } => crate::operator::run(command).await,
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
