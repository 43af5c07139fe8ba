//! `moderato serve` as a child process against Apache Kafka (`scripts/broker`): nothing is
//! lost, bad input is dead-lettered, crashes and rebalances only duplicate what was in flight,
//! SIGTERM drains and commits, and a corrupt model on reload leaves the old one serving.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::kafka::{
    collect, comment, create_topics, distinct_sources, produce, unique, Broker, Got, Sent, Serve,
};

/// Every sent message answered by exactly one record (output or dead letter), checked by the
/// input coordinates; returns how many were answered more than once.
fn duplicates_and_missing(sent: &[Sent], got: &[Got]) -> (usize, Vec<(i32, i64)>) {
    let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for g in got {
        *count.entry(g.source).or_default() += 1;
    }
    let missing = sent
        .iter()
        .map(|s| (s.partition, s.offset))
        .filter(|k| !count.contains_key(k))
        .collect();
    let dups = count.values().filter(|&&c| c > 1).count();
    (dups, missing)
}

const MINUTE: Duration = Duration::from_secs(60);

/// Produces `chunks` × 1,000 comments, one chunk every 50 ms, so a signal lands mid-stream.
async fn steady_stream(broker: Broker, chunks: usize) -> Vec<Sent> {
    let mut sent = Vec::new();
    for chunk in 0..chunks {
        let batch = (chunk * 1000..(chunk + 1) * 1000).map(|i| (format!("k{i}"), comment(i)));
        sent.extend(produce(&broker, batch.collect()).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_ends_in_exactly_one_output_or_dead_letter() {
    let broker = Broker::start();
    create_topics(&broker, 4).await;
    // 10,000 messages; 1% of them malformed in each way, plus 1% too long (truncated, not dead).
    let kinds = [
        "ok",
        "not_utf8",
        "not_json",
        "no_text",
        "empty_text",
        "too_large",
        "long",
    ];
    let mut payloads = Vec::new();
    let mut kind_of = Vec::new();
    for i in 0..10_000usize {
        let kind = if i % 100 < 6 {
            kinds[1 + i % 100]
        } else {
            "ok"
        };
        let payload = match kind {
            "not_utf8" => b"{\"text\": \"\xff\xfe broken\"}".to_vec(),
            "not_json" => format!("{{\"id\": {i}, \"text\": ").into_bytes(),
            "no_text" => format!("{{\"id\": {i}, \"body\": \"misnamed\"}}").into_bytes(),
            "empty_text" => format!("{{\"id\": {i}, \"text\": \"  \"}}").into_bytes(),
            "too_large" => serde_json::json!({"id": i, "text": "x ".repeat(3000)})
                .to_string()
                .into_bytes(),
            "long" => serde_json::json!({"id": i, "text": "word ".repeat(300)})
                .to_string()
                .into_bytes(),
            _ => comment(i),
        };
        payloads.push((format!("thread-{}", i % 37), payload));
        kind_of.push(kind);
    }
    let mut serve = Serve::start(
        &broker,
        "g1",
        "solo",
        &["--max-payload-bytes", "4096", "--max-text-chars", "1000"],
    );
    let sent = produce(&broker, payloads).await;
    let got = collect(&broker, 2 * MINUTE, |g| g.len() >= sent.len()).await;
    // Anything extra would arrive shortly after; a short second look catches duplicates.
    let extra = collect(&broker, Duration::from_secs(3), |g| g.len() > sent.len()).await;
    let (dups, missing) = duplicates_and_missing(&sent, &got);
    assert!(
        missing.is_empty(),
        "{} of {} inputs unanswered, e.g. {:?}\n{}",
        missing.len(),
        sent.len(),
        &missing[..missing.len().min(5)],
        serve.log_text()
    );
    assert_eq!(dups, 0, "a clean run answers every input once");
    assert_eq!(extra.len(), sent.len(), "no record beyond one per input");

    let by_source: BTreeMap<(i32, i64), &Got> = got.iter().map(|g| (g.source, g)).collect();
    for (s, kind) in sent.iter().zip(&kind_of) {
        let g = by_source[&(s.partition, s.offset)];
        assert_eq!(g.key.as_deref(), Some(s.key.as_str()), "the key is kept");
        match *kind {
            "ok" | "long" => {
                assert_eq!(g.topic, broker.output, "{kind} at {:?}", g.source);
                assert!(g.json["heads"]["offensive"]["score"].is_number());
                assert_eq!(g.json["source"]["topic"], broker.input.as_str());
                assert!(g.headers.contains_key("moderato-model-version"));
                assert_eq!(g.json["truncated"].as_bool() == Some(true), *kind == "long");
                if *kind == "ok" {
                    assert!(g.json["meta"]["n"].is_number(), "meta is passed through");
                }
            }
            reason => {
                assert_eq!(g.topic, broker.dlq, "{reason} is dead-lettered");
                assert_eq!(g.headers["moderato-error"], reason);
                assert_eq!(g.payload, s.payload, "the original bytes are kept");
            }
        }
    }
    // Per-partition order: records of one input partition come out in input order.
    let mut last: BTreeMap<(String, i32, i32), i64> = BTreeMap::new();
    for g in &got {
        let k = (g.topic.clone(), g.partition, g.source.0);
        if let Some(prev) = last.insert(k, g.source.1) {
            assert!(
                prev < g.source.1,
                "out of order in {:?}: {prev} then {}",
                g.topic,
                g.source.1
            );
        }
    }
    serve.signal("TERM");
    assert!(serve.wait(MINUTE).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_loses_nothing_and_repeats_only_what_was_in_flight() {
    let broker = Broker::start();
    create_topics(&broker, 3).await;
    let group = unique("crash");
    let args = ["--commit-interval-ms", "1000", "--batch-size", "200"];
    let first = Serve::start(&broker, &group, "first", &args);
    let producer = tokio::spawn(steady_stream(broker.clone(), 40));
    let some = collect(&broker, MINUTE, |g| g.len() >= 4000).await;
    assert!(
        some.len() >= 4000,
        "the service made progress\n{}",
        first.log_text()
    );
    first.signal("KILL");
    drop(first);
    let committed = broker.committed(&group, &broker.input, 3);

    let mut second = Serve::start(&broker, &group, "second", &args);
    let sent = producer.await.expect("producer task");
    let got = collect(&broker, 2 * MINUTE, |g| distinct_sources(g) >= sent.len()).await;
    let (dups, missing) = duplicates_and_missing(&sent, &got);
    assert!(
        missing.is_empty(),
        "{} inputs lost\n{}",
        missing.len(),
        second.log_text()
    );
    // A duplicate may only be an input at or after the offset committed when the first died.
    let mut seen = BTreeSet::new();
    for g in &got {
        if !seen.insert(g.source) {
            let from = committed.get(&g.source.0).copied().unwrap_or(-1).max(0);
            assert!(
                g.source.1 >= from,
                "{:?} repeated but was committed",
                g.source
            );
        }
    }
    println!("kill -9 mid-stream: {dups} of {} inputs answered twice (read after the last commit before the kill)", sent.len());
    second.signal("TERM");
    assert!(second.wait(MINUTE).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_partitions_and_one_takes_over_when_the_other_stops() {
    let broker = Broker::start();
    create_topics(&broker, 6).await;
    let group = unique("pair");
    let mut a = Serve::start(&broker, &group, "a", &[]);
    let mut b = Serve::start(&broker, &group, "b", &[]);
    // Let both join before the first messages, then check who answered what.
    let wait_assigned = |s: &Serve| s.log_text().contains("partitions assigned");
    for _ in 0..300 {
        if wait_assigned(&a) && wait_assigned(&b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = produce(
        &broker,
        (0..3000).map(|i| (format!("u{i}"), comment(i))).collect(),
    )
    .await;
    let got = collect(&broker, 2 * MINUTE, |g| distinct_sources(g) >= first.len()).await;
    assert!(
        duplicates_and_missing(&first, &got).1.is_empty(),
        "nothing missing with two instances"
    );
    let by = |name: &str, got: &[Got]| -> BTreeSet<i32> {
        got.iter()
            .filter(|g| g.headers.get("moderato-instance").map(String::as_str) == Some(name))
            .map(|g| g.source.0)
            .collect()
    };
    let (pa, pb) = (by("a", &got), by("b", &got));
    assert!(
        !pa.is_empty() && !pb.is_empty(),
        "both instances served: a {pa:?}, b {pb:?}"
    );
    assert!(
        pa.is_disjoint(&pb),
        "the partitions were split: a {pa:?}, b {pb:?}"
    );

    a.signal("TERM");
    assert!(
        a.wait(MINUTE).is_some_and(|s| s.success()),
        "a stops cleanly\n{}",
        a.log_text()
    );
    let second = produce(
        &broker,
        (3000..6000)
            .map(|i| (format!("u{i}"), comment(i)))
            .collect(),
    )
    .await;
    let all: Vec<Sent> = first.iter().chain(&second).cloned().collect();
    let got = collect(&broker, 2 * MINUTE, |g| distinct_sources(g) >= all.len()).await;
    assert!(
        duplicates_and_missing(&all, &got).1.is_empty(),
        "nothing missing after a left"
    );
    let late: BTreeSet<(i32, i64)> = second.iter().map(|s| (s.partition, s.offset)).collect();
    let after: Vec<&Got> = got.iter().filter(|g| late.contains(&g.source)).collect();
    assert!(after.iter().all(|g| g.headers["moderato-instance"] == "b"));
    let taken: BTreeSet<i32> = after.iter().map(|g| g.source.0).collect();
    assert!(
        pa.is_subset(&taken),
        "b took over a's partitions {pa:?} (now serves {taken:?})"
    );
    b.signal("TERM");
    assert!(b.wait(MINUTE).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_with_everything_acknowledged_committed() {
    let broker = Broker::start();
    create_topics(&broker, 3).await;
    let group = unique("term");
    let mut serve = Serve::start(
        &broker,
        &group,
        "t",
        &[
            "--shutdown-timeout-ms",
            "8000",
            "--commit-interval-ms",
            "60000",
        ],
    );
    // A steady stream (1,000 every 50 ms), so SIGTERM lands mid-stream.
    let producer = tokio::spawn(steady_stream(broker.clone(), 40));
    let started = collect(&broker, MINUTE, |g| g.len() >= 2000).await;
    assert!(started.len() >= 2000, "{}", serve.log_text());
    serve.signal("TERM");
    let status = serve.wait(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within the 8 s timeout (+2 s): {status:?}\n{}",
        serve.log_text()
    );
    // The auto-commit interval is a minute, so what is committed is the shutdown's commit.
    let committed = broker.committed(&group, &broker.input, 3);
    let got = collect(&broker, Duration::from_secs(5), |_| false).await;
    let mut answered: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for g in &got {
        answered.entry(g.source.0).or_default().insert(g.source.1);
    }
    for (p, offsets) in &answered {
        let top = offsets.iter().max().copied().unwrap_or(-1);
        assert_eq!(
            committed[p],
            top + 1,
            "partition {p}: commit = last acknowledged + 1"
        );
        assert_eq!(
            offsets.len() as i64,
            top + 1,
            "partition {p}: no gap below the commit"
        );
    }
    producer.abort();
    assert!(
        got.len() < 40_000,
        "stopped mid-stream ({} of 40000)",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_on_reload_is_refused_and_the_old_one_keeps_serving() {
    let broker = Broker::start();
    create_topics(&broker, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("live.model");
    std::fs::copy(common::default_model_path(), &model).expect("copy the model");
    let model_arg = model.to_string_lossy().into_owned();
    let mut serve = Serve::start(
        &broker,
        "reload",
        "r",
        &["--model", &model_arg, "--reload-poll-ms", "100"],
    );
    produce(
        &broker,
        (0..10).map(|i| ("k".to_string(), comment(i))).collect(),
    )
    .await;
    let before = collect(&broker, MINUTE, |g| g.len() >= 10).await;
    let sha = before[0].json["model"]["sha256"].clone();
    assert!(sha.is_string(), "{:?}", before.first().map(|g| &g.json));

    // Corrupt the file in place (one flipped byte in the weights), and also send SIGHUP.
    let mut bytes = std::fs::read(&model).expect("read model");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let tmp = dir.path().join("next.model");
    std::fs::write(&tmp, &bytes).expect("write");
    std::fs::rename(&tmp, &model).expect("swap in");
    serve.signal("HUP");
    for _ in 0..100 {
        if serve.log_text().contains("model reload refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        serve.log_text().contains("model reload refused"),
        "{}",
        serve.log_text()
    );
    produce(
        &broker,
        (10..20).map(|i| ("k".to_string(), comment(i))).collect(),
    )
    .await;
    let after = collect(&broker, MINUTE, |g| g.len() >= 20).await;
    assert_eq!(
        after.len(),
        20,
        "the service kept serving\n{}",
        serve.log_text()
    );
    assert!(
        after.iter().all(|g| g.json["model"]["sha256"] == sha),
        "with the old model"
    );
    serve.signal("TERM");
    assert!(serve.wait(MINUTE).is_some_and(|s| s.success()));
}
