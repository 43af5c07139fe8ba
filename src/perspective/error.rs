//! Errors in Google's JSON shape, `{"error": {"code", "message", "status", "details"}}`, with
//! Perspective's error types in `details[0].errorType`, so clients that branch on them work.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The `@type` of Perspective's error detail.
const DETAIL_TYPE: &str = "type.googleapis.com/google.commentanalyzer.v1alpha1.Error";

/// Longest comment accepted, in bytes of UTF-8 (Perspective's limit).
pub const MAX_COMMENT_BYTES: usize = 20_480;

/// The text of a request's `comment`, refused when it is blank or over [`MAX_COMMENT_BYTES`].
pub fn comment_text(comment: Option<super::wire::TextEntry>) -> Result<String, ApiError> {
    let text = comment.and_then(|c| c.text).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::comment_empty());
    }
    if text.len() > MAX_COMMENT_BYTES {
        return Err(ApiError::comment_too_long(text.len()));
    }
    Ok(text)
}

/// A refused request: HTTP status, Google status name, message and Perspective error type.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// Google's canonical status name (`INVALID_ARGUMENT`, `PERMISSION_DENIED`, ...).
    pub status: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// Perspective's error type (`COMMENT_EMPTY`, ...), when there is one.
    pub error_type: Option<&'static str>,
    /// Extra fields of the detail (e.g. the attribute and languages of a language error).
    pub detail: Option<(&'static str, Value)>,
    /// Seconds to wait before retrying (429 / 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn invalid(message: String, error_type: &'static str) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            status: "INVALID_ARGUMENT",
            message,
            error_type: Some(error_type),
            detail: None,
            retry_after: None,
        }
    }

    /// The body is not a request of this method.
    pub fn bad_request(message: String) -> Self {
        Self {
            error_type: None,
            ..Self::invalid(message, "")
        }
    }

    /// `comment.text` is missing or blank.
    pub fn comment_empty() -> Self {
        Self::invalid("Comment must be non-empty.".into(), "COMMENT_EMPTY")
    }

    /// `comment.text` is over [`MAX_COMMENT_BYTES`].
    pub fn comment_too_long(bytes: usize) -> Self {
        Self::invalid(
            format!("Comment text too long: {bytes} bytes; the limit is {MAX_COMMENT_BYTES}."),
            "COMMENT_TOO_LONG",
        )
    }

    /// `requestedAttributes` (or `attributeScores`) is empty.
    pub fn no_requested_attributes() -> Self {
        Self::invalid(
            "Must request at least one attribute.".into(),
            "NO_REQUESTED_ATTRIBUTES",
        )
    }

    /// An attribute this server has no head for.
    pub fn unknown_attribute(name: &str, known: &[String]) -> Self {
        Self::invalid(
            format!(
                "Unknown attribute: {name}. This server scores: {}.",
                known.join(", ")
            ),
            "ATTRIBUTE_NOT_SUPPORTED",
        )
    }

    /// The attribute's head was never trained on the comment's language.
    pub fn language_not_supported(attribute: &str, detected: &[String]) -> Self {
        let langs = if detected.is_empty() {
            "und".to_string()
        } else {
            detected.join(", ")
        };
        Self {
            detail: Some((
                "languageNotSupportedByAttributeError",
                json!({"detectedLanguages": detected, "attribute": attribute}),
            )),
            ..Self::invalid(
                format!("Attribute {attribute} does not support request languages: {langs}"),
                "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
            )
        }
    }

    /// No key, or a key not in the key file.
    pub fn permission_denied(message: &str) -> Self {
        Self {
            code: StatusCode::FORBIDDEN,
            status: "PERMISSION_DENIED",
            message: message.into(),
            error_type: None,
            detail: None,
            retry_after: None,
        }
    }

    /// The server cannot answer now (no model yet, shutting down, overloaded).
    pub fn unavailable(message: &str, retry_after: u32) -> Self {
        Self {
            code: StatusCode::SERVICE_UNAVAILABLE,
            status: "UNAVAILABLE",
            message: message.into(),
            error_type: None,
            detail: None,
            retry_after: Some(retry_after),
        }
    }

    /// A method this server was not set up to answer.
    pub fn unimplemented(message: &str) -> Self {
        Self {
            code: StatusCode::NOT_IMPLEMENTED,
            status: "UNIMPLEMENTED",
            message: message.into(),
            error_type: None,
            detail: None,
            retry_after: None,
        }
    }

    /// Nothing is served here.
    pub fn not_found(message: &str) -> Self {
        Self {
            code: StatusCode::NOT_FOUND,
            status: "NOT_FOUND",
            message: message.into(),
            error_type: None,
            detail: None,
            retry_after: None,
        }
    }

    /// A bug or an I/O failure on our side.
    pub fn internal(message: String) -> Self {
        Self {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            status: "INTERNAL",
            message,
            error_type: None,
            detail: None,
            retry_after: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        });
        if let Some(kind) = self.error_type {
            let mut detail = json!({"@type": DETAIL_TYPE, "errorType": kind});
            if let Some((name, value)) = &self.detail {
                detail[*name] = value.clone();
            }
            error["details"] = json!([detail]);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_googles_shape_and_perspectives_types() {
        let e = ApiError::comment_empty().body();
        assert_eq!(e["error"]["code"], 400);
        assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(e["error"]["details"][0]["@type"], DETAIL_TYPE);
        assert_eq!(e["error"]["details"][0]["errorType"], "COMMENT_EMPTY");

        let e = ApiError::language_not_supported("PROFANITY", &["en".into()]).body();
        let detail = &e["error"]["details"][0];
        assert_eq!(detail["errorType"], "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE");
        assert_eq!(
            detail["languageNotSupportedByAttributeError"]["attribute"],
            "PROFANITY"
        );
        assert_eq!(
            e["error"]["message"],
            "Attribute PROFANITY does not support request languages: en"
        );

        let e = ApiError::permission_denied("no key").body();
        assert_eq!(e["error"]["code"], 403);
        assert!(e["error"].get("details").is_none());
    }
}
