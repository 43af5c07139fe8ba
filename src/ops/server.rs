//! The HTTP server: an accept loop of our own over hyper's HTTP/1 connections (keep-alive on),
//! so that [`HttpLimits`] hold where `axum::serve` sets none of them: a deadline for a request
//! head (slowloris clients are dropped), a cap on connections, a timeout and a body limit on
//! every request, bounded buffers per connection, and a deadline for shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::shutdown::Shutdown;
use crate::http_limits::HttpLimits;

/// Most bytes one connection buffers, each way (hyper's default is about 400 KiB). hyper stops
/// polling a response body while its write buffer is full, so a client that never reads pins
/// at most this much here (plus the kernel's socket buffer).
const CONNECTION_BUFFER_BYTES: usize = 64 << 10;
/// Pause after an accept error that is not about one connection (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long dropped connections get to let go of their slots after the shutdown deadline.
const DROP_GRACE: Duration = Duration::from_secs(1);

type Service = TowerToHyperService<Router>;

/// Serves `router` on `listener` under `limits` until `shutdown` is triggered. Then it stops
/// accepting, lets open connections finish their requests (responses that stream until
/// `shutdown`, such as `/events`, end at once) and drops whatever is still open after
/// `limits.shutdown_timeout`. Every route of `router` gets the request timeout and body limit.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let router = router
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let service = TowerToHyperService::new(router);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(CONNECTION_BUFFER_BYTES.max(limits.max_header_bytes));
    let http = Arc::new(http);
    // Semaphore permits are counted in u32 (`acquire_many`).
    let cap = limits.max_connections.clamp(1, u32::MAX as usize) as u32;
    let slots = Arc::new(Semaphore::new(cap as usize));
    let deadline = Shutdown::new();
    let stopping = shutdown.triggered();
    tokio::pin!(stopping);
    loop {
        // At the cap, wait for a connection to close before accepting the next one.
        let slot = tokio::select! {
            biased;
            () = &mut stopping => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let (http, service) = (Arc::clone(&http), service.clone());
        let (shutdown, deadline) = (shutdown.clone(), deadline.clone());
        tokio::spawn(connection(stream, http, service, shutdown, deadline, slot));
    }
    drop(listener);
    let open = cap as usize - slots.available_permits();
    if open > 0 {
        tracing::info!(open, "http: waiting for open connections");
    }
    let all_closed = tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(cap));
    if all_closed.await.is_err() {
        let open = cap as usize - slots.available_permits();
        tracing::warn!(
            open,
            "http: shutdown deadline passed; dropping the open connections"
        );
        deadline.trigger();
        let _ = tokio::time::timeout(DROP_GRACE, slots.acquire_many(cap)).await;
    }
    Ok(())
}

/// One connection until it ends, or until shutdown (gracefully) and its deadline (dropped).
async fn connection(
    stream: TcpStream,
    http: Arc<http1::Builder>,
    service: Service,
    shutdown: Shutdown,
    deadline: Shutdown,
    _slot: OwnedSemaphorePermit,
) {
    // Small writes (SSE events, short answers) go out at once.
    let _ = stream.set_nodelay(true);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = shutdown.triggered() => {
            // Finish the request in flight, then close (an idle connection closes at once).
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                ended = conn.as_mut() => ended,
                () = deadline.triggered() => return,
            }
        }
    };
    if let Err(e) = ended {
        // Timeouts, resets, malformed requests: the client's doing, worth no more than debug.
        tracing::debug!(error = %e, "http: connection closed with an error");
    }
}

/// Whether an accept error concerns only the connection being accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}
