//! A drop-in, self-hosted Perspective API: the `commentanalyzer` v1alpha1 routes over the
//! serving model, for `moderato api` and the HTTP side of `moderato serve`.
//!
//! - [`wire`]: the request and response messages.
//! - [`attributes`]: which head answers which attribute (TOXICITY → offensive, ...).
//! - [`analyze`]: `comments:analyze`, scored from the detected language.
//! - [`suggest`]: `comments:suggestscore`, a verdict → a feedback line.
//! - [`discovery`]: the discovery document Google's generated clients are built from.
//! - [`error`]: Google's error shape with Perspective's error types.
//!
//! Routes: `POST /v1alpha1/comments:analyze`, `POST /v1alpha1/comments:suggestscore`,
//! `GET /v1alpha1/attributes`, `GET /$discovery/rest?version=v1alpha1`.

pub mod analyze;
pub mod attributes;
pub mod discovery;
pub mod error;
pub mod openapi;
pub mod suggest;
pub mod wire;

use std::cell::RefCell;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::clock::now;
use crate::model::Scratch;
use crate::ops::admission::RETRY_AFTER_SECS;
use crate::ops::http::App;
use crate::ops::keys::{self, ApiKeys};
use crate::ops::live::Item;
use crate::policy::InputPolicy;
use crate::stream::reload::Loaded;
use analyze::Analysis;
use attributes::Attributes;
use error::ApiError;
use suggest::FeedbackSink;

/// Response header naming the model that answered: `name version sha256`.
pub const MODEL_HEADER: &str = "x-moderato-model";
/// Comments up to this many bytes are scored on the async worker (a few tens of
/// microseconds); longer ones go to the blocking pool so they cannot stall other requests.
const INLINE_BYTES: usize = 2048;

/// What the Perspective routes share.
pub struct Perspective {
    /// The HTTP side's state: telemetry (with the serving model), default domain, text limit.
    pub app: App,
    /// Attribute → head table.
    pub attributes: Attributes,
    /// Where suggestions are written (`None`: `suggestscore` is refused).
    pub feedback: Option<Arc<FeedbackSink>>,
    /// Accepted keys (`None`: any key, which the commands allow only on loopback).
    pub keys: Option<ApiKeys>,
    /// Base URL written into the discovery document (default: from the request's `Host`).
    pub public_url: Option<String>,
}

/// The routes, with the key check in front of the two methods.
pub fn routes(p: Arc<Perspective>) -> Router {
    let methods = Router::new()
        .route("/v1alpha1/comments:analyze", post(analyze_route))
        .route("/v1alpha1/comments:suggestscore", post(suggest_route))
        .route_layer(axum::middleware::from_fn_with_state(
            p.keys.clone().map(Arc::new),
            require_key,
        ));
    Router::new()
        .route("/v1alpha1/attributes", get(attributes_route))
        .route("/$discovery/rest", get(discovery_route))
        .merge(methods)
        .with_state(p)
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON payload received: {e}")))
}

fn serving(p: &Perspective) -> Result<Arc<Loaded>, ApiError> {
    match p.app.telemetry.health.model.get() {
        Some(slot) => Ok(slot.current()),
        None => Err(ApiError::unavailable("the model is still loading", 1)),
    }
}

/// `body` as JSON, with the header naming the model that answered.
fn answered(loaded: &Loaded, body: impl serde::Serialize) -> Response {
    let r = &loaded.model_ref;
    let model = HeaderValue::from_str(&format!("{} {} {}", r.name, r.version, r.sha256))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let mut response = Json(body).into_response();
    response.headers_mut().insert(MODEL_HEADER, model);
    response
}

async fn analyze_route(State(p): State<Arc<Perspective>>, body: Bytes) -> Response {
    match answer_analyze(&p, body).await {
        Ok((loaded, analysis)) => answered(&loaded, analysis.response),
        Err(e) => {
            tracing::debug!(status = e.status, error_type = ?e.error_type, "analyze refused");
            e.into_response()
        }
    }
}

async fn answer_analyze(
    p: &Arc<Perspective>,
    body: Bytes,
) -> Result<(Arc<Loaded>, Analysis), ApiError> {
    let req: wire::AnalyzeCommentRequest = parse(&body)?;
    let loaded = serving(p)?;
    let policy = InputPolicy {
        default_domain: p.app.domain.clone(),
        max_text_chars: p.app.max_text_chars,
    };
    let do_not_store = req.do_not_store;
    let long = req
        .comment
        .as_ref()
        .and_then(|c| c.text.as_ref())
        .is_some_and(|t| t.len() > INLINE_BYTES);
    let analysis = if long {
        // The same bounded turns as `/v1/classify`: a flood of long comments is refused with
        // 503 and `Retry-After` instead of piling up in the blocking pool.
        let turn = p.app.permits.admit().await.map_err(|refused| {
            ApiError::unavailable(&refused.to_string(), RETRY_AFTER_SECS as u32)
        })?;
        let (p2, loaded2) = (Arc::clone(p), Arc::clone(&loaded));
        tokio::task::spawn_blocking(move || {
            let _turn = turn; // given back when the work ends, even if the client left
            let mut scratch = Scratch::default();
            analyze::analyze(req, &loaded2, &p2.attributes, &policy, &mut scratch)
        })
        .await
        .map_err(|e| ApiError::internal(format!("scoring task failed: {e}")))??
    } else {
        SCRATCH.with_borrow_mut(|scratch| {
            analyze::analyze(req, &loaded, &p.attributes, &policy, scratch)
        })?
    };
    remember(p, &loaded, &analysis, do_not_store);
    Ok((loaded, analysis))
}

/// Counts an analyzed comment in the metrics, and unless the request said `doNotStore`, shows
/// it in the live view and keeps its text (by comment id) for the feedback join.
fn remember(p: &Perspective, loaded: &Loaded, a: &Analysis, do_not_store: bool) {
    let telemetry = &p.app.telemetry;
    let heads: Vec<String> = loaded
        .model
        .heads()
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let version = &loaded.model_ref.version;
    let token = a.response.client_token.as_deref().unwrap_or_default();
    let id = suggest::comment_id(token);
    let preview: String = if do_not_store {
        String::new()
    } else {
        crate::lang::char_prefix(&a.text, 280).to_string()
    };
    let item = Item {
        id: if do_not_store { "" } else { id },
        text: (!do_not_store).then_some(preview.as_str()),
        lang: a.script.code(),
        scores: &a.scores,
        stance: None,
        dead: None,
        partition: -1,
        offset: -1,
    };
    if do_not_store {
        // Counters only: no id, no text, nothing in the feed.
        telemetry.count_batch(&heads, version, &[item]);
        return;
    }
    telemetry.record_batch(now(), &heads, version, &[item]);
    if let (Some(recent), false) = (&telemetry.recent, id.is_empty()) {
        recent.insert(id, &a.text, None);
    }
}

async fn suggest_route(State(p): State<Arc<Perspective>>, body: Bytes) -> Response {
    let result = async {
        let req: wire::SuggestCommentScoreRequest = parse(&body)?;
        let loaded = serving(&p)?;
        let (lines, response) = suggest::suggestion(req, &loaded.model, &p.attributes, now())?;
        let Some(sink) = p.feedback.clone() else {
            return Err(ApiError::unimplemented(
                "this server keeps no feedback: start it with --feedback-file PATH",
            ));
        };
        tokio::task::spawn_blocking(move || sink.append(&lines))
            .await
            .map_err(|e| ApiError::internal(format!("feedback task failed: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot append to the feedback file");
                ApiError::unavailable("cannot write the feedback file", 5)
            })?;
        let counted = &p.app.telemetry.metrics.feedback;
        counted.with_label_values(&["suggestscore"]).inc();
        Ok::<_, ApiError>((loaded, response))
    }
    .await;
    match result {
        Ok((loaded, response)) => answered(&loaded, response),
        Err(e) => e.into_response(),
    }
}

async fn attributes_route(State(p): State<Arc<Perspective>>) -> Response {
    match serving(&p) {
        Ok(loaded) => Json(json!({
            "attributes": p.attributes.list(&loaded.model),
            "model": loaded.model_ref,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Query of the discovery route.
#[derive(serde::Deserialize)]
struct DiscoveryQuery {
    version: Option<String>,
}

async fn discovery_route(
    State(p): State<Arc<Perspective>>,
    Query(q): Query<DiscoveryQuery>,
    headers: HeaderMap,
) -> Response {
    if q.version
        .as_deref()
        .is_some_and(|v| v != discovery::VERSION)
    {
        return ApiError::not_found(&format!(
            "only {} {} is served",
            discovery::NAME,
            discovery::VERSION
        ))
        .into_response();
    }
    let root = match &p.public_url {
        Some(url) => format!("{}/", url.trim_end_matches('/')),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}/")
        }
    };
    Json(discovery::document(&root)).into_response()
}

/// Middleware of the Perspective routes: a request without an accepted key gets 403 in
/// Google's error shape. Use with `axum::middleware::from_fn_with_state(keys, require_key)`.
pub async fn require_key(
    axum::extract::State(keys): axum::extract::State<Option<Arc<ApiKeys>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match keys::refusal(keys.as_deref(), req.headers(), req.uri()) {
        Some(message) => ApiError::permission_denied(message).into_response(),
        None => next.run(req).await,
    }
}
