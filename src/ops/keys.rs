//! API keys of the classification routes (`/v1/classify` and the Perspective routes).
//!
//! `--api-keys FILE` holds one key per line, or the SHA-256 (64 hex digits) of a key, so the
//! file need not hold the secret itself; blank lines and `#` comments are skipped. Only digests
//! are kept in memory, and a presented key is compared, digest to digest, in constant time.
//! The key comes from `?key=` (as Perspective clients send it) or the `x-goog-api-key` header.

use std::path::Path;
use std::sync::Arc;

use axum::response::IntoResponse;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// The accepted keys, as SHA-256 digests.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex_digest(line: &str) -> Option<[u8; 32]> {
    if line.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(line.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// Reads a key file; a file without a single key is refused (it would lock everyone out).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let keys = Self::parse(&text);
        if keys.digests.is_empty() {
            return Err(ConfigError::Invalid {
                field: "api_keys".into(),
                reason: format!(
                    "{} holds no key: write one key, or the SHA-256 hex of one, per line",
                    path.display()
                ),
            });
        }
        Ok(keys)
    }

    /// Parses the lines of a key file.
    pub fn parse(text: &str) -> Self {
        let digests = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| hex_digest(&l.to_ascii_lowercase()).unwrap_or_else(|| digest(l)))
            .collect();
        Self { digests }
    }

    /// Whether `key` is one of the accepted keys (every digest is compared, in constant time).
    pub fn accepts(&self, key: &str) -> bool {
        let presented = digest(key);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, d| {
                found | d.ct_eq(&presented)
            })
            .into()
    }
}

/// Why a request's key is refused, or `None` when `keys` accept it (or there are no keys).
pub fn refusal(
    keys: Option<&ApiKeys>,
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Option<&'static str> {
    let keys = keys?;
    match presented(headers, uri) {
        Some(k) if keys.accepts(&k) => None,
        Some(_) => Some("API key not valid: pass a key from the server's key file."),
        None => Some("The request is missing an API key: pass ?key= or the x-goog-api-key header."),
    }
}

/// Middleware of moderato's own routes (`/v1/classify`, the dashboard's data): a request
/// without an accepted key gets 403 with their `{"error": message}` body (the Perspective
/// routes answer in Google's shape: `crate::perspective::require_key`).
pub async fn require_plain(
    axum::extract::State(keys): axum::extract::State<Option<Arc<ApiKeys>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match refusal(keys.as_deref(), req.headers(), req.uri()) {
        Some(message) => (
            axum::http::StatusCode::FORBIDDEN,
            axum::Json(super::error_body::ErrorBody {
                error: message.to_string(),
            }),
        )
            .into_response(),
        None => next.run(req).await,
    }
}

/// The `key` query parameter.
#[derive(serde::Deserialize)]
struct KeyParam {
    key: Option<String>,
}

/// The key of a request: `x-goog-api-key`, else the `key` query parameter (decoded by axum's
/// own query parser).
pub fn presented(headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    if let Some(v) = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    axum::extract::Query::<KeyParam>::try_from_uri(uri)
        .ok()?
        .0
        .key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_their_digests_are_accepted_and_nothing_else() {
        let hashed = format!("{:x}", Sha256::digest(b"second-key"));
        let keys = ApiKeys::parse(&format!("# site keys\nfirst-key\n\n  {hashed}  \n"));
        assert!(keys.accepts("first-key"));
        assert!(keys.accepts("second-key"));
        assert!(!keys.accepts(&hashed), "a digest is not itself a key");
        assert!(!keys.accepts("first-key "));
        assert!(!keys.accepts(""));
        assert!(!format!("{keys:?}").contains("first"), "Debug shows no key");
    }

    #[test]
    fn an_empty_key_file_is_refused_with_what_to_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "# nothing yet\n").expect("written");
        let err = ApiKeys::load(&path).expect_err("no keys").to_string();
        assert!(err.contains("one key"), "{err}");
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let uri = |q: &str| q.parse::<axum::http::Uri>().expect("a URI");
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(
            presented(&headers, &uri("/x?alt=json&key=a%2Bb")),
            Some("a+b".into())
        );
        assert_eq!(presented(&headers, &uri("/x?alt=json")), None);
        headers.insert("x-goog-api-key", "from-header".parse().expect("valid"));
        assert_eq!(
            presented(&headers, &uri("/x?key=q")),
            Some("from-header".into())
        );
    }
}
