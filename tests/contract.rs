//! The published contract: the checked-in OpenAPI document and record JSON Schema are what the
//! code generates, every documented route is served, the records of all three producers
//! (`moderato classify`, `POST /v1/classify`, the stream's `process`) validate against the
//! schema, and invisible padding cannot push abuse past the text limit in any of them.
//!
//! `MODERATO_UPDATE_DOCS=1 cargo test --release --test contract` rewrites `docs/openapi.json`
//! and `docs/record.schema.json` from the code.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use moderato::http_api;
use moderato::model::file;
use moderato::ops::drift::DriftConfig;
use moderato::ops::http::App;
use moderato::ops::live::Live;
use moderato::ops::Telemetry;
use moderato::perspective::attributes::Attributes;
use moderato::perspective::Perspective;
use moderato::record::schema::json_schema;
use moderato::stream::record::{process, Destination, Inbound, Source};
use moderato::stream::{ModelSlot, ServeConfig};
use serde_json::{json, Value};

/// A file of the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Compares a checked-in document with what the code generates, or rewrites it when
/// `MODERATO_UPDATE_DOCS` is set.
fn check_doc(path: &str, generated: &str) {
    let file = repo(path);
    if std::env::var_os("MODERATO_UPDATE_DOCS").is_some() {
        std::fs::write(&file, generated).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        return;
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{path} differs from what the code generates; regenerate it with \
         `MODERATO_UPDATE_DOCS=1 cargo test --release --test contract` and commit it"
    );
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON");
    text.push('\n');
    text
}

#[test]
fn the_checked_in_documents_are_what_the_code_generates() {
    check_doc("docs/openapi.json", &http_api::json());
    check_doc("docs/record.schema.json", &pretty(&json_schema()));
}

/// The checked-in record schema, compiled.
fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo("docs/record.schema.json")).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

fn assert_valid(validator: &jsonschema::Validator, record: &Value, producer: &str) {
    let errors: Vec<String> = validator
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{producer}: {errors:#?}\n{record:#}");
}

fn telemetry() -> Arc<Telemetry> {
    Arc::new(Telemetry::new(
        Live::new("serve", "test".into(), DriftConfig::default()),
        true,
    ))
}

fn load(t: &Telemetry, model: &Path) {
    let model = file::load(model).expect("model loads");
    let _ = t.health.model.set(Arc::new(ModelSlot::new(model, None)));
}

async fn call(t: &Arc<Telemetry>, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let app = App::new(Arc::clone(t), None, 10_000);
    let perspective = Arc::new(Perspective {
        app: app.clone(),
        attributes: Attributes::default(),
        feedback: None,
        keys: None,
        public_url: None,
    });
    common::oneshot(http_api::router(app, perspective), method, uri, body).await
}

/// The records `classify` prints for `input` (JSON lines) with `model`.
fn cli_records(model: &Path, extra: &[&str], input: &str) -> Vec<Value> {
    let mut args = vec!["classify", "--model", common::arg(model)];
    args.extend_from_slice(extra);
    let out = common::moderato(&args, input);
    common::assert_success(&out, "classify");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The record the stream produces for `payload` with `model`.
fn stream_record(model: &Path, payload: &[u8]) -> Value {
    let model = file::load(model).expect("model loads");
    let model_ref = moderato::classify::ModelRef::of(&model);
    let cfg = ServeConfig::with_brokers("localhost:1").expect("config");
    let msg = Inbound {
        source: Source {
            topic: "comments".into(),
            partition: 0,
            offset: 3,
            timestamp: Some(1_700_000_000_000),
        },
        key: None,
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        bad_header: None,
        whole: None,
    };
    let out = process(&msg, &cfg, &model, &model_ref, &mut Default::default());
    assert_eq!(out.destination, Destination::Output, "{:?}", out.reason);
    serde_json::from_slice(&out.payload).expect("a JSON record")
}

const SAMPLES: &str = include_str!("../examples/comments.jsonl");

#[tokio::test]
async fn records_of_all_three_producers_match_the_schema() {
    let validator = validator();
    let model = common::default_model_path();
    let mut checked = 0;
    // classify, with explanations and with the examples' targets and pass-through fields.
    let samples = SAMPLES.lines().filter(|l| !l.trim().is_empty()).count();
    let cli = cli_records(&model, &["--explain", "2"], SAMPLES);
    assert_eq!(cli.len(), samples, "{cli:?}");
    assert!(cli.iter().any(|r| r.get("skipped").is_some()));
    assert!(cli.iter().any(|r| r["heads"]["stance"].is_object()));
    for record in &cli {
        assert_eq!(record["schema_version"], 2, "{record}");
        assert_valid(&validator, record, "classify");
        checked += 1;
    }
    // The HTTP side, one comment and a batch.
    let t = telemetry();
    load(&t, &model);
    let lines: Vec<Value> = SAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("sample JSON"))
        .collect();
    let (status, body) = call(&t, "POST", "/v1/classify", json!(lines).to_string().into()).await;
    assert_eq!(status, StatusCode::OK);
    let batch: Vec<Value> = serde_json::from_slice(&body).expect("an array");
    assert_eq!(batch, cli.iter().map(without_explain).collect::<Vec<_>>());
    for record in &batch {
        assert_valid(&validator, record, "POST /v1/classify");
        checked += 1;
    }
    // The stream.
    for line in SAMPLES.lines().filter(|l| !l.trim().is_empty()) {
        let record = stream_record(&model, line.as_bytes());
        assert_eq!(record["source"]["offset"], 3);
        assert_valid(&validator, &record, "stream");
        checked += 1;
    }
    assert_eq!(checked, 3 * samples);
}

fn without_explain(record: &Value) -> Value {
    let mut r = record.clone();
    r.as_object_mut().map(|o| o.remove("explain"));
    r
}

#[test]
fn the_schema_refuses_what_is_not_a_record() {
    let validator = validator();
    let good = json!({"schema_version": 2, "id": "a", "labels": ["offensive"],
        "heads": {"offensive": {"flag": true, "score": 0.9},
                  "stance": {"label": "FAVOR", "scores": {"FAVOR": 0.9}, "target": "Atheism"}},
        "model": {"name": "m", "version": "v", "sha256": "x"}, "lang": "en", "script": "latin",
        "meta": {"k": 1}});
    assert_valid(&validator, &good, "a hand-written record");
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        edit(&mut v);
        v
    };
    for (what, bad) in [
        (
            "no schema_version",
            broken(&|v| drop(v.as_object_mut().map(|o| o.remove("schema_version")))),
        ),
        (
            "no model",
            broken(&|v| drop(v.as_object_mut().map(|o| o.remove("model")))),
        ),
        (
            "an unknown script",
            broken(&|v| v["script"] = json!("klingon")),
        ),
        (
            "a language that is not a string",
            broken(&|v| v["lang"] = json!(7)),
        ),
        (
            "a score as text",
            broken(&|v| v["heads"]["offensive"]["score"] = json!("high")),
        ),
        ("an object id", broken(&|v| v["id"] = json!({"x": 1}))),
        (
            "truncated as text",
            broken(&|v| v["truncated"] = json!("yes")),
        ),
    ] {
        assert!(!validator.is_valid(&bad), "{what} must be refused: {bad}");
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let doc: Value = serde_json::from_str(&http_api::json()).expect("JSON document");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/classify",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1alpha1/comments:analyze",
        "/v1alpha1/comments:suggestscore",
        "/$discovery/rest",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    let t = telemetry();
    for (path, item) in paths {
        for method in item.as_object().expect("a path item").keys() {
            let (status, _) = call(&t, &method.to_uppercase(), path, b"{}".to_vec()).await;
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status}"
            );
        }
    }
    let (status, body) = call(&t, "GET", "/openapi.json", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(body).expect("UTF-8"), http_api::json());
}

/// `tests/fixtures/toy.toml` (one binary `offensive` head) trained into `dir`.
fn toy_model(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(common::fixture("toy.toml")).expect("toy.toml");
    let absolute = |name: &str| format!("{:?}", common::fixture(name).to_string_lossy());
    let text = text
        .replace("\"toy_train.csv\"", &absolute("toy_train.csv"))
        .replace("\"toy_dev.csv\"", &absolute("toy_dev.csv"));
    let config = dir.join("toy.toml");
    std::fs::write(&config, text).expect("write the config");
    let out = dir.join("toy.model");
    let args = [
        "train",
        "--quiet",
        "--config",
        common::arg(&config),
        "--out",
        common::arg(&out),
    ];
    common::assert_success(&common::moderato(&args, ""), "train");
    out
}

const ABUSE: &str = "You stupid idiot, nobody asked you";
const CLEAN: &str = "I love cats, they are great company";

fn flagged(record: &Value) -> bool {
    record["labels"]
        .as_array()
        .is_some_and(|l| l.contains(&json!("offensive")))
}

#[tokio::test]
async fn invisible_padding_does_not_hide_abuse_from_any_producer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = toy_model(dir.path());
    let padded =
        |text: &str| json!({"id": "p", "text": format!("{}{text}", "\u{200B}".repeat(10_000))});
    let (abuse, clean) = (padded(ABUSE), padded(CLEAN));
    let input = format!("{abuse}\n{clean}\n{}\n", json!({"id": 1, "text": ABUSE}));

    // classify: the padded abuse is flagged like the plain one, the padded clean text is not.
    let cli = cli_records(&model, &[], &input);
    assert!(
        flagged(&cli[2]),
        "the toy model flags the sentence: {}",
        cli[2]
    );
    assert!(flagged(&cli[0]), "classify: {}", cli[0]);
    assert!(!flagged(&cli[1]), "classify: {}", cli[1]);
    assert!(cli[0].get("truncated").is_none(), "{}", cli[0]);

    // The HTTP side.
    let t = telemetry();
    load(&t, &model);
    let (status, body) = call(&t, "POST", "/v1/classify", abuse.to_string().into()).await;
    assert_eq!(status, StatusCode::OK);
    let http: Value = serde_json::from_slice(&body).expect("a record");
    assert!(flagged(&http), "POST /v1/classify: {http}");
    let (_, body) = call(&t, "POST", "/v1/classify", clean.to_string().into()).await;
    assert!(!flagged(&serde_json::from_slice(&body).expect("a record")));

    // The stream.
    let stream = stream_record(&model, abuse.to_string().as_bytes());
    assert!(flagged(&stream), "stream: {stream}");
    assert!(!flagged(&stream_record(
        &model,
        clean.to_string().as_bytes()
    )));
}

#[test]
fn visible_text_over_the_limit_is_still_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = toy_model(dir.path());
    let text = format!("{} {ABUSE}", [CLEAN; 4].join(". "));
    let line = json!({"id": 1, "text": text}).to_string();
    let cut = cli_records(&model, &["--max-text-chars", "100"], &line);
    assert_eq!(cut[0]["truncated"], true, "{}", cut[0]);
    assert!(
        !flagged(&cut[0]),
        "only the clean prefix is scored: {}",
        cut[0]
    );
    let whole = cli_records(&model, &[], &line);
    assert!(
        whole[0].get("truncated").is_none() && flagged(&whole[0]),
        "{}",
        whole[0]
    );
}
