//! The limits of the HTTP side (plain settings, so the service config and the server share them without importing each other): connections, timeouts, body size, classification queue and
//! shutdown deadline. One plain struct, so every command that serves HTTP (`serve`, `demo`,
//! `monitor`, `api`) applies the same ones and can set them from its flags.

use std::time::Duration;

/// Largest request body by default (`POST /v1/classify` and any other route).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Limits of one HTTP server; [`HttpLimits::new`] gives the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once. At the cap the server stops accepting: new connections wait
    /// in the kernel's accept backlog until one closes (they are not refused).
    pub max_connections: usize,
    /// Time a client has to send a request's whole head (request line and headers), counted
    /// from when the server starts waiting for it; so it is also how long an idle keep-alive
    /// connection is kept. A client that is slower (slowloris) is disconnected.
    pub header_read_timeout: Duration,
    /// Largest request head; a larger one gets 431 and the connection is closed.
    pub max_header_bytes: usize,
    /// Time from a request's head to its response's head (reading the body included); past it
    /// the answer is 408. A streamed body (`/events`) is not limited by it once it has started.
    pub request_timeout: Duration,
    /// Largest request body: a larger `Content-Length` gets 413 before any of the body is read,
    /// and a body without one (chunked) gets 413 as soon as it passes the limit.
    pub max_body_bytes: usize,
    /// Classification requests scored at once.
    pub classify_concurrency: usize,
    /// Classification requests that may wait for a turn; any more get 503 with `Retry-After`.
    pub classify_queue: usize,
    /// Once shutdown starts, connections have this long to finish their requests (live feeds
    /// end at once); then the rest are dropped.
    pub shutdown_timeout: Duration,
}

impl HttpLimits {
    /// The defaults: 1,024 connections, 10 s for a request head of at most 16 KiB, 30 s per
    /// request, 1 MiB bodies, 4 classifications at once with 16 waiting, 5 s to shut down.
    pub const fn new() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            classify_concurrency: 4,
            classify_queue: 16,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self::new()
    }
}
