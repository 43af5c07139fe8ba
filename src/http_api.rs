//! The whole HTTP API of `serve`, `api` and `demo`: moderato's own routes ([`crate::ops::http`]),
//! the Perspective API's ([`crate::perspective`]), and `GET /openapi.json` documenting both
//! (`docs/openapi.json` is this document, checked by `tests/contract.rs`).

use std::sync::{Arc, OnceLock};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::ops::http::{router as own_routes, App};
use crate::ops::openapi::ApiDoc;
use crate::perspective::openapi::PerspectiveDoc;
use crate::perspective::{routes as perspective_routes, Perspective};

/// The whole document: moderato's routes and the Perspective API's.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(PerspectiveDoc::openapi());
    doc
}

/// The document as the checked-in file holds it: pretty JSON and a final newline.
pub fn json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /openapi.json`.
async fn serve_document() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(json).clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Every route: `app`'s own, `perspective`'s, and `/openapi.json`.
pub fn router(app: App, perspective: Arc<Perspective>) -> Router {
    own_routes(app)
        .merge(perspective_routes(perspective))
        .route("/openapi.json", get(serve_document))
}
