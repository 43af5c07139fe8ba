//! The serve loop in-process against librdkafka's mock cluster (fast, no broker to install), and
//! `moderato demo`, the README's main job.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::kafka::{collect, produce, DLQ, INPUT, OUTPUT};
use moderato::model::file;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::{self, ModelSlot, NoObserver, ServeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_loop_labels_good_messages_and_dead_letters_bad_ones() {
    let broker = EmbeddedBroker::start(&[(INPUT, 2), (OUTPUT, 2), (DLQ, 1)]).expect("mock broker");
    let mut cfg = ServeConfig::with_brokers(&broker.bootstrap_servers()).expect("valid");
    cfg.input_topic = INPUT.into();
    cfg.output_topic = OUTPUT.into();
    cfg.dlq_topic = DLQ.into();
    cfg.group = "mock".into();
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
    let sent = produce(&broker.bootstrap_servers(), payloads).await;
    let got = collect(&broker.bootstrap_servers(), Duration::from_secs(60), |g| {
        g.len() >= sent.len()
    })
    .await;
    assert_eq!(got.len(), sent.len());
    let dead: Vec<&str> = got
        .iter()
        .filter(|g| g.topic == DLQ)
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

#[test]
fn demo_prints_the_labelled_samples_and_the_dead_letter() {
    let out = common::moderato(&["demo", "--no-stdin", "--pace-ms", "0"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(text.contains("algeriatimes-isis-alqaeda-c2"), "{text}");
    assert!(text.contains("dead letter: missing `text`"), "{text}");
    assert!(text.contains("labelled, 1 dead-lettered"), "{text}");
}

#[test]
fn demo_labels_lines_typed_on_stdin() {
    let out = common::moderato(
        &["demo", "--pace-ms", "0"],
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
