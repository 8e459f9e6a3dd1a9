//! The shopper-facing HTTP API. Thin by design: it validates, reads the store, sends commands
//! and awaits their results; workers make every decision that could race.

pub mod admission;
pub mod auth;
pub mod bulkhead;
pub mod error;
pub mod follow;
pub mod idempotency;
pub mod keyring;
pub mod metrics;
pub mod rate_limit;
pub mod results;
pub mod room_feed;
mod routes;
pub mod seat_feed;
pub mod state;
pub mod tls;
pub mod waiting_room;

pub use rate_limit::{ClientAddress, RateLimits};
pub use routes::accounts::{ensure_admin, AdminAccount};
pub use routes::routes;
pub use state::{AppState, GatewayConfig, ManifestSink, Secrets};
pub use tls::{ServerTls, TlsError};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot follow command results")]
    Results(#[from] mercato_core::bus::BusError),
}

/// Binds `addr`, starts following command results, and serves until `shutdown` turns true.
/// Returns the bound address (useful with port 0) and the server task. With `tls`, every
/// connection is TLS; without, plain HTTP (behind an ingress that terminates TLS).
pub async fn serve(
    state: Arc<AppState>,
    addr: SocketAddr,
    tls: Option<ServerTls>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), GatewayError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| GatewayError::Bind { addr, cause })?;
    let bound = listener
        .local_addr()
        .map_err(|cause| GatewayError::Bind { addr, cause })?;
    results::start_consumer(
        Arc::clone(&state.ports.bus),
        Arc::clone(&state.waiters),
        &format!("gateway-{}", uuid::Uuid::new_v4().simple()),
        shutdown.clone(),
    )
    .await?;
    seat_feed::start_reader(
        Arc::clone(&state.ports.bus),
        Arc::clone(&state.seat_feed),
        &format!("gateway-seats-{}", uuid::Uuid::new_v4().simple()),
        shutdown.clone(),
    )
    .await?;
    waiting_room::start_admitter(Arc::clone(&state), shutdown.clone());
    let mut stop = shutdown;
    let stopped = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    let task = match tls {
        Some(tls) => tokio::spawn(tls::serve(listener, tls, routes(state), stopped)),
        None => tokio::spawn(
            warp::serve(routes(state))
                .incoming(listener)
                .graceful(stopped)
                .run(),
        ),
    };
    Ok((bound, task))
}
