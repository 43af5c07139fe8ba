//! Every record the service produces fits what Kafka accepts, and nothing that does not fit is
//! corrupted:
//!
//! - a **labelled record** over the limit gives up its largest passthrough fields, largest
//!   first, names them in `omitted`, and stays valid JSON; its labels and scores are kept;
//! - a **dead letter** over the limit keeps the key, the headers, the payload's whole length
//!   and SHA-256 (headers `moderato-payload-length`, `moderato-payload-sha256`) and as much of
//!   the payload as fits (`moderato-payload-cut`: the bytes kept, cut at a UTF-8 boundary when
//!   the payload is text). Only if the key and headers alone do not fit do they go, and a
//!   header says so.
//!
//! The limit is the producer's `message.max.bytes` less room for the batch framing
//! ([`ServeConfig::max_record_bytes`](super::config::ServeConfig::max_record_bytes)); a broker
//! or topic with a lower limit refuses a record, and the delivering stage fits it to half its
//! size and sends it again.

use std::cmp::Reverse;

use serde_json::{Map, Value};

use super::message::{headers_size, Destination, Header, Outbound, Whole};
use crate::record::RESERVED;

/// Dead-letter header: the whole payload's length in bytes, when the payload was cut.
pub const PAYLOAD_LENGTH_HEADER: &str = "moderato-payload-length";
/// Dead-letter header: the whole payload's SHA-256 (hex), when the payload was cut.
pub const PAYLOAD_SHA256_HEADER: &str = "moderato-payload-sha256";
/// Dead-letter header: how many leading bytes of the payload were kept.
pub const PAYLOAD_CUT_HEADER: &str = "moderato-payload-cut";
/// Dead-letter header: how many of the input's own headers were left out (only when the
/// headers alone did not fit).
pub const HEADERS_DROPPED_HEADER: &str = "moderato-headers-dropped";
/// Dead-letter header: the key's length, when the key was left out (it alone did not fit).
pub const KEY_DROPPED_HEADER: &str = "moderato-key-dropped";
/// Labelled-record header: the record's length before fields were omitted.
pub const RECORD_LENGTH_HEADER: &str = "moderato-record-length";

/// The bytes a record counts against the limit: key, payload and headers.
pub fn size(r: &Outbound) -> usize {
    r.key.as_ref().map_or(0, Vec::len) + r.payload.len() + headers_size(&r.headers)
}

/// Makes `r` fit in `limit` bytes (see the module's policy); `whole` describes the payload
/// before an earlier cut, if there was one. False if it cannot fit (its essentials alone are
/// larger).
pub fn fit(r: &mut Outbound, limit: usize, whole: Option<&Whole>) -> bool {
    if size(r) <= limit {
        return true;
    }
    match r.destination {
        Destination::Output => compact(r, limit),
        Destination::DeadLetter => cut(r, limit, whole),
    }
}

/// Leaves out the labelled record's largest passthrough fields until it fits.
fn compact(r: &mut Outbound, limit: usize) -> bool {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&r.payload) else {
        return false;
    };
    let original = r.payload.len();
    r.headers.retain(|(k, _)| k != RECORD_LENGTH_HEADER);
    r.headers.push(text(RECORD_LENGTH_HEADER, original));
    let mut fields: Vec<(String, usize)> = map
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()) && k.as_str() != "omitted")
        .map(|(k, v)| (k.clone(), k.len() + v.to_string().len()))
        .collect();
    fields.sort_by_key(|(_, n)| Reverse(*n));
    let mut omitted: Vec<Value> = match map.remove("omitted") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    for (name, _) in fields {
        map.remove(&name);
        omitted.push(Value::String(name));
        if let Some(payload) = within(&map, &omitted, r, limit) {
            r.payload = payload;
            return true;
        }
    }
    false
}

/// The record `map` with `omitted` named, if it fits in `limit` with `r`'s key and headers.
fn within(
    map: &Map<String, Value>,
    omitted: &[Value],
    r: &Outbound,
    limit: usize,
) -> Option<Vec<u8>> {
    let mut map = map.clone();
    map.insert("omitted".into(), Value::Array(omitted.to_vec()));
    let payload = serde_json::to_vec(&map).ok()?;
    let rest = r.key.as_ref().map_or(0, Vec::len) + headers_size(&r.headers);
    (rest + payload.len() <= limit).then_some(payload)
}

/// Keeps as much of the dead letter's payload as fits, with the whole payload's length and
/// digest; the input's headers, then its key, go only if they alone do not fit.
fn cut(r: &mut Outbound, limit: usize, whole: Option<&Whole>) -> bool {
    let named = r.headers.iter().any(|(k, _)| k == PAYLOAD_SHA256_HEADER);
    if !named {
        let whole = whole.cloned().unwrap_or_else(|| Whole::of(&r.payload));
        r.headers.push(text(PAYLOAD_LENGTH_HEADER, whole.length));
        r.headers.push((
            PAYLOAD_SHA256_HEADER.into(),
            Some(whole.sha256.into_bytes()),
        ));
    }
    r.headers.retain(|(k, _)| k != PAYLOAD_CUT_HEADER);
    // Room for the cut header's own value, up to 20 digits.
    let cut_header = PAYLOAD_CUT_HEADER.len() + 20;
    let room = |r: &Outbound| {
        limit.saturating_sub(
            r.key.as_ref().map_or(0, Vec::len) + headers_size(&r.headers) + cut_header,
        )
    };
    if room(r) == 0 {
        let before = r.headers.len();
        r.headers.retain(|(k, _)| k.starts_with("moderato-"));
        let dropped = before - r.headers.len();
        if dropped > 0 {
            r.headers.push(text(HEADERS_DROPPED_HEADER, dropped));
        }
    }
    if room(r) == 0 {
        if let Some(key) = r.key.take() {
            r.headers.push(text(KEY_DROPPED_HEADER, key.len()));
        }
    }
    let keep = utf8_floor(&r.payload, room(r).min(r.payload.len()));
    if keep == 0 && !r.payload.is_empty() {
        return false;
    }
    r.payload.truncate(keep);
    r.headers.push(text(PAYLOAD_CUT_HEADER, keep));
    size(r) <= limit
}

/// `at`, or the start of the UTF-8 character it falls inside when `bytes` is text up to there.
fn utf8_floor(bytes: &[u8], at: usize) -> usize {
    match std::str::from_utf8(&bytes[..at]) {
        Ok(_) => at,
        // Only an incomplete last character moves the cut; binary payloads are cut where they are.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => at,
    }
}

fn text(key: &str, n: usize) -> Header {
    (key.into(), Some(n.to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Source;

    fn record(destination: Destination, payload: &[u8]) -> Outbound {
        Outbound {
            destination,
            key: Some(b"thread-7".to_vec()),
            payload: payload.to_vec(),
            headers: vec![("trace".into(), Some(b"abc".to_vec()))],
            source: Source {
                topic: "in".into(),
                partition: 0,
                offset: 3,
                timestamp: None,
            },
            summary: None,
            reason: None,
        }
    }

    #[test]
    fn a_record_that_fits_is_left_alone() {
        let mut r = record(Destination::DeadLetter, b"small");
        assert!(fit(&mut r, 1000, None));
        assert_eq!(r.payload, b"small");
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn a_large_labelled_record_drops_its_largest_passthrough_fields_and_stays_json() {
        let big = "x".repeat(5000);
        let json = serde_json::json!({
            "schema_version": 2, "id": 1, "labels": ["offensive"], "heads": {},
            "target": "Atheism", "meta": {"blob": big}, "note": "kept"
        });
        let mut r = record(Destination::Output, json.to_string().as_bytes());
        let original = r.payload.len();
        assert!(fit(&mut r, 1000, None));
        assert!(size(&r) <= 1000);
        let v: Value = serde_json::from_slice(&r.payload).expect("valid JSON");
        assert_eq!(v["omitted"], serde_json::json!(["meta"]));
        assert_eq!(
            (v["target"].as_str(), v["note"].as_str()),
            (Some("Atheism"), Some("kept"))
        );
        assert_eq!(v["labels"], serde_json::json!(["offensive"]));
        assert_eq!(
            r.header(RECORD_LENGTH_HEADER),
            Some(original.to_string().as_str())
        );
        assert_eq!(r.key.as_deref(), Some(&b"thread-7"[..]));
    }

    #[test]
    fn a_labelled_record_whose_own_fields_are_too_large_does_not_fit() {
        let json = serde_json::json!({"id": "i".repeat(5000), "labels": []});
        let mut r = record(Destination::Output, json.to_string().as_bytes());
        assert!(!fit(&mut r, 1000, None));
    }

    #[test]
    fn a_large_dead_letter_keeps_key_headers_length_digest_and_a_prefix() {
        let payload = "é".repeat(3000); // 6,000 bytes of two-byte characters
        let mut r = record(Destination::DeadLetter, payload.as_bytes());
        assert!(fit(&mut r, 1001, None));
        assert!(size(&r) <= 1001);
        assert_eq!(r.key.as_deref(), Some(&b"thread-7"[..]));
        assert_eq!(r.header("trace"), Some("abc"));
        assert_eq!(r.header(PAYLOAD_LENGTH_HEADER), Some("6000"));
        let digest = Whole::of(payload.as_bytes()).sha256;
        assert_eq!(r.header(PAYLOAD_SHA256_HEADER), Some(digest.as_str()));
        let kept = std::str::from_utf8(&r.payload).expect("cut at a character boundary");
        assert!(payload.starts_with(kept) && kept.len() > 500);
        assert_eq!(
            r.header(PAYLOAD_CUT_HEADER),
            Some(kept.len().to_string().as_str())
        );
        // Cut again (a broker with a lower limit): the whole payload's length and digest stay.
        assert!(fit(&mut r, 700, None));
        assert_eq!(r.header(PAYLOAD_LENGTH_HEADER), Some("6000"));
        assert_eq!(r.header(PAYLOAD_SHA256_HEADER), Some(digest.as_str()));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k == PAYLOAD_CUT_HEADER)
                .count(),
            1
        );
    }

    #[test]
    fn a_payload_cut_on_read_is_named_by_its_whole_length_and_digest() {
        let whole = Whole::of(&[7u8; 50_000]);
        let mut r = record(Destination::DeadLetter, &[7u8; 2000]);
        assert!(fit(&mut r, 1000, Some(&whole)));
        assert_eq!(r.header(PAYLOAD_LENGTH_HEADER), Some("50000"));
        assert_eq!(r.header(PAYLOAD_SHA256_HEADER), Some(whole.sha256.as_str()));
    }

    #[test]
    fn headers_then_the_key_go_only_when_they_alone_do_not_fit() {
        let mut r = record(Destination::DeadLetter, b"payload");
        r.headers.push(("huge".into(), Some(vec![b'h'; 5000])));
        assert!(fit(&mut r, 1000, None));
        assert_eq!(r.header("huge"), None);
        assert_eq!(r.header(HEADERS_DROPPED_HEADER), Some("2"));
        assert_eq!(r.key.as_deref(), Some(&b"thread-7"[..]));
        let mut r = record(Destination::DeadLetter, b"payload");
        r.key = Some(vec![b'k'; 5000]);
        assert!(fit(&mut r, 1000, None));
        assert_eq!(
            (r.key.as_ref(), r.header(KEY_DROPPED_HEADER)),
            (None, Some("5000"))
        );
        assert_eq!(r.payload, b"payload");
    }
}
