//! Operating moderato: Prometheus metrics, health checks, synchronous classification over HTTP
//! and a live dashboard, for `serve` and `monitor` alike.
//!
//! - [`metrics`]: the Prometheus registry (names, labels, buckets).
//! - [`live`]: the dashboard's rolling view of the label stream and its event feed.
//! - [`drift`]: flag-rate drift against a trailing baseline.
//! - [`telemetry`]: the serve loop's observer feeding both, plus readiness.
//! - [`http`]: the axum routes, whose error answers are [`error_body`].
//! - [`keys`]: API keys of the classification routes.
//! - [`openapi`]: the OpenAPI document of those routes, from their Rust types.
//! - [`server`]: the accept loop that serves them under [`HttpLimits`], until a [`shutdown`].
//! - [`admission`]: the bounded queue of `POST /v1/classify`.

pub mod admission;
pub mod drift;
pub mod error_body;
pub mod http;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod telemetry;

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::http_limits::HttpLimits;
pub use server::serve_on;
pub use shutdown::Shutdown;
pub use telemetry::Telemetry;

/// A running HTTP side; dropping `stop` (or sending on it) shuts it down, and `task` ends
/// within the limits' shutdown timeout after that.
pub struct HttpHandle {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// Sending (or dropping) stops the server.
    pub stop: oneshot::Sender<()>,
    /// The server task.
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` now (so a taken port fails at start) and serves `app`'s routes in a task,
/// under `app.limits`.
pub async fn start_http(addr: SocketAddr, app: http::App) -> std::io::Result<HttpHandle> {
    start_router(addr, &app, http::router(app.clone())).await
}

/// Like [`start_http`], for `router`: `app`'s routes with more merged in (e.g.
/// `http::router(app.clone()).merge(other)`), served under `app.limits`; stopping it ends
/// `app`'s live feeds too (`app.shutdown`).
pub async fn start_router(
    addr: SocketAddr,
    app: &http::App,
    router: axum::Router,
) -> std::io::Result<HttpHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = app.shutdown.clone();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        // Sent or dropped: either way, stop.
        let _ = stopped.await;
        trigger.trigger();
    });
    let task = tokio::spawn(serve_on(listener, router, app.limits, shutdown));
    tracing::info!(%addr, "http: /metrics /healthz /readyz /v1/classify /api/state /events, dashboard at /");
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
