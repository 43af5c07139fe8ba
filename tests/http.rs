//! The HTTP side in-process (axum router, no sockets): readiness before and after the model
//! loads, `POST /v1/classify` with good and bad bodies and with its queue full, the live feed's
//! backlog, resumption and end at shutdown, and the metric names.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use moderato::clock::now;
use moderato::model::file;
use moderato::ops::drift::DriftConfig;
use moderato::ops::http::{router, App, MAX_BATCH, MAX_BODY_BYTES};
use moderato::ops::live::{Item, Live};
use moderato::ops::state::{DashboardState, FeedRecord};
use moderato::ops::{HttpLimits, Telemetry};
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
    common::oneshot(
        router(App::new(Arc::clone(t), None, 10_000)),
        method,
        uri,
        body,
    )
    .await
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
        // Ours, or the standard process metrics every Prometheus client exports.
        assert!(
            name.starts_with("moderato_") || name.starts_with("process_"),
            "{name}: one prefix"
        );
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
                name.ends_with("_seconds") || name.ends_with("_seconds_total"),
                "{name}: unit last (before `_total` on a counter)"
            );
        }
    }
    assert!(
        text.contains("moderato_model_info{name=\"default\""),
        "{text}"
    );
    let build = format!(
        "moderato_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert!(text.contains("\nmoderato_ready "), "{text}");
    // The names before the 2026-12-02 renames are gone, all in one step.
    for old in [
        "moderato_score",
        "moderato_batch_size",
        "moderato_consumer_lag",
        "moderato_drift_rate",
        "moderato_drift_baseline",
    ] {
        assert!(
            types.iter().all(|(n, _)| *n != old),
            "{old} is still exported"
        );
    }
    if cfg!(target_os = "linux") {
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(types.iter().any(|(n, _)| *n == name), "{name} in {text}");
        }
    }
}

/// Reads `n` more server-sent events from `body` (at most 10 s), each as its text.
async fn sse_events(body: &mut axum::body::Body, n: usize) -> Vec<String> {
    let mut text = String::new();
    while text.matches("\n\n").count() < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).expect("utf8"));
        }
    }
    text.split_terminator("\n\n").map(str::to_string).collect()
}

fn sse_request(last_event_id: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().uri("/events");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.body(Body::empty()).expect("request")
}

/// The feed record an SSE event carries.
fn feed_record(event: &str) -> FeedRecord {
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("every event has data");
    serde_json::from_str(data).expect("a feed record")
}

fn event_id(event: &str) -> &str {
    event
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("every event has an id")
}

#[tokio::test]
async fn events_replay_the_backlog_then_stream_resume_by_id_and_end_at_shutdown() {
    let t = telemetry();
    let heads = vec!["offensive".to_string()];
    let scores = [(0usize, 0.9f32, true)];
    let item = |id| Item {
        id,
        text: Some("some text"),
        lang: "latin",
        scores: &scores,
        stance: None,
        dead: None,
        partition: 0,
        offset: 0,
    };
    t.live.record(now(), &heads, "v1", &[item("a"), item("b")]);
    let app = App::new(Arc::clone(&t), None, 10_000);

    // A page that opens after the comments were labelled gets them first, oldest first.
    let res = router(app.clone())
        .oneshot(sse_request(None))
        .await
        .expect("router answers");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let backlog = sse_events(&mut body, 2).await;
    let records: Vec<FeedRecord> = backlog.iter().map(|e| feed_record(e)).collect();
    assert_eq!(records[0].id, "a");
    assert_eq!(records[1].id, "b");
    assert_eq!(records[0].labels, ["offensive"]);
    assert_eq!(records[0].scores["offensive"], 0.9);
    assert!(backlog.iter().all(|e| e.contains("event: comment")));
    // Then what comes later.
    t.live.record(now(), &heads, "v1", &[item("c")]);
    let later = sse_events(&mut body, 1).await;
    assert!(later[0].contains(r#""id":"c""#), "{later:?}");

    // A page that reconnects after `b` gets only `c`; an id from another process gets it all.
    let res = router(app.clone())
        .oneshot(sse_request(Some(event_id(&backlog[1]))))
        .await
        .expect("router answers");
    let mut resumed = res.into_body();
    let first = sse_events(&mut resumed, 1).await;
    assert!(first[0].contains(r#""id":"c""#), "{first:?}");
    let res = router(app.clone())
        .oneshot(sse_request(Some("1.2")))
        .await
        .expect("router answers");
    let mut other = res.into_body();
    let all = sse_events(&mut other, 3).await;
    assert!(all[0].contains(r#""id":"a""#), "{all:?}");

    // Shutdown ends every feed, so none holds a graceful shutdown up.
    app.shutdown.trigger();
    for feed in [&mut body, &mut resumed, &mut other] {
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Some(frame) = feed.frame().await {
                frame.expect("a frame");
            }
        })
        .await;
        assert!(end.is_ok(), "the feed ended at shutdown");
    }
}

#[tokio::test]
async fn classify_refuses_with_503_and_retry_after_when_its_queue_is_full() {
    let t = telemetry();
    load(&t);
    let limits = HttpLimits {
        classify_concurrency: 1,
        classify_queue: 0,
        ..HttpLimits::new()
    };
    let app = App::new(Arc::clone(&t), None, 10_000).with_limits(limits);
    let post = || {
        Request::builder()
            .method("POST")
            .uri("/v1/classify")
            .body(Body::from(r#"{"id": 1, "text": "hello"}"#))
            .expect("request")
    };
    let busy = app.permits.admit().await.expect("the one turn");
    let res = router(app.clone())
        .oneshot(post())
        .await
        .expect("router answers");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    assert!(json_of(&bytes)["error"].is_string());
    assert_eq!(app.permits.admitted(), 1, "the refusal took no place");

    drop(busy);
    let res = router(app).oneshot(post()).await.expect("router answers");
    assert_eq!(res.status(), StatusCode::OK, "served once the turn is free");
}

/// `/api/state` deserializes into the state type, and the page reads exactly the top-level
/// fields it has, and exactly the fields of a feed event.
#[tokio::test]
async fn the_dashboard_state_is_what_the_page_reads() {
    let t = telemetry();
    load(&t);
    let heads = vec!["offensive".to_string()];
    let scores = [(0usize, 0.9f32, true)];
    let item = Item {
        id: "a",
        text: None,
        lang: "ar",
        scores: &scores,
        stance: Some(("Atheism", "AGAINST", 0.8)),
        dead: None,
        partition: 0,
        offset: 0,
    };
    t.live.record(now(), &heads, "v1", &[item]);
    let (status, body) = call(&t, "GET", "/api/state", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let state: DashboardState = serde_json::from_slice(&body).expect("the dashboard's state");
    assert_eq!(state.totals.labelled, 1);
    assert_eq!(state.totals.flagged, 1);
    assert_eq!(state.languages["ar"].flagged, 1);
    assert_eq!(state.stance["Atheism"]["AGAINST"], 1);
    assert_eq!(state.windows["1m"].rates["offensive"], 1.0);
    let model = state.model.expect("the loaded model");
    assert_eq!(model.sha256.len(), 64, "{model:?}");

    // The page reads the state as `s.FIELD` or `state.FIELD`, and a feed event as `c.FIELD`
    // (`feedRow(c)`): each field it reads is one the server sends, and each one the server
    // sends is shown. (Nested fields are read through local names and are not checked here.)
    let page = include_str!("../src/ops/dashboard.html");
    let (_, page) = page.split_once("<script>").expect("the page's script");
    let mut read = fields_read(page, "s.");
    read.extend(fields_read(page, "state."));
    read.retain(|f| !["append", "style"].contains(&f.as_str()));
    assert_eq!(
        sorted(read),
        keys(&json_of(&body)),
        "state fields the page reads (left) and the server sends (right)"
    );
    let feed = t.live.recent();
    let event = feed.first().expect("the item's feed event");
    assert_eq!(
        sorted(fields_read(page, "c.")),
        keys(&serde_json::from_str(&event.json).expect("the event's JSON")),
        "feed fields the page reads (left) and the server sends (right)"
    );
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort_unstable();
    names.dedup();
    names
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    match v {
        Value::Object(fields) => sorted(fields.keys().cloned().collect()),
        other => panic!("not an object: {other}"),
    }
}

/// The names after `object.` in `code`, where `object` starts a word.
fn fields_read(code: &str, object: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$';
    code.match_indices(object)
        .filter(|&(at, _)| !code[..at].ends_with(ident))
        .filter_map(|(at, _)| {
            let rest = &code[at + object.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| rest[..end].to_string())
        })
        .collect()
}

/// The README's metric table names every metric the service makes, and no other, and lists
/// every stream event the events counter can carry.
#[test]
fn the_readme_metric_table_lists_exactly_the_metrics_and_events() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: Vec<&str> = readme
        .split("Metrics (all prefixed `moderato_`")
        .nth(1)
        .expect("the metric table")
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut listed: Vec<String> = table
        .iter()
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| ticked(&outside_parentheses(cell)))
        .map(|n| format!("moderato_{n}"))
        .collect();
    let mut made = moderato::ops::metrics::Metrics::new().names;
    listed.sort();
    made.sort();
    assert_eq!(listed, made, "README metric table against ops::metrics");
    let events = table
        .iter()
        .find(|row| row.contains("`stream_events_total`"))
        .and_then(|row| row.split('|').nth(3))
        .expect("the events row");
    let events: Vec<String> = ticked(events.split_once(':').map_or(events, |(_, v)| v));
    assert_eq!(events, moderato::stream::event::Event::NAMES);
}

/// The text of `cell` outside parentheses (where the table explains a name).
fn outside_parentheses(cell: &str) -> String {
    let mut depth = 0usize;
    cell.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}
