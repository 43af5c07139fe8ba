//! The serve loop in-process against librdkafka's mock cluster (fast, no broker to install), and
//! `moderato demo`, the README's main job.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::kafka::{collect, produce, Broker};
use moderato::model::file;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::{self, ModelSlot, NoObserver, ServeConfig};

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
    (broker, view, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_labels_good_messages_and_dead_letters_bad_ones() {
    let (_broker, view, cfg) = mock_service(2, "mock");
    let model = file::load(&common::default_model_path()).expect("default model");
    let slot = Arc::new(ModelSlot::new(model, None));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(stream::run(cfg, slot, Arc::new(NoObserver), async move {
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
    let model = file::load(&common::default_model_path()).expect("default model");
    let slot = Arc::new(ModelSlot::new(model, None));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(stream::run(cfg, slot, Arc::new(NoObserver), async move {
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
