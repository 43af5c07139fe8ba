//! The Perspective routes in the OpenAPI document (`/openapi.json`, `docs/openapi.json`), from
//! the message types in [`super::wire`]; merged into the HTTP side's document by
//! `crate::http_api::document`. (Google's own clients read the discovery document instead.)

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::attributes::AttributeInfo;
use super::wire::{
    AnalyzeCommentRequest, AnalyzeCommentResponse, SuggestCommentScoreRequest,
    SuggestCommentScoreResponse,
};

/// The Perspective API routes.
#[derive(OpenApi)]
#[openapi(paths(analyze, suggestscore, attributes, discovery))]
pub struct PerspectiveDoc;

/// Google's error shape, with Perspective's error type in `details[0].errorType`.
#[derive(Serialize, ToSchema)]
pub struct GoogleError {
    /// `{"code", "message", "status", "details": [{"@type", "errorType"}]}`.
    #[schema(value_type = Object)]
    pub error: serde_json::Value,
}

/// The attribute table.
#[derive(Serialize, ToSchema)]
pub struct AttributeList {
    /// Attribute → head, with the scripts each head was trained on.
    pub attributes: Vec<AttributeInfo>,
    /// The serving model.
    #[schema(value_type = Object)]
    pub model: serde_json::Value,
}

/// Scores a comment for the requested attributes (Perspective's `comments:analyze`).
///
/// Scores follow the detected script, not `languages`; the key comes from `?key=` or the
/// `x-goog-api-key` header.
#[utoipa::path(
    post,
    path = "/v1alpha1/comments:analyze",
    request_body(content = AnalyzeCommentRequest, content_type = "application/json"),
    params(("key" = Option<String>, Query, description = "API key (or the x-goog-api-key header)")),
    responses(
        (status = 200, description = "The scores; the x-moderato-model header names the model", body = AnalyzeCommentResponse),
        (status = 400, description = "COMMENT_EMPTY, COMMENT_TOO_LONG, NO_REQUESTED_ATTRIBUTES, ATTRIBUTE_NOT_SUPPORTED, LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE, or a body that is not a request", body = GoogleError),
        (status = 403, description = "Missing or unknown API key", body = GoogleError),
        (status = 503, description = "No model loaded yet, or the queue of long comments is full (with Retry-After)", body = GoogleError),
    )
)]
#[allow(dead_code)] // documentation only: the handler is `perspective::analyze_route`
fn analyze() {}

/// Records a moderator's verdict (Perspective's `comments:suggestscore`) as a feedback line.
#[utoipa::path(
    post,
    path = "/v1alpha1/comments:suggestscore",
    request_body(content = SuggestCommentScoreRequest, content_type = "application/json"),
    params(("key" = Option<String>, Query, description = "API key (or the x-goog-api-key header)")),
    responses(
        (status = 200, description = "Written to the feedback file", body = SuggestCommentScoreResponse),
        (status = 400, description = "A malformed suggestion", body = GoogleError),
        (status = 403, description = "Missing or unknown API key", body = GoogleError),
        (status = 501, description = "The server keeps no feedback file", body = GoogleError),
    )
)]
#[allow(dead_code)] // documentation only: the handler is `perspective::suggest_route`
fn suggestscore() {}

/// The attributes this server scores and the heads behind them.
#[utoipa::path(
    get,
    path = "/v1alpha1/attributes",
    responses((status = 200, description = "The attribute table", body = AttributeList))
)]
#[allow(dead_code)] // documentation only: the handler is `perspective::attributes_route`
fn attributes() {}

/// The Google API discovery document of the Perspective routes, rooted at this server.
#[utoipa::path(
    get,
    path = "/$discovery/rest",
    params(("version" = Option<String>, Query, description = "v1alpha1")),
    responses(
        (status = 200, description = "A discovery#restDescription", body = Object),
        (status = 404, description = "Another version", body = GoogleError),
    )
)]
#[allow(dead_code)] // documentation only: the handler is `perspective::discovery_route`
fn discovery() {}
