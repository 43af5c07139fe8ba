//! The serve loop in-process against librdkafka's mock cluster (fast, no broker to install), and
//! `moderato demo`, the README's main job.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::kafka::{collect, produce, Broker};
use moderato::model::file;
use moderato::model::source::ModelSource;
use moderato::ops::state::DashboardState;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::{self, ModelSlot, ServeConfig};

/// A mock broker with the test topics (`partitions` each for input and output), the tests'
/// view of it, and the service settings that read and write them in `group`.
fn mock_service(partitions: i32, group: &str) -> (EmbeddedBroker, Broker, ServeConfig) {
    let mut view = Broker::on("");
    let topics = [
        (view.input.as_str(), partitions),
        (view.output.as_str(), partitions),
        (view.dlq.as_str(), 1),
    ];
    let broker = EmbeddedBroker::start(&topics).expect("mock broker");
    view.brokers = broker.bootstrap_servers();
    let mut cfg = ServeConfig::with_brokers(&view.brokers).expect("valid");
    cfg.input_topic = view.input.clone();
    cfg.output_topic = view.output.clone();
    cfg.dlq_topic = view.dlq.clone();
    cfg.group = group.into();
    // No HTTP side: tests in one binary run at once, and one port cannot serve them all.
    cfg.http = None;
    (broker, view, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_labels_good_messages_and_dead_letters_bad_ones() {
    let (_broker, view, cfg) = mock_service(2, "mock");
    let model = ModelSource::File(common::default_model_path());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(moderato::service::run(cfg, model, async move {
        let _ = stopped.await;
    }));

    let mut payloads: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("k{i}"), common::kafka::comment(i)))
        .collect();
    payloads.push(("bad".into(), b"{\"id\": 1".to_vec()));
    payloads.push(("bad".into(), b"\xc3\x28".to_vec()));
    let sent = produce(&view, payloads).await;
    let got = collect(&view, Duration::from_secs(60), |g| g.len() >= sent.len()).await;
    assert_eq!(got.len(), sent.len());
    let dead: Vec<&str> = got
        .iter()
        .filter(|g| g.topic == view.dlq)
        .map(|g| g.headers["moderato-error"].as_str())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.contains(&"not_json") && dead.contains(&"not_utf8"));
    let offensive = got
        .iter()
        .filter(|g| g.json["labels"].as_array().is_some_and(|l| !l.is_empty()))
        .count();
    assert!(
        offensive > 0 && offensive < 200,
        "some comments are flagged, not all: {offensive}"
    );

    stop.send(()).expect("service still running");
    let summary = service.await.expect("task").expect("run");
    assert_eq!((summary.produced, summary.dead_lettered), (200, 2));
    assert!(summary.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_deliveries_are_retried_and_nothing_is_skipped() {
    let (broker, view, cfg) = mock_service(1, "faulty");
    let payloads = (0..50)
        .map(|i| (format!("k{i}"), common::kafka::comment(i)))
        .collect();
    let sent = produce(&view, payloads).await;
    // The service's first produce requests are refused, permanently as far as librdkafka is
    // concerned: only the service's own retry gets the records out.
    broker.fail_produce_requests(
        5,
        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    );
    let model = ModelSource::File(common::default_model_path());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(moderato::service::run(cfg, model, async move {
        let _ = stopped.await;
    }));
    let got = collect(&view, Duration::from_secs(60), |g| g.len() >= sent.len()).await;
    stop.send(()).expect("service still running");
    let summary = service.await.expect("task").expect("run");
    assert!(summary.retries > 0, "the faults were hit: {summary:?}");
    let answered: std::collections::BTreeSet<i64> = got.iter().map(|g| g.source.1).collect();
    assert_eq!(
        answered.len(),
        sent.len(),
        "every input answered despite the faults"
    );
    assert_eq!(summary.produced, 50);
}

/// Keeps the largest in-flight byte count the loop reports.
#[derive(Default)]
struct PeakInFlight(std::sync::atomic::AtomicUsize);

impl stream::Observe for PeakInFlight {
    fn in_flight(&self, bytes: usize) {
        self.0
            .fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_in_flight_stay_within_the_budget_whatever_the_batch_size() {
    let (_broker, view, mut cfg) = mock_service(2, "budget");
    // 48 comments of 100 KiB (4.7 MiB) in a batch size that would take them all at once.
    cfg.max_inflight_bytes = 1 << 20;
    cfg.batch_size = 10_000;
    cfg.batch_timeout = Duration::from_millis(200);
    let text = "a long comment, and a polite one. ".repeat(3000);
    let payloads: Vec<(String, Vec<u8>)> = (0..48)
        .map(|i| {
            let p = serde_json::json!({"id": i, "text": text}).to_string();
            (format!("k{i}"), p.into_bytes())
        })
        .collect();
    let largest = payloads.iter().map(|(k, p)| k.len() + p.len()).max();
    let sent = produce(&view, payloads).await;
    let model = file::load(&common::default_model_path()).expect("default model");
    let slot = Arc::new(ModelSlot::new(model, None));
    let peak = Arc::new(PeakInFlight::default());
    let observer: Arc<dyn stream::Observe> = peak.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(stream::run(cfg, slot, observer, async move {
        let _ = stopped.await;
    }));
    let got = collect(&view, Duration::from_secs(60), |g| g.len() >= sent.len()).await;
    stop.send(()).expect("service still running");
    let summary = service.await.expect("task").expect("run");
    assert_eq!(got.len(), sent.len(), "every comment answered");
    assert_eq!(summary.produced, 48);
    let peak = peak.0.load(std::sync::atomic::Ordering::Relaxed);
    let bound = (1 << 20) + largest.unwrap_or(0);
    assert!(
        peak > 0 && peak <= bound,
        "peak {peak} bytes in flight, bound {bound}"
    );
}

#[test]
fn serve_with_an_embedded_broker_prints_its_address_and_serves_any_client() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moderato"))
        .args(["serve", "--embedded-broker", "--http", "off"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    let address = first
        .trim()
        .strip_prefix("embedded broker: ")
        .unwrap_or_else(|| panic!("prints its address first: {first:?}"))
        .to_string();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let got = runtime.block_on(async {
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &address)
            .create()
            .expect("producer");
        let payload = common::kafka::comment(1);
        producer
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to("comments").payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("sent to the embedded broker");
        let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &address)
            .set("group.id", "reader")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        rdkafka::consumer::Consumer::subscribe(&consumer, &["comment-labels"]).expect("subscribe");
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a label within a minute")
            .expect("a message");
        rdkafka::Message::payload(&m)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    });
    let _ = child.kill();
    let _ = child.wait();
    let record: serde_json::Value = serde_json::from_slice(&got).expect("JSON");
    assert_eq!(record["id"], 1);
}

#[test]
fn demo_prints_the_labelled_samples_and_the_dead_letter() {
    let out = common::moderato(
        &["demo", "--no-stdin", "--pace-ms", "0", "--http", "off"],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(text.contains("algeriatimes-isis-alqaeda-c2"), "{text}");
    assert!(text.contains("dead letter: missing `text`"), "{text}");
    assert!(text.contains("labelled, 1 dead-lettered"), "{text}");
}

#[test]
fn demo_labels_lines_typed_on_stdin() {
    let out = common::moderato(
        &["demo", "--pace-ms", "0", "--http", "off"],
        "you are a stupid pathetic idiot\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::describe(&out));
    let line = text
        .lines()
        .find(|l| l.starts_with("stdin-"))
        .unwrap_or_else(|| panic!("the typed comment is labelled: {text}"));
    assert!(line.contains("offensive"), "{line}");
}

#[test]
fn demo_says_where_a_reader_disagrees_with_the_model() {
    // The same abusive line as above, which the model flags, with a reader who says it is fine.
    let typed =
        r#"{"id": "typed-1", "text": "you are a stupid pathetic idiot", "reader": {"flags": []}}"#;
    let out = common::moderato(&["demo", "--pace-ms", "0", "--http", "off"], typed);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::describe(&out));
    let line = text
        .lines()
        .find(|l| l.starts_with("typed-1"))
        .unwrap_or_else(|| panic!("the typed comment is labelled: {text}"));
    assert!(
        line.contains("offensive") && line.contains("✗ a reader says ok"),
        "{line}"
    );
}

#[test]
fn json_logs_carry_no_comment_text() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moderato"))
        .args([
            "--log-format",
            "json",
            "demo",
            "--no-stdin",
            "--pace-ms",
            "0",
            "--http",
            "off",
        ])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("demo runs");
    assert!(out.status.success(), "{}", common::describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let samples = include_str!("../examples/comments.jsonl");
    for sample in samples.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(sample).expect("sample JSON");
        let text = v["text"].as_str().expect("text");
        let probe: String = text.chars().take(24).collect();
        assert!(
            !stderr.contains(&probe),
            "comment text in the logs: {probe}"
        );
    }
}

/// A `moderato` child process with `args` against an in-test mock cluster; stderr goes to a
/// file. Killed when dropped.
struct Child {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Child {
    fn start(args: &[&str], rust_log: &str, log: std::path::PathBuf) -> Child {
        let err = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_moderato"))
            .args(args)
            .env("RUST_LOG", rust_log)
            .env_remove("MODERATO_MODEL")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(err))
            .spawn()
            .expect("moderato starts");
        Child { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most 30 s) for the exit status.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A label record whose head, target, label and model version are all the `i`-th of their
/// kind: what a writer of the label topic that names things at will can send.
fn hostile_label_record(i: usize) -> Vec<u8> {
    serde_json::json!({
        "schema_version": 2, "id": i, "labels": [format!("head-{i}")],
        "heads": {
            format!("head-{i}"): {"flag": true, "score": 0.9},
            "offensive": {"flag": false, "score": 0.1},
            "stance": {"label": format!("label-{i}"), "scores": {format!("label-{i}"): 0.9}, "target": format!("target-{i}")}
        },
        "model": {"name": "m", "version": format!("v{i}"), "sha256": "x"},
        "lang": "en", "script": "latin"
    })
    .to_string()
    .into_bytes()
}

/// The distinct values of `label` over the samples of `metric` in a Prometheus exposition.
fn label_values(metrics: &str, metric: &str, label: &str) -> std::collections::BTreeSet<String> {
    let key = format!("{label}=\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

#[test]
fn monitor_caps_the_label_values_a_topic_writer_chooses_and_counts_the_rest() {
    const RECORDS: usize = 300;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut view = Broker::on("");
    let broker = EmbeddedBroker::start(&[(view.input.as_str(), 1)]).expect("mock broker");
    view.brokers = broker.bootstrap_servers();
    let payloads = (0..RECORDS)
        .map(|i| (format!("k{i}"), hostile_label_record(i)))
        .collect();
    runtime.block_on(produce(&view, payloads));
    let port = common::kafka::free_port();
    let http = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "monitor",
        "--brokers",
        &view.brokers,
        "--topic",
        &view.input,
        "--from-beginning",
        "--http",
        &http,
    ];
    let monitor = Child::start(&args, "warn", dir.path().join("monitor.log"));
    let base = format!("http://{http}");
    let body = common::wait_for(&format!("{base}/api/state"), "every record read", |b| {
        serde_json::from_str::<DashboardState>(b).is_ok_and(|v| v.totals.labelled == RECORDS as u64)
    });
    let state: DashboardState = serde_json::from_str(&body).expect("the dashboard's state");
    let metrics = common::http_get(&format!("{base}/metrics")).unwrap_or_default();
    let most = 50 + 1; // the cap, and `other`
    for (metric, label) in [
        ("moderato_flagged_total", "head"),
        ("moderato_score_ratio_bucket", "head"),
        ("moderato_stance_total", "target"),
        ("moderato_stance_total", "label"),
        ("moderato_classified_total", "model_version"),
    ] {
        let values = label_values(&metrics, metric, label);
        assert!(
            values.len() <= most && values.contains("other"),
            "{metric}{{{label}}}: {} values\n{}",
            values.len(),
            monitor.log_text()
        );
    }
    let (heads, targets, models) = (
        state.heads.len(),
        state.stance.len(),
        state.models_seen.len(),
    );
    assert!(
        heads <= most && targets <= most && models <= most,
        "{state:?}"
    );
    assert_eq!(state.models_seen["other"], RECORDS as u64 - 50, "{state:?}");
    // `offensive` is among the first 50 heads: its own series survive.
    assert!(label_values(&metrics, "moderato_score_ratio_bucket", "head").contains("offensive"));
    for dimension in ["head", "target", "label", "model_version"] {
        let series = format!("moderato_monitor_lumped_total{{dimension=\"{dimension}\"}}");
        let lumped = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok());
        // `offensive` takes one of the 50 head places: one head fewer of the hostile ones.
        let want = if dimension == "head" {
            RECORDS - 49
        } else {
            RECORDS - 50
        };
        assert_eq!(lumped, Some(want as f64), "{dimension}:\n{metrics}");
    }
}

#[test]
fn no_comment_text_and_no_secret_reaches_the_logs_metrics_or_state_even_at_trace() {
    const COMMENT: &str = "COMMENT-MARKER-5e2b";
    const SASL: &str = "SASL-SECRET-MARKER-91c4";
    const API_KEY: &str = "API-KEY-MARKER-d07f";
    const WRONG_KEY: &str = "WRONG-KEY-MARKER-33aa";
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_broker, view, _) = mock_service(1, "secrets");
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, format!("{API_KEY}\n")).expect("keys file");
    let port = common::kafka::free_port();
    let http = format!("127.0.0.1:{port}");
    let sasl = format!("sasl.password={SASL}");
    let args = [
        "serve",
        "--brokers",
        &view.brokers,
        "--group",
        "secrets",
        "--input-topic",
        &view.input,
        "--output-topic",
        &view.output,
        "--dlq-topic",
        &view.dlq,
        "--http",
        &http,
        "--api-keys",
        common::arg(&keys),
        "-X",
        &sasl,
        "-X",
        "debug=generic,conf,security,broker,cgrp,topic,msg",
    ];
    let mut serve = Child::start(&args, "trace", dir.path().join("serve.log"));
    let base = format!("http://{http}");
    common::wait_for(&format!("{base}/readyz"), "ready", |b| !b.is_empty());
    let good = serde_json::json!({"id": "s-1", "text": format!("{COMMENT} you stupid idiot")});
    let cut = format!("{{\"id\": \"s-2\", \"text\": \"{COMMENT} unterminated");
    let mut not_utf8 = format!("{{\"text\": \"{COMMENT} ").into_bytes();
    not_utf8.extend_from_slice(b"\xff\"}");
    let payloads = vec![
        ("a".to_string(), good.to_string().into_bytes()),
        ("b".to_string(), cut.into_bytes()),
        ("c".to_string(), not_utf8),
    ];
    let sent = runtime.block_on(produce(&view, payloads));
    let got = runtime.block_on(collect(&view, Duration::from_secs(60), |g| {
        g.len() >= sent.len()
    }));
    assert_eq!(got.len(), sent.len(), "{}", serve.log_text());
    let body = serde_json::json!({"id": "h-1", "text": format!("{COMMENT} over http")});
    let ok = ureq::post(&format!("{base}/v1/classify?key={API_KEY}"))
        .send_json(body.clone())
        .map(|r| r.status());
    assert_eq!(ok.ok(), Some(200), "{}", serve.log_text());
    let refused = ureq::post(&format!("{base}/v1/classify?key={WRONG_KEY}")).send_json(body);
    assert!(refused.is_err(), "a wrong key is refused");
    let metrics = common::http_get(&format!("{base}/metrics")).unwrap_or_default();
    // `/api/state` carries comment previews: it needs the key when keys are configured.
    assert!(common::http_get(&format!("{base}/api/state")).is_none());
    let state = common::http_get(&format!("{base}/api/state?key={API_KEY}")).unwrap_or_default();
    assert!(
        metrics.contains("moderato_messages_consumed_total 3"),
        "{metrics}"
    );
    assert!(state.contains("\"consumed\":3"), "{state}");
    for (what, text) in [("/metrics", &metrics), ("/api/state", &state)] {
        for secret in [SASL, API_KEY, WRONG_KEY] {
            assert!(!text.contains(secret), "{what} holds {secret}:\n{text}");
        }
    }
    let status = serve.stop();
    let log = serve.log_text();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(
        log.contains("TRACE") && log.contains("DEBUG"),
        "trace level was on:\n{log}"
    );
    assert!(log.contains("librdkafka"), "librdkafka's debug log was on");
    for secret in [COMMENT, SASL, API_KEY, WRONG_KEY] {
        let at = log.find(secret).map(|i| {
            log.get(i.saturating_sub(300)..(i + 100).min(log.len()))
                .unwrap_or(secret)
        });
        assert!(
            at.is_none(),
            "the log holds {secret}: …{}…",
            at.unwrap_or_default()
        );
    }
}
