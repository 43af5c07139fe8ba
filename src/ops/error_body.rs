//! The JSON body of the HTTP side's error answers, shared by the routes, the API-key check and
//! the OpenAPI document.

/// The body of every error answer of `POST /v1/classify`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What was wrong, naming the comment's index in a batch.
    pub error: String,
}
