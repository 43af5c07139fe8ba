//! Harness of the `message` target: a Kafka message with arbitrary payload, key and headers
//! (keys need not be UTF-8, headers may be unreadable) through the path the service takes:
//! [`from_parts`] (what [`crate::stream::inbound::inbound`] calls), [`decode`] and [`process`]
//! (unguarded, so that a panic in classification is seen), classifying with [`super::tiny`].
//!
//! Input: a flags byte (bit 0: a key, bit 1: a payload, bit 2: text input format, bit 3: a
//! 40-character text limit, bit 4: a 200-byte payload limit; bits 5-7: the header count), the
//! key as a chunk (a length byte, then the bytes), each header as a flags byte (bit 0:
//! unreadable, bit 1: a value) and its key and value chunks, then the payload: the rest.
//!
//! Invariants: nothing panics; the copy keeps key, payload and every header with a UTF-8 key in
//! order, and names a bad header exactly when there is one; a message becomes a labelled record
//! exactly when it decodes, and then its payload is a JSON record of the comment's id, with
//! the key and the model and instance headers; otherwise it becomes a dead letter with the
//! original key, bytes and headers, the decode error's reason code and the error headers;
//! processing is deterministic.

use std::sync::OnceLock;

use serde_json::Value;

use super::input::{push_chunk, Input};
use crate::classify::ModelRef;
use crate::model::{Model, Scratch};
use crate::stream::config::{InputFormat, ServeConfig};
use crate::stream::inbound::{from_parts, RawHeader};
use crate::stream::record::{
    decode, process, Destination, Inbound, Source, ERROR_HEADER, INSTANCE_HEADER,
    MODEL_VERSION_HEADER,
};

/// One message as the fuzzer describes it.
#[derive(Clone, Debug, Default)]
pub struct Message<'a> {
    /// Flags byte (see the module doc).
    pub flags: u8,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Headers as librdkafka hands them over.
    pub headers: Vec<RawHeader<'a>>,
    /// Payload.
    pub payload: Option<&'a [u8]>,
}

/// Flag: the message has a key.
pub const KEY: u8 = 1;
/// Flag: the message has a payload.
pub const PAYLOAD: u8 = 2;
/// Flag: the service reads text payloads, not JSON.
pub const TEXT: u8 = 4;
/// Flag: a 40-character classification limit.
pub const SHORT_TEXT: u8 = 8;
/// Flag: a 200-byte payload limit.
pub const SMALL_PAYLOAD: u8 = 16;

impl<'a> Message<'a> {
    /// Reads a message out of fuzz input.
    pub fn parse(data: &'a [u8]) -> Self {
        let mut input = Input::new(data);
        let flags = input.byte();
        let key = input.chunk();
        let headers = (0..flags >> 5)
            .map(|_| {
                let h = input.byte();
                let (key, value) = (input.chunk(), input.chunk());
                (h & 1 == 0).then_some((key, (h & 2 != 0).then_some(value)))
            })
            .collect();
        let payload = input.rest();
        Self {
            flags,
            key: (flags & KEY != 0).then_some(key),
            headers,
            payload: (flags & PAYLOAD != 0).then_some(payload),
        }
    }

    /// The fuzz input this message is read from (at most 7 headers, chunks of 255 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let headers = &self.headers[..self.headers.len().min(7)];
        let mut flags = self.flags & (TEXT | SHORT_TEXT | SMALL_PAYLOAD);
        flags |= if self.key.is_some() { KEY } else { 0 };
        flags |= if self.payload.is_some() { PAYLOAD } else { 0 };
        flags |= (headers.len() as u8) << 5;
        let mut out = vec![flags];
        push_chunk(&mut out, self.key.unwrap_or_default());
        for h in headers {
            match h {
                None => out.extend_from_slice(&[1, 0, 0]),
                Some((key, value)) => {
                    out.push(if value.is_some() { 2 } else { 0 });
                    push_chunk(&mut out, key);
                    push_chunk(&mut out, value.unwrap_or_default());
                }
            }
        }
        out.extend_from_slice(self.payload.unwrap_or_default());
        out
    }
}

/// The tiny model, its reference and the service configs (JSON and text), built once.
struct Fixture {
    model: Model,
    model_ref: ModelRef,
    configs: Vec<ServeConfig>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let model = super::tiny::model();
        let model_ref = ModelRef::of(&model);
        // Fixed, valid settings: a failure here is a bug in this file.
        let base = ServeConfig::with_brokers("localhost:1").expect("the default settings resolve");
        let configs = (0..8u8)
            .map(|i| {
                let mut c = base.clone();
                c.instance = "fuzz-1".into();
                c.input_format = if i & 1 != 0 {
                    InputFormat::Text
                } else {
                    InputFormat::Json
                };
                if i & 2 != 0 {
                    c.max_text_chars = 40;
                }
                if i & 4 != 0 {
                    c.max_payload_bytes = 200;
                }
                c
            })
            .collect();
        Fixture {
            model,
            model_ref,
            configs,
        }
    })
}

/// Runs one input through copy, decode and process and checks the invariants above.
pub fn check(data: &[u8]) {
    let msg = Message::parse(data);
    let source = Source {
        topic: "comments".into(),
        partition: 3,
        offset: 42,
        timestamp: (msg.flags & KEY != 0).then_some(1_700_000_000_000),
    };
    // Fuzz inputs are far below the copy limit, so the copy is whole (checked below).
    let inbound = from_parts(
        source,
        msg.key,
        msg.payload,
        msg.headers.iter().copied(),
        1 << 20,
    );
    check_copy(&msg, &inbound);

    let fx = fixture();
    let cfg = &fx.configs[usize::from((msg.flags >> 2) & 7)];
    let decoded = decode(&inbound, cfg);
    let mut scratch = Scratch::default();
    let out = process(&inbound, cfg, &fx.model, &fx.model_ref, &mut scratch);
    let again = process(&inbound, cfg, &fx.model, &fx.model_ref, &mut scratch);
    assert!(
        crate::stream::fit::size(&out) <= cfg.max_record_bytes(),
        "every record fits the producer's limit"
    );
    assert_eq!(out.payload, again.payload, "processing is deterministic");
    assert_eq!(out.headers, again.headers, "processing is deterministic");
    assert_eq!(out.key, inbound.key, "the key is kept");
    assert_eq!(out.source, inbound.source, "the source is kept");
    let header = |name: &str| {
        out.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    };
    match decoded {
        Ok(comment) => {
            assert_eq!(out.destination, Destination::Output, "a decoded comment");
            assert_eq!(out.reason, None);
            let record: Value = match serde_json::from_slice(&out.payload) {
                Ok(v) => v,
                Err(e) => panic!("the output record is not JSON: {e}"),
            };
            assert_eq!(
                record.get("id").cloned(),
                serde_json::to_value(&comment.id).ok(),
                "the record names its comment"
            );
            let summary = out.summary.as_ref().map(|s| s.id.clone());
            assert_eq!(summary, Some(comment.id.text()));
            assert_eq!(out.headers.len(), 2, "model and instance headers only");
            assert_eq!(
                header(MODEL_VERSION_HEADER),
                Some(fx.model_ref.version.as_bytes())
            );
            assert_eq!(header(INSTANCE_HEADER), Some(cfg.instance.as_bytes()));
        }
        Err(e) => {
            assert_eq!(out.destination, Destination::DeadLetter, "{e}");
            assert_eq!(out.reason, Some(e.code()));
            assert!(out.summary.is_none());
            assert_eq!(out.payload, inbound.payload.clone().unwrap_or_default());
            assert!(
                out.headers.starts_with(&inbound.headers),
                "a dead letter keeps the original headers first"
            );
            assert_eq!(header(ERROR_HEADER), Some(e.code().as_bytes()));
        }
    }
}

/// The copy keeps key, payload and the representable headers, and names a bad one.
fn check_copy(msg: &Message<'_>, inbound: &Inbound) {
    assert_eq!(inbound.key.as_deref(), msg.key, "the key is copied");
    assert_eq!(
        inbound.payload.as_deref(),
        msg.payload,
        "the payload is copied"
    );
    let kept: Vec<(&str, Option<&[u8]>)> = msg
        .headers
        .iter()
        .flatten()
        .filter_map(|&(k, v)| std::str::from_utf8(k).ok().map(|k| (k, v)))
        .collect();
    let copied: Vec<(&str, Option<&[u8]>)> = inbound
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        copied, kept,
        "every header with a UTF-8 key is kept, in order"
    );
    let bad = msg
        .headers
        .iter()
        .any(|h| h.is_none_or(|(k, _)| std::str::from_utf8(k).is_err()));
    assert_eq!(inbound.bad_header.is_some(), bad, "a bad header is named");
}
