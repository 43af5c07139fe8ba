//! Operating moderato: Prometheus metrics, health checks, synchronous classification over HTTP
//! and a live dashboard, for `serve` and `monitor` alike.
//!
//! - [`metrics`]: the Prometheus registry (names, labels, buckets).
//! - [`live`]: the dashboard's rolling view of the label stream and its event feed.
//! - [`drift`]: flag-rate drift against a trailing baseline.
//! - [`telemetry`]: the serve loop's observer feeding both, plus readiness.
//! - [`http`]: the axum routes.
//! - [`keys`]: API keys of the classification routes.
//! - [`openapi`]: the OpenAPI document of those routes, from their Rust types.
//! - [`monitor`]: `moderato monitor`, the same view over a label topic.

pub mod drift;
pub mod http;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod monitor;
pub mod openapi;
pub mod telemetry;

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use telemetry::Telemetry;

/// A running HTTP side; dropping `stop` (or sending on it) shuts it down.
pub struct HttpHandle {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// Sending (or dropping) stops the server.
    pub stop: oneshot::Sender<()>,
    /// The server task.
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` now (so a taken port fails at start) and serves the HTTP side in a task.
pub async fn start_http(addr: SocketAddr, app: http::App) -> std::io::Result<HttpHandle> {
    start_router(addr, http::router(app)).await
}

/// Like [`start_http`], for a router with more routes merged in (the Perspective API's).
pub async fn start_router(addr: SocketAddr, router: axum::Router) -> std::io::Result<HttpHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve_router(listener, router, async move {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "http: /metrics /healthz /readyz /v1/classify /openapi.json /api/state /events, dashboard at /");
    Ok(HttpHandle { addr, stop, task })
}

/// Whether serving the classification routes on `addr` without keys is allowed: on a loopback
/// address, or when the operator said `--insecure-no-auth`.
pub fn check_auth(
    addr: SocketAddr,
    keys: Option<&keys::ApiKeys>,
    insecure_no_auth: bool,
) -> Result<(), String> {
    if keys.is_some() || insecure_no_auth || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--http {addr} would serve the classification API to the network without keys: give \
         --api-keys FILE (one key, or its SHA-256, per line), bind a loopback address such as \
         127.0.0.1, or say --insecure-no-auth"
    ))
}
