//! Watching a running service against Apache Kafka (`scripts/broker`): `/metrics` counters move as
//! messages flow, a real Prometheus scraping it answers every Grafana dashboard query with series,
//! moderator feedback is joined with the comment text, and `monitor` aggregates a label stream.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{comment, create_topics, free_port, produce, unique, Broker, Serve};
use common::{http_get, wait_for, KillOnDrop};
use moderato::ops::state::DashboardState;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

/// The value of one sample line of a Prometheus exposition (`name{labels}` exactly).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn send(brokers: &str, topic: &str, payloads: &[Value]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for p in payloads {
        let body = p.to_string();
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&body),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_grafana_queries_exist_and_feedback_is_joined() {
    let broker = Broker::start();
    create_topics(&broker, 2).await;
    let feedback_topic = unique("feedback");
    broker.create_topic(&feedback_topic, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let feedback_file = dir.path().join("feedback.jsonl");
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let fb = feedback_file.to_string_lossy().into_owned();
    let serve = Serve::start(
        &broker,
        &unique("observe"),
        "obs",
        &[
            "--http",
            &http,
            "--feedback-topic",
            &feedback_topic,
            "--feedback-file",
            &fb,
        ],
    );
    let base = format!("http://{http}");
    wait_for(&format!("{base}/healthz"), "healthz", |b| {
        b.starts_with("ok")
    });

    let mut payloads: Vec<(String, Vec<u8>)> =
        (0..450).map(|i| (format!("k{i}"), comment(i))).collect();
    payloads.extend((450..500).map(|i| {
        let c = json!({"id": i, "text": "God is great and faith guides me", "target": "Atheism"});
        (format!("k{i}"), c.to_string().into_bytes())
    }));
    payloads.extend((0..5).map(|i| (format!("bad{i}"), b"{broken".to_vec())));
    produce(&broker, payloads).await;
    let metrics = wait_for(&format!("{base}/metrics"), "500 labelled records", |m| {
        sample(m, "moderato_messages_produced_total") == Some(500.0)
            && sample(m, "moderato_dead_letters_total{reason=\"not_json\"}") == Some(5.0)
    });
    assert_eq!(
        sample(&metrics, "moderato_messages_consumed_total"),
        Some(505.0)
    );
    assert_eq!(
        sample(&metrics, "moderato_end_to_end_seconds_count"),
        Some(500.0)
    );
    let classified: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("moderato_classified_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(classified, 500.0);
    assert!(
        metrics.contains("moderato_flagged_total{head=\"offensive\""),
        "{metrics}"
    );
    let ready = wait_for(&format!("{base}/readyz"), "ready", |b| {
        b.contains("\"ready\":true")
    });
    assert!(ready.contains("partitions_assigned"));
    let state: DashboardState =
        serde_json::from_str(&http_get(&format!("{base}/api/state")).unwrap_or_default())
            .expect("the dashboard's state");
    assert_eq!(state.totals.labelled, 500);

    // Moderators' decisions name comments by id only; serve joins them with the text it saw.
    let decisions: Vec<Value> = (0..3)
        .map(|i| json!({"id": i, "head": "offensive", "label": i % 2 == 0}))
        .chain([json!({"id": "never-seen", "head": "hate", "label": true})])
        .collect();
    send(&broker.brokers, &feedback_topic, &decisions).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&feedback_file).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 4 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(lines.len(), 4, "{}", serve.log_text());
    let original: Value = serde_json::from_slice(&comment(1)).expect("json");
    assert_eq!(
        lines[1]["text"], original["text"],
        "joined with the text serve classified"
    );
    assert_eq!(lines[1]["joined"], "recent");
    assert_eq!(lines[3]["joined"], "missing");
    assert!(lines[3]["text"].is_null());
}

/// A label record as `serve` writes it.
fn label_record(i: usize, offensive: bool) -> Value {
    json!({
        "schema_version": 1, "id": i, "labels": if offensive { json!(["offensive"]) } else { json!([]) },
        "heads": {
            "offensive": {"flag": offensive, "score": if offensive { 0.9 } else { 0.1 }},
            "hate": {"flag": false, "score": 0.05},
            "stance": {"label": "AGAINST", "scores": {"AGAINST": 0.6, "FAVOR": 0.3, "NONE": 0.1}, "target": "Atheism"}
        },
        "model": {"name": "default", "version": if i % 2 == 0 { "v1" } else { "v2" }, "sha256": "x"},
        "source": {"topic": "comments", "partition": 0, "offset": i, "timestamp": 1},
        "lang": if i % 3 == 0 { "ar" } else { "latin" }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_aggregates_a_label_stream_from_many_instances() {
    let broker = Broker::start();
    create_topics(&broker, 2).await;
    let records: Vec<Value> = (0..300).map(|i| label_record(i, i % 4 == 0)).collect();
    send(&broker.brokers, &broker.output, &records).await;
    let port = free_port();
    let _monitor = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_moderato"))
            .args([
                "monitor",
                "--brokers",
                &broker.brokers,
                "--topic",
                &broker.output,
            ])
            .args(["--from-beginning", "--http", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("monitor starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let body = wait_for(
        &format!("{base}/api/state"),
        "300 records aggregated",
        |b| serde_json::from_str::<DashboardState>(b).is_ok_and(|v| v.totals.labelled == 300),
    );
    let state: DashboardState = serde_json::from_str(&body).expect("the dashboard's state");
    assert_eq!(state.mode, "monitor");
    let rate = state.windows["1m"].rates["offensive"];
    assert!((rate - 0.25).abs() < 1e-9, "{rate}");
    assert_eq!(state.models_seen["v1"], 150);
    assert_eq!(state.models_seen["v2"], 150);
    assert_eq!(state.languages["ar"].total, 100);
    assert_eq!(state.stance["Atheism"]["AGAINST"], 300);
    let metrics = http_get(&format!("{base}/metrics")).unwrap_or_default();
    assert_eq!(
        sample(
            &metrics,
            "moderato_flagged_total{head=\"offensive\",lang=\"ar\",model_version=\"v1\"}"
        ),
        Some(25.0),
        "{metrics}"
    );
}

/// Every query of a Grafana dashboard's panels and variables: `(where, expression)`.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((format!("panel {title:?}"), expr.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Evaluates `expr` through Prometheus's HTTP API: the series it returns, or why it failed.
fn evaluate(prometheus: &str, expr: &str) -> Result<usize, String> {
    let url = format!("{prometheus}/api/v1/query");
    let answer: Value = ureq::get(&url)
        .query("query", expr)
        .timeout(Duration::from_secs(5))
        .call()
        .map_err(|e| match e {
            ureq::Error::Status(_, r) => r.into_string().unwrap_or_default(),
            other => other.to_string(),
        })?
        .into_json()
        .map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(answer.to_string());
    }
    Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_query_returns_series_from_a_prometheus_scraping_serve() {
    let broker = Broker::start();
    create_topics(&broker, 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let http = format!("127.0.0.1:{}", free_port());
    let serve = Serve::start(&broker, &unique("prom"), "prom", &["--http", &http]);
    let base = format!("http://{http}");
    wait_for(&format!("{base}/readyz"), "ready", |b| {
        b.contains("\"ready\":true")
    });

    // Prometheus itself (Debian's, which scripts/test installs), scraping serve every second.
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: moderato\n    static_configs:\n      - targets: [\"{http}\"]\n"
        ),
    )
    .expect("write prometheus.yml");
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (Debian's `prometheus` package; scripts/test installs it)"),
    );
    let prometheus = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{prometheus}/-/ready"), "Prometheus ready", |b| {
        b.contains("Ready")
    });

    // Traffic for 20 s: comments of every script, stance comments and a few broken ones, so
    // every panel has something to show and every rate window two samples or more.
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(20) {
        let mut batch: Vec<(String, Vec<u8>)> =
            (i..i + 40).map(|j| (format!("k{j}"), comment(j))).collect();
        batch.extend((i..i + 10).map(|j| {
            let c =
                json!({"id": j, "text": "God is great and faith guides me", "target": "Atheism"});
            (format!("s{j}"), c.to_string().into_bytes())
        }));
        batch.push((format!("bad{i}"), b"{broken".to_vec()));
        produce(&broker, batch).await;
        i += 50;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_for(&format!("{base}/metrics"), "consumer lag", |m| {
        m.contains("moderato_consumer_lag_messages{")
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(evaluate(&prometheus, "up{job=\"moderato\"} == 1"), Ok(1));

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/moderato.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    // The `head` variable's own query, then a value of it in the panels that use it.
    let heads: Value = ureq::get(&format!("{prometheus}/api/v1/label/head/values"))
        .query("match[]", "moderato_score_ratio_bucket")
        .call()
        .expect("label values")
        .into_json()
        .expect("JSON");
    let head = heads["data"][0]
        .as_str()
        .expect("the head variable has values")
        .to_string();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut empty = Vec::new();
    for (place, expr) in &queries {
        let expr = expr.replace("$head", &head);
        match evaluate(&prometheus, &expr) {
            Ok(0) => empty.push(format!("{place}: {expr} returned no series")),
            Ok(_) => {}
            Err(why) => empty.push(format!("{place}: {expr} failed: {why}")),
        }
    }
    assert!(
        empty.is_empty(),
        "{}\n{}",
        empty.join("\n"),
        serve.log_text()
    );
    // A panel naming a metric the service does not export would be caught the same way.
    assert_eq!(
        evaluate(&prometheus, "sum(rate(moderato_no_such_metric_total[1m]))"),
        Ok(0)
    );
    assert!(evaluate(&prometheus, "sum(rate(moderato_classified_total[1m]").is_err());
}
