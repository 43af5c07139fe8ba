//! The OpenAPI document of the HTTP side, built from the Rust types the handlers read and write
//! (`Comment`, `Record`, `ErrorBody`, `Readiness`), served at `GET /openapi.json` and checked in
//! as `docs/openapi.json` (`tests/contract.rs` fails when they differ).
//!
//! To document another route: write a `#[utoipa::path(...)]` item for it (here, as below, or on
//! its handler) and list it in [`ApiDoc`]'s `paths(...)`; the schemas of its bodies are collected
//! from it. A module with its own `#[derive(OpenApi)]` can instead be merged in
//! `crate::http_api::document`, as the Perspective routes are.
//! Then regenerate the checked-in files with `MODERATO_UPDATE_DOCS=1 cargo test --release --test
//! contract`.

use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::error_body::ErrorBody;
use super::telemetry::Readiness;
use crate::classify::Comment;
use crate::record::Record;

/// The routes of `serve` and `monitor` that other programs call.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "moderato",
        description = "Toxicity and stance labels for reader comments. Every record carries \
                       `schema_version`; the record alone is also published as a JSON Schema \
                       (`docs/record.schema.json`)."
    ),
    paths(classify, healthz, readyz, metrics, openapi_json)
)]
pub struct ApiDoc;

/// The body of `POST /v1/classify`: one comment, or an array of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(example = json!({"id": "c-1", "text": "What a thoughtful article, thank you", "meta": {"thread": "t-1"}}))]
pub enum ClassifyRequest {
    /// One comment.
    One(Comment),
    /// Up to 1,000 comments, answered in order.
    Many(Vec<Comment>),
}

/// The answer of `POST /v1/classify`: a record for a comment, an array for an array.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ClassifyResponse {
    /// The record of the one comment.
    One(Box<Record>),
    /// The records of the comments, in order.
    Many(Vec<Record>),
}

/// Labels one comment or a batch.
///
/// The same records as `moderato classify` prints, under the same input policy (the default
/// domain and the text limit of `serve`).
#[utoipa::path(
    post,
    path = "/v1/classify",
    request_body(content = ClassifyRequest, content_type = "application/json"),
    params(("key" = Option<String>, Query, description = "API key, when the server has --api-keys (or the x-goog-api-key header)")),
    responses(
        (status = 200, description = "The records, in input order", body = ClassifyResponse),
        (status = 403, description = "Missing or unknown API key (only with --api-keys)", body = ErrorBody),
        (status = 400, description = "The body is not JSON, or not a comment or an array", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB (plain text) or holds over 1,000 comments (JSON)",
            content((ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 422, description = "A comment has no usable `text`; the message names its index", body = ErrorBody),
        (status = 503, description = "No model loaded yet, or the queue is full (with Retry-After)", body = ErrorBody),
        (status = 500, description = "Classification failed (a bug)", body = ErrorBody),
    )
)]
#[allow(dead_code)] // documentation only: the handler is `http::classify`
fn classify() {}

/// Liveness: 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain", example = "ok\n"))
)]
#[allow(dead_code)] // documentation only: the handler is in `http::router`
fn healthz() {}

/// Readiness.
///
/// Ready once the model is loaded, partitions are assigned and a broker answers.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the failing checks are false", body = Readiness),
    )
)]
#[allow(dead_code)] // documentation only: the handler is `http::readyz`
fn readyz() {}

/// Prometheus metrics, all prefixed `moderato_`.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8"))
)]
#[allow(dead_code)] // documentation only: the handler is `http::metrics`
fn metrics() {}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
#[allow(dead_code)] // documentation only: the handler is in `crate::http_api`
fn openapi_json() {}
