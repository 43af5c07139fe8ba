//! Records that would not fit in a Kafka record (issue: "the too-large path corrupts what it
//! should keep"): a labelled record gives up passthrough fields and stays valid JSON; a dead
//! letter keeps its key, headers, the payload's length and SHA-256, and as much of it as fits.

mod common;

use moderato::classify::ModelRef;
use moderato::model::file;
use moderato::record::Source;
use moderato::stream::fit;
use moderato::stream::inbound::from_parts;
use moderato::stream::message::Whole;
use moderato::stream::record::{process, Destination, Inbound, Outbound};
use moderato::stream::ServeConfig;
use serde_json::Value;

/// The service settings with the producer's `message.max.bytes` at 20,000 bytes.
fn cfg() -> ServeConfig {
    let mut c = ServeConfig::with_brokers("localhost:1").expect("valid");
    c.max_payload_bytes = 10_000;
    c.librdkafka
        .insert("producer.message.max.bytes".into(), "20000".into());
    c
}

fn message(payload: &[u8], keep: usize) -> Inbound {
    let source = Source {
        topic: "comments".into(),
        partition: 1,
        offset: 9,
        timestamp: None,
    };
    let headers = [Some((&b"trace"[..], Some(&b"abc"[..])))];
    from_parts(source, Some(b"thread-1"), Some(payload), headers, keep)
}

fn run(msg: &Inbound, cfg: &ServeConfig) -> Outbound {
    let model = file::load(&common::default_model_path()).expect("default model");
    let model_ref = ModelRef::of(&model);
    process(msg, cfg, &model, &model_ref, &mut Default::default())
}

#[test]
fn a_record_that_grows_past_the_limit_on_reserialization_stays_valid_json() {
    let cfg = cfg();
    assert_eq!(cfg.max_record_bytes(), 20_000 - 1024);
    // 1,800 numbers written `1E9` (4 bytes each) come out as `1000000000.0` (12): an input
    // under the payload limit whose record would be over the producer's.
    let numbers = vec!["1E9"; 1800].join(",");
    let payload = format!(
        r#"{{"id": 7, "text": "you are an idiot", "target": "Atheism", "meta": [{numbers}]}}"#
    );
    assert!(payload.len() < cfg.max_payload_bytes);
    let out = run(&message(payload.as_bytes(), cfg.max_record_bytes()), &cfg);
    assert_eq!(out.destination, Destination::Output, "{:?}", out.reason);
    assert!(fit::size(&out) <= cfg.max_record_bytes());
    let record: Value = serde_json::from_slice(&out.payload).expect("valid JSON");
    assert_eq!(record["omitted"], serde_json::json!(["meta"]));
    assert_eq!(record["target"], "Atheism", "the smaller fields stay");
    assert!(record["labels"].is_array() && record["heads"].is_object());
    assert_eq!(out.key.as_deref(), Some(&b"thread-1"[..]));
    let length: usize = out
        .header(fit::RECORD_LENGTH_HEADER)
        .and_then(|v| v.parse().ok())
        .expect("the record's length before");
    assert!(length > cfg.max_record_bytes());
}

#[test]
fn an_oversized_payload_is_read_only_in_part_and_dead_lettered_with_its_digest() {
    let cfg = cfg();
    let payload = format!(r#"{{"text": "{}"}}"#, "ب".repeat(40_000));
    let msg = message(payload.as_bytes(), cfg.max_record_bytes());
    assert_eq!(
        msg.payload.as_ref().map(Vec::len),
        Some(cfg.max_record_bytes())
    );
    assert_eq!(msg.whole, Some(Whole::of(payload.as_bytes())));
    let out = run(&msg, &cfg);
    assert_eq!(out.destination, Destination::DeadLetter);
    assert_eq!(out.reason, Some("too_large"));
    assert!(fit::size(&out) <= cfg.max_record_bytes());
    assert_eq!(
        out.key.as_deref(),
        Some(&b"thread-1"[..]),
        "the key is kept"
    );
    assert_eq!(
        out.header("trace"),
        Some("abc"),
        "the input's headers are kept"
    );
    let length = payload.len().to_string();
    assert_eq!(
        out.header(fit::PAYLOAD_LENGTH_HEADER),
        Some(length.as_str())
    );
    let digest = Whole::of(payload.as_bytes()).sha256;
    assert_eq!(
        out.header(fit::PAYLOAD_SHA256_HEADER),
        Some(digest.as_str())
    );
    let kept = std::str::from_utf8(&out.payload).expect("cut between characters");
    assert!(
        payload.starts_with(kept) && kept.len() > 15_000,
        "{} bytes kept",
        kept.len()
    );
}

#[test]
fn a_record_whose_id_alone_is_too_large_is_dead_lettered_whole() {
    let mut cfg = cfg();
    cfg.max_payload_bytes = 19_000;
    let payload = format!(r#"{{"id": "{}", "text": "hello"}}"#, "i".repeat(18_500));
    let out = run(&message(payload.as_bytes(), cfg.max_record_bytes()), &cfg);
    assert_eq!(out.destination, Destination::DeadLetter);
    assert_eq!(out.reason, Some("record_too_large"));
    assert_eq!(
        out.payload,
        payload.as_bytes(),
        "the input fits, and is kept whole"
    );
}
