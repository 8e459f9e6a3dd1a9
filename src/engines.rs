//! Which engines stand behind the ports, from `--bus`, `--store` and `--coord`, and connecting
//! to them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mercato_core::bus::{Bus, EmbeddedBus};
use mercato_core::coord::{Coord, EmbeddedCoord};
use mercato_core::store::{EmbeddedStore, Store};
use mercato_core::Ports;
use mercato_engines::fluvio_bus::FluvioBus;
use mercato_engines::postgres::{PostgresOptions, PostgresStore};
use mercato_engines::redis_bus::RedisBus;
use mercato_engines::redis_coord::RedisCoord;
use mercato_engines::scylla_store::{ScyllaOptions, ScyllaStore};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BusEngine {
    /// In this process; on disk under the data dir when there is one.
    #[default]
    Embedded,
    Redis(String),
    Fluvio(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreEngine {
    /// In this process; in `DIR` if given, else under the data dir, else in memory.
    #[default]
    Embedded,
    EmbeddedAt(PathBuf),
    Postgres(String),
    Scylla(ScyllaOptions),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CoordEngine {
    #[default]
    Embedded,
    Redis(String),
}

/// The engines a process runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Engines {
    pub bus: BusEngine,
    pub store: StoreEngine,
    pub coord: CoordEngine,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("--{flag} {given:?}: {why}")]
    BadFlag {
        flag: &'static str,
        given: String,
        why: String,
    },
    #[error("{role} runs as its own process and shares its engines with the others; the embedded {port} lives inside one process. Give --{port} {hint}")]
    NotShareable {
        role: String,
        port: &'static str,
        hint: &'static str,
    },
    #[error("cannot open the embedded store")]
    EmbeddedStore(#[source] mercato_core::store::StoreError),
    #[error("cannot open the embedded bus")]
    EmbeddedBus(#[source] mercato_core::bus::BusError),
    #[error("cannot connect to PostgreSQL")]
    Postgres(#[source] mercato_core::store::StoreError),
    #[error("cannot connect to ScyllaDB")]
    Scylla(#[source] mercato_core::store::StoreError),
    #[error("cannot connect to Fluvio")]
    Fluvio(#[source] mercato_core::bus::BusError),
    #[error(transparent)]
    Redis(#[from] mercato_engines::RedisConnectError),
}

const BUS_HINT: &str = "expected embedded, fluvio://SC_HOST:9003 or redis://HOST:PORT";
const STORE_HINT: &str =
    "expected embedded[:DIR], scylla://HOST[:PORT][,HOST…]/KEYSPACE or postgres://USER:PASSWORD@HOST/DB";
const SHARED_BUS: &str = "fluvio://SC_HOST:9003 or redis://HOST:PORT";
const SHARED_STORE: &str = "scylla://HOST/KEYSPACE or postgres://USER:PASSWORD@HOST/DB";

impl Engines {
    pub fn parse(bus: &str, store: &str, coord: &str) -> Result<Self, EngineError> {
        let bad = |flag: &'static str, given: &str, why: &str| EngineError::BadFlag {
            flag,
            given: given.to_owned(),
            why: why.to_owned(),
        };
        let bus = match scheme(bus) {
            "embedded" if bus == "embedded" => BusEngine::Embedded,
            "redis" | "rediss" => BusEngine::Redis(bus.to_owned()),
            "fluvio" => {
                // Checked now, so a typo fails at start rather than at first use.
                mercato_engines::fluvio_bus::FluvioOptions::from_url(bus)
                    .map_err(|e| bad("bus", bus, &e.to_string()))?;
                BusEngine::Fluvio(bus.to_owned())
            }
            _ => return Err(bad("bus", bus, BUS_HINT)),
        };
        let store = match scheme(store) {
            "embedded" => match store.strip_prefix("embedded:") {
                Some("") => return Err(bad("store", store, "embedded:DIR needs a folder")),
                Some(dir) => StoreEngine::EmbeddedAt(PathBuf::from(dir)),
                None => StoreEngine::Embedded,
            },
            "postgres" | "postgresql" => StoreEngine::Postgres(store.to_owned()),
            "scylla" => StoreEngine::Scylla(
                ScyllaOptions::from_url(store).map_err(|e| bad("store", store, &e.to_string()))?,
            ),
            _ => return Err(bad("store", store, STORE_HINT)),
        };
        let coord = match scheme(coord) {
            "embedded" if coord == "embedded" => CoordEngine::Embedded,
            "redis" | "rediss" => CoordEngine::Redis(coord.to_owned()),
            _ => {
                return Err(bad(
                    "coord",
                    coord,
                    "expected embedded or redis://HOST:PORT",
                ))
            }
        };
        Ok(Self { bus, store, coord })
    }

    /// Refuses engines that cannot be shared between processes, for a role run on its own.
    pub fn require_shared(&self, role: &str) -> Result<(), EngineError> {
        let refuse = |port, hint| {
            Err(EngineError::NotShareable {
                role: role.to_owned(),
                port,
                hint,
            })
        };
        if self.bus == BusEngine::Embedded {
            return refuse("bus", SHARED_BUS);
        }
        if matches!(
            self.store,
            StoreEngine::Embedded | StoreEngine::EmbeddedAt(_)
        ) {
            return refuse("store", SHARED_STORE);
        }
        Ok(())
    }

    /// Connects to every engine. Embedded engines keep their state under `data_dir` when one is
    /// given, in memory otherwise.
    pub async fn connect(&self, data_dir: Option<&Path>) -> Result<Ports, EngineError> {
        let store: Arc<dyn Store> = match &self.store {
            StoreEngine::Postgres(url) => Arc::new(
                PostgresStore::connect(url, PostgresOptions::default())
                    .await
                    .map_err(EngineError::Postgres)?,
            ),
            StoreEngine::Scylla(options) => Arc::new(
                ScyllaStore::connect(options.clone())
                    .await
                    .map_err(EngineError::Scylla)?,
            ),
            StoreEngine::EmbeddedAt(dir) => {
                Arc::new(EmbeddedStore::open(dir).map_err(EngineError::EmbeddedStore)?)
            }
            StoreEngine::Embedded => match data_dir {
                Some(dir) => Arc::new(
                    EmbeddedStore::open(&dir.join("store")).map_err(EngineError::EmbeddedStore)?,
                ),
                None => Arc::new(EmbeddedStore::in_memory().map_err(EngineError::EmbeddedStore)?),
            },
        };
        let bus: Arc<dyn Bus> = match &self.bus {
            BusEngine::Redis(url) => Arc::new(RedisBus::connect(url).await?),
            BusEngine::Fluvio(url) => {
                Arc::new(FluvioBus::connect(url).await.map_err(EngineError::Fluvio)?)
            }
            BusEngine::Embedded => match data_dir {
                Some(dir) => {
                    Arc::new(EmbeddedBus::open(&dir.join("bus")).map_err(EngineError::EmbeddedBus)?)
                }
                None => Arc::new(EmbeddedBus::in_memory()),
            },
        };
        let coord: Arc<dyn Coord> = match &self.coord {
            CoordEngine::Redis(url) => Arc::new(RedisCoord::connect(url).await?),
            CoordEngine::Embedded => Arc::new(EmbeddedCoord::new()),
        };
        Ok(Ports { bus, store, coord })
    }
}

/// The engines in one line, as logs and banners show them: passwords masked.
impl std::fmt::Display for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bus = match &self.bus {
            BusEngine::Embedded => "embedded".to_owned(),
            BusEngine::Redis(url) | BusEngine::Fluvio(url) => redact(url),
        };
        let store = match &self.store {
            StoreEngine::Embedded => "embedded".to_owned(),
            StoreEngine::EmbeddedAt(dir) => format!("embedded:{}", dir.display()),
            StoreEngine::Postgres(url) => redact(url),
            StoreEngine::Scylla(options) => {
                let user = options
                    .credentials
                    .as_ref()
                    .map(|(user, _)| format!("{user}:***@"))
                    .unwrap_or_default();
                format!(
                    "scylla://{user}{}/{}",
                    options.nodes.join(","),
                    options.keyspace
                )
            }
        };
        let coord = match &self.coord {
            CoordEngine::Embedded => "embedded".to_owned(),
            CoordEngine::Redis(url) => redact(url),
        };
        write!(f, "bus {bus}, store {store}, coord {coord}")
    }
}

/// `scheme://user:secret@host` becomes `scheme://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn scheme(url: &str) -> &str {
    url.split([':', '/']).next().unwrap_or_default()
}
