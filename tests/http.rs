//! The HTTP side in-process (axum router, no sockets): readiness before and after the model
//! loads, `POST /v1/classify` with good and bad bodies, and the metric names.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use moderato::model::file;
use moderato::serve::drift::DriftConfig;
use moderato::serve::http::{router, App, MAX_BATCH, MAX_BODY_BYTES};
use moderato::serve::live::Live;
use moderato::serve::Telemetry;
use moderato::stream::pipeline::Observe;
use moderato::stream::ModelSlot;
use serde_json::{json, Value};
use tower::ServiceExt;

fn telemetry() -> Arc<Telemetry> {
    Arc::new(Telemetry::new(
        Live::new("serve", "test".into(), DriftConfig::default()),
        true,
    ))
}

fn load(t: &Telemetry) {
    let model = file::load(&common::default_model_path()).expect("default model");
    let _ = t.health.model.set(Arc::new(ModelSlot::new(model, None)));
}

async fn call(t: &Arc<Telemetry>, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let app = router(App::new(Arc::clone(t), None, 10_000));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let res = app.oneshot(req).await.expect("router answers");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON body")
}

#[tokio::test]
async fn readyz_waits_for_the_model_partitions_and_broker() {
    let t = telemetry();
    let (status, body) = call(&t, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(&body)["model_loaded"], false);
    assert_eq!(
        call(&t, "GET", "/healthz", vec![]).await.0,
        StatusCode::OK,
        "alive all along"
    );

    load(&t);
    let (status, body) = call(&t, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no partitions yet");
    assert_eq!(json_of(&body)["model_loaded"], true);

    t.assigned(&[0, 1]);
    let (status, body) = call(&t, "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["ready"], true);
}

#[tokio::test]
async fn classify_answers_like_the_cli_and_refuses_bad_bodies_with_4xx() {
    let t = telemetry();
    let one = br#"{"id": "a", "text": "You are a pathetic idiot"}"#.to_vec();
    assert_eq!(
        call(&t, "POST", "/v1/classify", one.clone()).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "no model yet"
    );
    load(&t);
    let (status, body) = call(&t, "POST", "/v1/classify", one.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v["id"], "a");
    assert!(v["labels"]
        .as_array()
        .is_some_and(|l| l.contains(&json!("offensive"))));
    // Same record as `moderato classify`.
    let cli = common::moderato(&["classify"], std::str::from_utf8(&one).expect("utf8"));
    let cli: Value = serde_json::from_slice(cli.stdout.trim_ascii()).expect("classify JSON");
    assert_eq!(v, cli);

    let batch = json!([{"id": 1, "text": "hello there"}, {"id": 2, "text": "النص", "target": "Covid Vaccine"}]);
    let (status, body) = call(&t, "POST", "/v1/classify", batch.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert!(v[1]["heads"]["stance"]["label"].is_string());

    for (body, want, says) in [
        (b"{nope".to_vec(), StatusCode::BAD_REQUEST, "not JSON"),
        (b"42".to_vec(), StatusCode::BAD_REQUEST, "comment object"),
        (
            br#"{"id": 1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`text`",
        ),
        (
            br#"[{"id": 1, "text": "ok"}, {"id": 2, "text": ""}]"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "comment 1",
        ),
        (
            json!(vec![json!({"text": "x"}); MAX_BATCH + 1])
                .to_string()
                .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most",
        ),
        (
            vec![b' '; MAX_BODY_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
    ] {
        let (status, body) = call(&t, "POST", "/v1/classify", body).await;
        assert_eq!(status, want, "{}", String::from_utf8_lossy(&body));
        assert!(
            String::from_utf8_lossy(&body).contains(says),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn metrics_follow_prometheus_conventions() {
    let t = telemetry();
    load(&t);
    let (status, body) = call(&t, "GET", "/metrics", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).expect("utf8");
    let types: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert!(types.len() >= 8, "{text}");
    for (name, kind) in &types {
        assert!(name.starts_with("moderato_"), "{name}: one prefix");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_eq!(
            *kind == "counter",
            name.ends_with("_total"),
            "{name} ({kind}): _total iff counter"
        );
        if name.contains("seconds") {
            assert!(
                name.ends_with("_seconds") || name.ends_with("_timestamp_seconds"),
                "{name}: unit last"
            );
        }
    }
    assert!(
        text.contains("moderato_model_info{name=\"default\""),
        "{text}"
    );
}
