//! The HTTP side of `serve` and `monitor` (axum): `/metrics`, `/healthz`, `/readyz`,
//! `POST /v1/classify`, the dashboard page `/` with its data `/api/state` and live feed
//! `/events` (server-sent events). Handlers only read shared state; the Kafka loop never waits
//! on them. `/openapi.json` documents them (`crate::http_api`, with the Perspective routes); [`super::server`] serves them
//! under [`HttpLimits`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::value::RawValue;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::admission::Admission;
use super::live::FeedEvent;
use super::shutdown::Shutdown;
use super::state::DashboardState;
use super::telemetry::Telemetry;
use crate::classify::Comment;
use crate::http_limits::{HttpLimits, DEFAULT_MAX_BODY_BYTES};
use crate::model::Scratch;
use crate::policy::InputPolicy;
use crate::record::classify as record_of;

/// The dashboard page (self-contained: no CDN, works offline).
const DASHBOARD: &str = include_str!("dashboard.html");
/// Largest `POST /v1/classify` body by default (`HttpLimits::max_body_bytes`).
pub const MAX_BODY_BYTES: usize = DEFAULT_MAX_BODY_BYTES;
/// Most comments in one `POST /v1/classify`.
pub const MAX_BATCH: usize = 1000;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct App {
    /// Metrics, live view, health.
    pub telemetry: Arc<Telemetry>,
    /// Domain for comments that name none.
    pub domain: Option<String>,
    /// Longer texts are classified on this many leading characters (as in the stream).
    pub max_text_chars: usize,
    /// Classification requests served at once and waiting (each may hold a 1 MiB body).
    pub permits: Arc<Admission>,
    /// Keys `/v1/classify` accepts (`None`: any).
    pub keys: Option<Arc<super::keys::ApiKeys>>,
    /// Connection, time, size and queue limits of the server.
    pub limits: HttpLimits,
    /// Ends the live feeds; the server that serves these routes triggers it when it stops.
    pub shutdown: Shutdown,
}

impl App {
    /// Handlers over `telemetry`, with the stream's defaults and the default limits.
    pub fn new(telemetry: Arc<Telemetry>, domain: Option<String>, max_text_chars: usize) -> Self {
        let limits = HttpLimits::new();
        Self {
            telemetry,
            domain,
            max_text_chars,
            permits: Arc::new(admission(&limits)),
            keys: None,
            limits,
            shutdown: Shutdown::new(),
        }
    }

    /// The same handlers under `limits`.
    pub fn with_limits(self, limits: HttpLimits) -> Self {
        Self {
            permits: Arc::new(admission(&limits)),
            limits,
            ..self
        }
    }
}

fn admission(limits: &HttpLimits) -> Admission {
    Admission::new(limits.classify_concurrency, limits.classify_queue)
}

/// The routes (serve them with [`super::serve_on`] or [`super::start_http`]).
pub fn router(app: App) -> Router {
    // What carries comment text or costs CPU needs a key when keys are configured: the
    // dashboard's data (the page itself is static) and classification.
    let keyed = Router::new()
        .route("/v1/classify", post(classify))
        .route("/api/state", get(state))
        .route("/events", get(events))
        .route_layer(axum::middleware::from_fn_with_state(
            app.keys.clone(),
            super::keys::require_plain,
        ));
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(keyed)
        .layer(DefaultBodyLimit::max(app.limits.max_body_bytes))
        .with_state(app)
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn metrics(State(app): State<App>) -> Response {
    app.telemetry.refresh();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.telemetry.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    let (ready, parts) = app.telemetry.health.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(parts)).into_response()
}

async fn state(State(app): State<App>) -> Json<DashboardState> {
    Json(app.telemetry.state())
}

/// `/events`: the latest comments, then each new one as it is published, until shutdown. A
/// client that falls behind skips what it missed (the channel is bounded) rather than holding
/// it; one that reconnects with `Last-Event-ID` gets only what it has not seen.
async fn events(
    State(app): State<App>,
    headers: HeaderMap,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let live = &app.telemetry.live;
    let epoch = feed_epoch(live.started_at);
    let seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once('.'))
        .filter(|(e, _)| *e == epoch)
        .and_then(|(_, seq)| seq.parse::<u64>().ok())
        .unwrap_or(0);
    let (recent, later) = live.feed();
    let backlog = tokio_stream::iter(recent).filter(move |e| e.seq > seen);
    let updates = BroadcastStream::new(later).filter_map(Result::ok);
    let stream = backlog.chain(updates).map(move |e: FeedEvent| {
        let id = format!("{epoch}.{}", e.seq);
        Ok(Event::default().event("comment").id(id).data(&*e.json))
    });
    Sse::new(app.shutdown.until(stream))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// This process's part of an event id, so a page that reconnects to a restarted server gets
/// its whole backlog rather than skipping events by a number from another process.
fn feed_epoch(started_at: f64) -> String {
    format!("{}", (started_at * 1000.0) as u64)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

pub use super::error_body::ErrorBody;

/// `POST /v1/classify`: one comment object, or an array of up to `MAX_BATCH`; the same records
/// as `moderato classify` prints.
async fn classify(State(app): State<App>, body: Bytes) -> Response {
    let Some(slot) = app.telemetry.health.model.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "model not loaded yet".into(),
        );
    };
    let turn = match app.permits.admit().await {
        Ok(turn) => turn,
        Err(refused) => return refused.into_response(),
    };
    let loaded = slot.current();
    let policy = InputPolicy {
        default_domain: app.domain.clone(),
        max_text_chars: app.max_text_chars,
    };
    // Parsing and scoring are CPU work: off the async runtime.
    let answer = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, (StatusCode, String)> {
        // The turn goes with the work: it is given back when the work ends, not when a client
        // that hung up (or the request timeout) drops this handler.
        let _turn = turn;
        // Raw JSON per comment, so each is parsed as `classify` parses a line (its id kept as
        // written, a long number included).
        let not_json =
            |e: serde_json::Error| (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}"));
        let raw: Box<RawValue> = serde_json::from_slice(&body).map_err(not_json)?;
        let (items, single) = match raw.get().trim_start().bytes().next() {
            Some(b'[') => (
                serde_json::from_str::<Vec<Box<RawValue>>>(raw.get()).map_err(not_json)?,
                false,
            ),
            Some(b'{') => (vec![raw], true),
            _ => {
                let msg = "body must be a comment object or an array of them";
                return Err((StatusCode::BAD_REQUEST, msg.into()));
            }
        };
        if items.len() > MAX_BATCH {
            let msg = format!(
                "{} comments in one request; at most {MAX_BATCH}",
                items.len()
            );
            return Err((StatusCode::PAYLOAD_TOO_LARGE, msg));
        }
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut c = Comment::parse(item.get().as_bytes()).map_err(|e| {
                let at = if single {
                    String::new()
                } else {
                    format!("comment {i}: ")
                };
                (StatusCode::UNPROCESSABLE_ENTITY, format!("{at}{e}"))
            })?;
            let (model, model_ref) = (&loaded.model, &loaded.model_ref);
            let record = record_of(model, model_ref, &policy, &mut c, &mut scratch, 0);
            out.push(record);
        }
        // Serialized from the records themselves, so scores print exactly as `classify`'s.
        let body = if single {
            serde_json::to_vec(&out.pop())
        } else {
            serde_json::to_vec(&out)
        };
        Ok(body.unwrap_or_default())
    })
    .await;
    match answer {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err((status, message))) => error(status, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
