//! End-to-end stream benchmark: `moderato serve` (the release binary, default model) against
//! Apache Kafka on this machine (`scripts/broker`), driven and read by a Kafka client of our own.
//!
//! `cargo bench --bench stream` prints
//! - sustained throughput: a backlog of comments drained by a fresh consumer group, measured
//!   between the first and last output record's timestamps; median of several runs;
//! - end-to-end latency at a fixed offered load (5,000 comments/s by default): from the input's
//!   Kafka timestamp to the moment our consumer receives the labelled record; p50 / p99 / max.
//!
//! Options (after `--`): `--backlog N` (default 200000), `--runs N` (3), `--rate N` (5000),
//! `--seconds N` (10), `--warmup-seconds N` (10, offered load left out of the latency figures
//! first), `--poll-metrics` (a client polls the service's `/metrics` every second), `--guarantee NAME`
//! (`at-least-once`, the default, or `exactly-once`). `BENCH_BREAKDOWN=1`
//! also prints, for every 500th comment, input→output and output→reader times.

#[path = "../tests/common/kafka.rs"]
#[allow(dead_code)]
mod kafka;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka::{create_topics, produce, unique, Broker, Serve};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Comments of typical length, English and Arabic, cycled.
const SAMPLES: &str = include_str!("../examples/comments.jsonl");

struct Options {
    backlog: usize,
    runs: usize,
    rate: usize,
    seconds: u64,
    poll_metrics: bool,
    warmup_seconds: u64,
    guarantee: String,
}

fn options() -> Options {
    let mut o = Options {
        backlog: 200_000,
        runs: 3,
        rate: 5000,
        seconds: 10,
        poll_metrics: false,
        warmup_seconds: 10,
        guarantee: "at-least-once".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let next = |i: usize| args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match args[i].as_str() {
            "--backlog" => o.backlog = next(i).unwrap_or(o.backlog),
            "--runs" => o.runs = next(i).unwrap_or(o.runs),
            "--rate" => o.rate = next(i).unwrap_or(o.rate),
            "--seconds" => o.seconds = next(i).map_or(o.seconds, |v| v as u64),
            "--poll-metrics" => o.poll_metrics = true,
            "--warmup-seconds" => o.warmup_seconds = next(i).map_or(o.warmup_seconds, |v| v as u64),
            "--guarantee" => {
                if let Some(g) = args.get(i + 1) {
                    o.guarantee = g.clone();
                }
            }
            _ => {}
        }
        i += 1;
    }
    o
}

fn texts() -> Vec<String> {
    SAMPLES
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect()
}

fn payload(texts: &[String], i: usize) -> Vec<u8> {
    serde_json::json!({"id": i, "text": texts[i % texts.len()]})
        .to_string()
        .into_bytes()
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn output_consumer(broker: &Broker) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("group.id", unique("bench-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("bench consumer");
    c.subscribe(&[&broker.output]).expect("subscribe");
    c
}

/// Polls `GET /metrics` every second until `stop` (the "dashboard is watched" load).
fn metrics_poller(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut ok = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let req =
                    format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let mut body = Vec::new();
                if s.write_all(req.as_bytes()).is_ok() && s.read_to_end(&mut body).is_ok() {
                    ok += usize::from(body.starts_with(b"HTTP/1.1 200"));
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        ok
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every bench target for its tests
    }
    let texts = texts();
    let broker = Broker::start();
    create_topics(&broker, 3).await;
    let http = format!("127.0.0.1:{}", kafka::free_port());
    let stop = Arc::new(AtomicBool::new(false));
    let poller = o
        .poll_metrics
        .then(|| metrics_poller(http.clone(), Arc::clone(&stop)));
    let serve_args = ["--http", http.as_str(), "--guarantee", o.guarantee.as_str()];
    println!(
        "stream bench: Apache Kafka (scripts/broker), default model, 3 partitions, {} cores, {}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.guarantee,
        if o.poll_metrics {
            ", /metrics polled every second"
        } else {
            ""
        }
    );

    // Latency at a fixed offered load, first, while the topics are empty.
    let group = unique("latency");
    let serve = Serve::start(&broker, &group, "latency", &serve_args);
    let reader = output_consumer(&broker);
    for _ in 0..300 {
        if serve.log_text().contains("partitions assigned") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The reader polls (and so joins its group) before the first comment is sent.
    let reader = Arc::new(reader);
    // The first seconds are left out of the figures: the broker is a JVM started moments ago,
    // and its latency falls from hundreds of milliseconds to tens while its code is compiled.
    let warmup = o.rate * o.warmup_seconds as usize;
    let count = o.rate * o.seconds as usize + warmup;
    let collector = tokio::spawn({
        let reader = Arc::clone(&reader);
        async move {
            let mut latencies = Vec::with_capacity(count);
            let mut n = 0;
            while n < count {
                let m = match tokio::time::timeout(Duration::from_secs(60), reader.recv()).await {
                    Ok(Ok(m)) => m,
                    _ => return Err(n),
                };
                let received = now_ms();
                n += 1;
                let v: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                let id = v["id"].as_u64().unwrap_or(0) as usize;
                if let (true, Some(ts)) = (id >= warmup, v["source"]["timestamp"].as_f64()) {
                    latencies.push(received - ts);
                    if std::env::var_os("BENCH_BREAKDOWN").is_some() && id % 500 == 0 {
                        if let Timestamp::CreateTime(out) = m.timestamp() {
                            eprintln!(
                                "in→out {:.0} ms, out→reader {:.0} ms",
                                out as f64 - ts,
                                received - out as f64
                            );
                        }
                    }
                }
            }
            Ok(latencies)
        }
    });
    while reader.assignment().map_or(true, |a| a.count() == 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let sender = tokio::spawn({
        let texts = texts.clone();
        let rate = o.rate;
        let input = broker.input.clone();
        async move {
            let tick = Duration::from_millis(10);
            let per_tick = (rate / 100).max(1);
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut deliveries = Vec::with_capacity(count);
            let mut i = 0;
            while i < count {
                interval.tick().await;
                for _ in 0..per_tick.min(count - i) {
                    let p = payload(&texts, i);
                    let key = format!("lat-{}", i % 997);
                    let record = FutureRecord::to(&input).key(&key).payload(&p);
                    match producer.send_result(record) {
                        Ok(d) => deliveries.push(d),
                        Err((e, _)) => panic!("produce: {e}"),
                    }
                    i += 1;
                }
            }
            for d in deliveries {
                let _ = d.await;
            }
        }
    });
    let started = Instant::now();
    let mut latencies = match collector.await {
        Ok(Ok(l)) => l,
        Ok(Err(n)) => panic!("latency run stalled after {n}\n{}", serve.log_text()),
        Err(e) => panic!("collector: {e}"),
    };
    let _ = sender.await;
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency at {} comments/s for {} s after {} s of warm-up ({} comments, {:.1} s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        o.rate,
        o.seconds,
        o.warmup_seconds,
        latencies.len(),
        started.elapsed().as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    drop(serve);

    // Throughput: one backlog, drained by a fresh group per run.
    let backlog: Vec<(String, Vec<u8>)> = (0..o.backlog)
        .map(|i| (format!("thread-{}", i % 997), payload(&texts, i)))
        .collect();
    produce(&broker, backlog).await;
    let total = o.backlog + count; // the latency run's comments are in the topic too
    let mut rates = Vec::new();
    for run in 0..o.runs {
        // Each run's outputs are told apart by the instance header.
        let instance = format!("bench-{run}");
        let reader = output_consumer(&broker);
        let serve = Serve::start(&broker, &unique("bench"), &instance, &serve_args);
        let (mut first, mut last, mut n) = (None, 0i64, 0usize);
        while n < total {
            let m = match tokio::time::timeout(Duration::from_secs(60), reader.recv()).await {
                Ok(Ok(m)) => m,
                _ => panic!("stalled after {n} outputs\n{}", serve.log_text()),
            };
            let mine = m.headers().is_some_and(|h| {
                h.iter()
                    .any(|h| h.key == "moderato-instance" && h.value == Some(instance.as_bytes()))
            });
            if !mine {
                continue;
            }
            if let Timestamp::CreateTime(t) = m.timestamp() {
                first.get_or_insert(t);
                last = last.max(t);
            }
            n += 1;
        }
        let span = (last - first.unwrap_or(last)).max(1) as f64 / 1000.0;
        let rate = (n - 1) as f64 / span;
        println!(
            "  throughput run {}: {n} comments in {span:.2} s = {rate:.0} comments/s",
            run + 1
        );
        rates.push(rate);
        drop(serve);
    }
    let rate = median(&mut rates);
    println!(
        "throughput: median {rate:.0} comments/s over {} runs of {total} comments",
        o.runs
    );

    stop.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        let polls = p.join().unwrap_or(0);
        println!("/metrics answered {polls} polls with 200");
    }
}
