//! Operating moderato: Prometheus metrics, health checks, synchronous classification over HTTP
//! and a live dashboard, for `serve` and `monitor` alike.
//!
//! - [`metrics`]: the Prometheus registry (names, labels, buckets).
//! - [`live`]: the dashboard's rolling view of the label stream and its event feed.
//! - [`drift`]: flag-rate drift against a trailing baseline.
//! - [`telemetry`]: the serve loop's observer feeding both, plus readiness.
//! - [`http`]: the axum routes.
//! - [`openapi`]: the OpenAPI document of those routes, from their Rust types.
//! - [`monitor`]: `moderato monitor`, the same view over a label topic.

pub mod drift;
pub mod http;
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve_on(listener, app, async move {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "http: /metrics /healthz /readyz /v1/classify /openapi.json /api/state /events, dashboard at /");
    Ok(HttpHandle { addr, stop, task })
}
