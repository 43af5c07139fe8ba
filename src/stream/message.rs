//! What the service reads and writes on Kafka: a message as read ([`Inbound`]), a record ready
//! to produce ([`Outbound`]) and their headers. Plain data: [`super::record`] makes one from the
//! other, [`super::fit`] keeps it under the record size limit.

use sha2::{Digest as _, Sha256};

use crate::record::Source;

/// One Kafka header: its key and value (`None`: a null value).
pub type Header = (String, Option<Vec<u8>>);

/// What the service read: payload, key, headers and coordinates.
#[derive(Clone, Debug)]
pub struct Inbound {
    /// Coordinates.
    pub source: Source,
    /// Message key (kept on the output, so partitioning by thread or author survives).
    pub key: Option<Vec<u8>>,
    /// Payload (`None` for a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Headers, in order (a null value is `None`); one whose key is not UTF-8 is left out.
    pub headers: Vec<Header>,
    /// What is wrong with the first header left out, if any (the message is dead-lettered).
    pub bad_header: Option<String>,
    /// The whole payload's length and digest when `payload` holds only its first bytes (a
    /// payload over `max_payload_bytes` is not copied whole: it is dead-lettered anyway).
    pub whole: Option<Whole>,
}

impl Inbound {
    /// Bytes it holds as read: payload, key and headers (what `max_inflight_bytes` counts).
    pub fn size(&self) -> usize {
        self.payload.as_ref().map_or(0, Vec::len)
            + self.key.as_ref().map_or(0, Vec::len)
            + headers_size(&self.headers)
    }
}

/// Which topic a record goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The labelled-output topic.
    Output,
    /// The dead-letter topic.
    DeadLetter,
}

/// A record ready to produce.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// Target topic.
    pub destination: Destination,
    /// Key (the input's).
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub payload: Vec<u8>,
    /// Headers (a null value is `None`).
    pub headers: Vec<Header>,
    /// The input it answers.
    pub source: Source,
    /// What metrics and dashboards need of a labelled record (`None` for dead letters).
    pub summary: Option<Summary>,
    /// Dead-letter reason code, if any.
    pub reason: Option<&'static str>,
}

impl Outbound {
    /// The value of header `key`, if it is there and UTF-8.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The gist of a labelled record, for metrics and the live dashboard.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The comment's id, as text.
    pub id: String,
    /// Its first 280 characters.
    pub preview: String,
    /// Script code (`ar`, `latin`, `other`).
    pub lang: &'static str,
    /// Binary heads: (index into the model's heads, score, flagged).
    pub scores: Vec<(usize, f32, bool)>,
    /// A conditioned multiclass head's result: (head index, target, label, probability).
    pub stance: Option<(usize, String, String, f32)>,
    /// The whole (classified) text and target, kept only when feedback is collected.
    pub full: Option<(String, Option<String>)>,
}

/// The length and SHA-256 of a whole payload, kept when only a prefix of it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Whole {
    /// Its length in bytes.
    pub length: usize,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl Whole {
    /// The length and digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            length: bytes.len(),
            sha256: crate::model::file::hex(&Sha256::digest(bytes)),
        }
    }
}

/// The bytes of `headers`: keys and values.
pub fn headers_size(headers: &[Header]) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum()
}
