//! `--guarantee exactly-once`: every input answered by exactly one committed record, as a
//! `read_committed` reader sees it, through crashes (kill -9 and restart) and a takeover by a
//! second instance. Against librdkafka's mock cluster (which has transactions) and against the
//! real broker of `common::kafka`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::{collect, comment, create_topics, produce, unique, Broker, Got, Sent, Serve};
use moderato::model::source::ModelSource;
use moderato::stream::embedded::EmbeddedBroker;
use moderato::stream::{Guarantee, ServeConfig};

const MINUTE: Duration = Duration::from_secs(60);

/// Inputs never answered, and inputs answered more than once (by input coordinates). The
/// collector reads with librdkafka's default `isolation.level=read_committed`, as the README
/// tells readers of an exactly-once output to.
/// Input coordinates: partition and offset.
type Coordinates = Vec<(i32, i64)>;

fn missing_and_duplicates(sent: &[Sent], got: &[Got]) -> (Coordinates, Coordinates) {
    let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for g in got {
        *count.entry(g.source).or_default() += 1;
    }
    let missing = sent
        .iter()
        .map(|s| (s.partition, s.offset))
        .filter(|k| !count.contains_key(k))
        .collect();
    let dups = count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(k, _)| *k)
        .collect();
    (missing, dups)
}

/// Produces `chunks` × 500 comments (1% malformed), one chunk every 50 ms.
async fn steady_stream(broker: Broker, chunks: usize) -> Vec<Sent> {
    paced_stream(broker, chunks, Duration::from_millis(50)).await
}

/// Produces `chunks` × 500 comments (1% malformed), one chunk every `gap`.
async fn paced_stream(broker: Broker, chunks: usize, gap: Duration) -> Vec<Sent> {
    let mut sent = Vec::new();
    for chunk in 0..chunks {
        let batch = (chunk * 500..(chunk + 1) * 500).map(|i| {
            let payload = if i % 100 == 7 {
                b"{\"id\": 1, \"text\": ".to_vec()
            } else {
                comment(i)
            };
            (format!("k{}", i % 31), payload)
        });
        sent.extend(produce(&broker, batch.collect()).await);
        tokio::time::sleep(gap).await;
    }
    sent
}

/// Waits until `got` answers every input (or the timeout), reading the outputs from the start.
async fn everything(broker: &Broker, sent: &[Sent]) -> Vec<Got> {
    let n = sent.len();
    let got = collect(broker, 2 * MINUTE, |g| {
        common::kafka::distinct_sources(g) >= n
    })
    .await;
    // A little longer: duplicates, if any, would come right behind.
    let extra = collect(broker, Duration::from_secs(3), |_| false).await;
    if extra.len() > got.len() {
        extra
    } else {
        got
    }
}

/// A mock cluster with the topics of `names` (a view whose address is filled in after).
fn mock(names: &Broker, partitions: i32) -> EmbeddedBroker {
    EmbeddedBroker::start(&[
        (names.input.as_str(), partitions),
        (names.output.as_str(), partitions),
        (names.dlq.as_str(), 1),
    ])
    .expect("mock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_each_input_is_answered_once_in_a_committed_transaction() {
    let names = Broker::on("");
    let cluster = mock(&names, 2);
    let broker = Broker {
        brokers: cluster.bootstrap_servers(),
        ..names
    };
    let mut cfg = ServeConfig::with_brokers(&broker.brokers).expect("valid");
    cfg.input_topic = broker.input.clone();
    cfg.output_topic = broker.output.clone();
    cfg.dlq_topic = broker.dlq.clone();
    cfg.group = "eos".into();
    cfg.instance = "eos-1".into();
    cfg.guarantee = Guarantee::ExactlyOnce;
    cfg.batch_size = 100;
    cfg.http = None;
    let model = ModelSource::File(common::default_model_path());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(moderato::service::run(cfg, model, async move {
        let _ = stopped.await;
    }));
    let sent = steady_stream(broker.clone(), 4).await;
    let got = everything(&broker, &sent).await;
    let (missing, dups) = missing_and_duplicates(&sent, &got);
    assert!(missing.is_empty(), "{} lost", missing.len());
    assert!(
        dups.is_empty(),
        "{} duplicated: {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    assert_eq!(got.iter().filter(|g| g.topic == broker.dlq).count(), 20);
    stop.send(()).expect("service still running");
    let summary = service.await.expect("task").expect("run");
    assert!(summary.drained, "{summary:?}");
    assert_eq!(summary.produced + summary.dead_lettered, sent.len() as u64);
}

/// Every input is answered exactly once (the surviving instance's log on failure), and the
/// surviving instance then stops cleanly on SIGTERM.
async fn answered_once_and_stopped(broker: &Broker, sent: &[Sent], mut survivor: Serve) {
    let got = everything(broker, sent).await;
    let (missing, dups) = missing_and_duplicates(sent, &got);
    assert!(
        missing.is_empty(),
        "{} lost\n{}",
        missing.len(),
        survivor.log_text()
    );
    assert!(
        dups.is_empty(),
        "{} duplicated: {:?}\n{}",
        dups.len(),
        &dups[..dups.len().min(5)],
        survivor.log_text()
    );
    survivor.signal("TERM");
    assert!(survivor.wait(MINUTE).is_some_and(|s| s.success()));
}

/// kill -9 mid-stream, then a restart of the same instance: nothing lost, nothing twice.
async fn kill_and_restart(broker: &Broker, group: &str) -> String {
    let args = ["--guarantee", "exactly-once", "--batch-size", "200"];
    let first = Serve::start(broker, group, "eos-a", &args);
    let producer = tokio::spawn(steady_stream(broker.clone(), 20));
    let some = collect(broker, MINUTE, |g| g.len() >= 2000).await;
    assert!(some.len() >= 2000, "progress\n{}", first.log_text());
    first.signal("KILL");
    drop(first);
    let second = Serve::start(broker, group, "eos-a", &args);
    let sent = producer.await.expect("producer task");
    answered_once_and_stopped(broker, &sent, second).await;
    format!(
        "kill -9 and restart: {} inputs, 0 lost, 0 duplicates",
        sent.len()
    )
}

/// Two instances; one is killed and the other takes its partitions over.
async fn two_instances_one_killed(broker: &Broker, group: &str) -> String {
    let args = ["--guarantee", "exactly-once", "--batch-size", "200"];
    let a = Serve::start(broker, group, "eos-x", &args);
    let b = Serve::start(broker, group, "eos-y", &args);
    let producer = tokio::spawn(steady_stream(broker.clone(), 20));
    let some = collect(broker, MINUTE, |g| g.len() >= 2000).await;
    assert!(some.len() >= 2000, "progress\n{}", a.log_text());
    a.signal("KILL");
    drop(a);
    let sent = producer.await.expect("producer task");
    answered_once_and_stopped(broker, &sent, b).await;
    format!(
        "two instances, one killed: {} inputs, 0 lost, 0 duplicates",
        sent.len()
    )
}

/// Two instances; one is frozen (SIGSTOP) past its session timeout, so the group expels it and
/// the other takes its partitions over from the committed offsets. When it thaws, the batches
/// it had read belong to a generation that is gone: the broker refuses their offsets, their
/// transaction is aborted, and the instance reads again from the committed positions.
async fn two_instances_one_frozen(broker: &Broker, group: &str) -> String {
    let args = ["--guarantee", "exactly-once", "--batch-size", "200"];
    let a = Serve::start(broker, group, "eos-frozen", &args);
    let b = Serve::start(broker, group, "eos-awake", &args);
    // A burst of 20,000 comments, so that the stages are full (and the partitions paused) when
    // the instance freezes, then 15,000 over 12 s, so that it has work after the thaw.
    let (burst, tail) = (broker.clone(), broker.clone());
    let producer = tokio::spawn(async move {
        let mut sent = paced_stream(burst, 40, Duration::from_millis(50)).await;
        sent.extend(paced_stream(tail, 30, Duration::from_millis(400)).await);
        sent
    });
    let some = collect(broker, MINUTE, |g| g.len() >= 2000).await;
    assert!(some.len() >= 2000, "progress\n{}", a.log_text());
    a.signal("STOP");
    // The session timeout is 6 s (common::kafka): 9 s is well past it.
    tokio::time::sleep(Duration::from_secs(9)).await;
    a.signal("CONT");
    let sent = producer.await.expect("producer task");
    let got = everything(broker, &sent).await;
    let (missing, dups) = missing_and_duplicates(&sent, &got);
    let log = a.log_text();
    assert!(missing.is_empty(), "{} lost\n{log}", missing.len());
    assert!(dups.is_empty(), "{} duplicated\n{log}", dups.len());
    let rewound = log.contains("read again from the committed positions");
    answered_once_and_stopped(broker, &sent, b).await;
    drop(a);
    format!(
        "two instances, one frozen past its session: {} inputs, 0 lost, 0 duplicates; the \
         frozen one rewound: {rewound}",
        sent.len()
    )
}

// librdkafka's mock cluster acknowledges `TxnOffsetCommit` without storing the offsets, so a
// restart there reads from the start: the crash tests run on Apache Kafka (scripts/broker).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_loses_nothing_and_repeats_nothing() {
    let broker = Broker::start();
    create_topics(&broker, 3).await;
    println!("{}", kill_and_restart(&broker, &unique("eos-crash")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_lose_nothing_and_repeat_nothing() {
    let broker = Broker::start();
    create_topics(&broker, 4).await;
    println!(
        "{}",
        two_instances_one_killed(&broker, &unique("eos-pair")).await
    );
}

/// Two instances started with the same `--instance` share a transactional id: the newer one's
/// registration fences the older, which stops with an error that names the fix (rather than
/// fencing back, each aborting the other's transactions for ever); the newer one answers
/// everything once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_name_stops_the_first_with_a_clear_error() {
    let broker = Broker::start();
    create_topics(&broker, 2).await;
    let group = unique("eos-twin");
    let args = ["--guarantee", "exactly-once", "--batch-size", "200"];
    let mut first = Serve::start(&broker, &group, "eos-twin", &args);
    // Over 8 s, so that the first instance still has batches to commit once the second has
    // registered: a producer learns it is fenced only at its next transaction.
    let stream = paced_stream(broker.clone(), 40, Duration::from_millis(200));
    let producer = tokio::spawn(stream);
    let some = collect(&broker, MINUTE, |g| g.len() >= 1000).await;
    assert!(some.len() >= 1000, "progress\n{}", first.log_text());
    let second = Serve::start(&broker, &group, "eos-twin", &args);
    let status = first.wait(2 * MINUTE);
    let log = first.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the fenced instance goes on ({status:?})\n{log}"
    );
    assert!(
        log.contains("another producer took over transactional id")
            && log.contains("give each instance its own"),
        "{log}"
    );
    let sent = producer.await.expect("producer task");
    answered_once_and_stopped(&broker, &sent, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_frozen_past_its_session_repeats_nothing_when_it_thaws() {
    let broker = Broker::start();
    create_topics(&broker, 4).await;
    println!(
        "{}",
        two_instances_one_frozen(&broker, &unique("eos-frozen")).await
    );
}
