//! End-to-end stream benchmark: `moderato serve` (the release binary, default model) against
//! Apache Kafka on this machine (`scripts/broker`), driven and read by a Kafka client of our own.
//!
//! `cargo bench --bench stream` prints
//! - sustained throughput: a backlog of comments drained by a fresh consumer group, measured
//!   between the first and last output record's timestamps; median of several runs;
//! - then, on topics of their own (the broker's JVM warm by now), end-to-end latency at a fixed
//!   offered load (5,000 comments/s by default): from the input's Kafka timestamp to the moment
//!   our consumer receives the labelled record; p50 / p99 / max, and its two parts (to the
//!   service's produce call, and from there to our consumer);
//! - for each, the CPU time per comment of the service, the broker and this bench's own
//!   clients (from `/proc`), so a rate can be checked against what the cores can give.
//!
//! Options (after `--`): `--backlog N` (default 200000), `--runs N` (3), `--warmup-runs N` (1:
//! drains before the counted ones, which warm the broker's JVM), `--rate N` (5000),
//! `--seconds N` (10), `--warmup-seconds N` (30, offered load left out of the latency figures
//! first: the broker's JIT compiler works on its low-rate paths for about 25 s), `--producer-linger-ms N` (0: the offering producer's linger, which the latency
//! includes), `--poll-metrics` (a client polls the service's `/metrics` every second), `--guarantee NAME`
//! (`at-least-once`, the default, or `exactly-once`), `--comments FILE` (JSON lines whose `text`
//! fields are cycled instead of `examples/comments.jsonl`'s: a site's own comments, to see
//! what rate its lengths and languages give). `BENCH_SERVE_LOG=FILTER` runs the
//! service with that log filter (`info,moderato::stream=debug`: each batch's stage times), and
//! `BENCH_SERVE_ARGS="-X consumer.fetch.wait.max.ms=10 ..."` passes it more arguments.
//! `BROKER_TMPDIR=/dev/shm` runs the broker, and its log, in memory instead of under the target
//! directory: on this machine the disk's write stalls otherwise dominate the latency's tail. It
//! needs about 1 GB free there (a container's default /dev/shm is 64 MiB), and each run leaves
//! its broker's logs and TLS files behind in `broker-PID` (only the data is deleted).

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
use rdkafka::{Offset, TopicPartitionList};

/// The examples, English and Arabic (180 characters on average, one of 970), cycled unless
/// `--comments FILE` is given.
const SAMPLES: &str = include_str!("../examples/comments.jsonl");

struct Options {
    backlog: usize,
    runs: usize,
    warmup_runs: usize,
    rate: usize,
    seconds: u64,
    poll_metrics: bool,
    warmup_seconds: u64,
    guarantee: String,
    producer_linger_ms: usize,
    comments: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        backlog: 200_000,
        runs: 3,
        warmup_runs: 1,
        rate: 5000,
        seconds: 10,
        poll_metrics: false,
        warmup_seconds: 30,
        guarantee: "at-least-once".into(),
        producer_linger_ms: 0,
        comments: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let next = |i: usize| args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match args[i].as_str() {
            "--backlog" => o.backlog = next(i).unwrap_or(o.backlog),
            "--runs" => o.runs = next(i).unwrap_or(o.runs),
            "--warmup-runs" => o.warmup_runs = next(i).unwrap_or(o.warmup_runs),
            "--rate" => o.rate = next(i).unwrap_or(o.rate),
            "--seconds" => o.seconds = next(i).map_or(o.seconds, |v| v as u64),
            "--poll-metrics" => o.poll_metrics = true,
            "--producer-linger-ms" => {
                o.producer_linger_ms = next(i).unwrap_or(o.producer_linger_ms)
            }
            "--warmup-seconds" => o.warmup_seconds = next(i).map_or(o.warmup_seconds, |v| v as u64),
            "--guarantee" => {
                if let Some(g) = args.get(i + 1) {
                    o.guarantee = g.clone();
                }
            }
            "--comments" => {
                let file = args.get(i + 1).filter(|f| !f.starts_with("--"));
                o.comments = Some(file.expect("--comments needs a FILE").clone());
            }
            _ => {}
        }
        i += 1;
    }
    o
}

/// What the latency collector reads of an output record.
#[derive(serde::Deserialize, Default)]
struct Answer {
    #[serde(default)]
    id: u64,
    #[serde(default)]
    source: AnswerSource,
}

#[derive(serde::Deserialize, Default)]
struct AnswerSource {
    timestamp: Option<f64>,
}

/// The `text` of every JSON line of `--comments FILE`, else of the examples.
fn texts(comments: Option<&str>) -> Vec<String> {
    let file = comments.map(|path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("--comments {path}: {e}"))
    });
    let texts: Vec<String> = file
        .as_deref()
        .unwrap_or(SAMPLES)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        !texts.is_empty(),
        "{}: no JSON line with a `text` field",
        comments.unwrap_or("examples/comments.jsonl")
    );
    texts
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

/// A reader of the output topic from its current end (what earlier runs wrote is skipped).
fn output_consumer_from_end(broker: &Broker) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("group.id", unique("bench-reader"))
        .create()
        .expect("bench consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        let (_, high) = c
            .fetch_watermarks(&broker.output, p, Duration::from_secs(10))
            .expect("output watermarks");
        tpl.add_partition_offset(&broker.output, p, Offset::Offset(high))
            .expect("partition offset");
    }
    c.assign(&tpl).expect("assign");
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

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`; 0 if unreadable.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): state is the first, utime the 12th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The broker's process id (`scripts/broker` writes it beside the log).
fn broker_pid(broker: &Broker) -> u32 {
    broker
        .log
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("pid")).ok())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU used by the service, the broker and this bench (its own clients) between two points.
struct Cpu {
    pids: [u32; 3],
    at: [f64; 3],
    wall: Instant,
    steal: (u64, u64),
}

/// The machine's (steal, total) CPU ticks from `/proc/stat`: time a shared host gave this
/// virtual machine's cores to others, the noise no run controls.
fn steal_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user … steal; guest and guest_nice (fields 9 and 10) are already counted in user and nice.
    (
        ticks.get(7).copied().unwrap_or(0),
        ticks.iter().take(8).sum(),
    )
}

impl Cpu {
    fn start(serve: u32, broker: u32) -> Self {
        let pids = [serve, broker, std::process::id()];
        Cpu {
            pids,
            at: pids.map(cpu_seconds),
            wall: Instant::now(),
            steal: steal_ticks(),
        }
    }

    /// "CPU per comment: service A µs, broker B µs, bench clients C µs; cores busy X of N".
    fn report(&self, comments: usize) -> String {
        let used: Vec<f64> = self
            .pids
            .iter()
            .zip(self.at)
            .map(|(&p, a)| (cpu_seconds(p) - a).max(0.0))
            .collect();
        let per = |s: f64| s * 1e6 / comments.max(1) as f64;
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let (steal, total) = steal_ticks();
        let stolen = (steal.saturating_sub(self.steal.0)) as f64
            / (total.saturating_sub(self.steal.1)).max(1) as f64;
        format!(
            "CPU per comment: service {:.1} µs, broker {:.1} µs, bench clients {:.1} µs (sum {:.1} µs); \
             cores busy: service {:.2}, broker {:.2}, bench {:.2} over {wall:.1} s; \
             stolen by the host {:.1}%; load average {}",
            per(used[0]),
            per(used[1]),
            per(used[2]),
            per(used.iter().sum()),
            used[0] / wall,
            used[1] / wall,
            used[2] / wall,
            stolen * 100.0,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}

/// Starts the service; with `BENCH_SERVE_LOG=FILTER` it logs at that level (e.g.
/// `moderato::stream=debug` for each batch's stage times) and the log's path is printed.
fn start_serve(broker: &Broker, group: &str, instance: &str, args: &[&str]) -> Serve {
    let filter = std::env::var("BENCH_SERVE_LOG").ok();
    let envs: Vec<(&str, &str)> = filter
        .as_deref()
        .map(|f| vec![("RUST_LOG", f)])
        .unwrap_or_default();
    let extra = std::env::var("BENCH_SERVE_ARGS").unwrap_or_default();
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(extra.split_whitespace())
        .collect();
    let serve = Serve::start_on(broker, &broker.brokers, group, instance, &args, &envs);
    if filter.is_some() {
        eprintln!("{instance} logs to {}", serve.log.display());
    }
    serve
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
    let texts = texts(o.comments.as_deref());
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
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
    println!(
        "  comments: {} texts from {}, {:.0} characters on average",
        texts.len(),
        o.comments.as_deref().unwrap_or("examples/comments.jsonl"),
        chars as f64 / texts.len() as f64
    );

    // Throughput: one backlog, drained by a fresh group per run.
    let backlog: Vec<(String, Vec<u8>)> = (0..o.backlog)
        .map(|i| (format!("thread-{}", i % 997), payload(&texts, i)))
        .collect();
    produce(&broker, backlog).await;
    let total = o.backlog;
    let mut rates = Vec::new();
    // The first drains warm the broker's JVM (its JIT compiler; a broker in service is warm):
    // printed, not counted.
    for run in 0..o.warmup_runs + o.runs {
        // Each run's outputs are told apart by the instance header, and read from where the
        // output topic ended before the run.
        let instance = format!("bench-{run}");
        let reader = output_consumer_from_end(&broker);
        let serve = start_serve(&broker, &unique("bench"), &instance, &serve_args);
        // From the first output on, so the service's start-up (model load) is left out.
        let mut cpu = None;
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
            cpu.get_or_insert_with(|| Cpu::start(serve.pid(), broker_pid(&broker)));
            if let Timestamp::CreateTime(t) = m.timestamp() {
                first.get_or_insert(t);
                last = last.max(t);
            }
            n += 1;
        }
        let span = (last - first.unwrap_or(last)).max(1) as f64 / 1000.0;
        let rate = (n - 1) as f64 / span;
        let label = if run < o.warmup_runs {
            format!("warm-up drain {} (not counted)", run + 1)
        } else {
            format!("throughput run {}", run + 1 - o.warmup_runs)
        };
        println!("  {label}: {n} comments in {span:.2} s = {rate:.0} comments/s");
        if let Some(cpu) = &cpu {
            println!("    {}", cpu.report(n - 1));
        }
        if run >= o.warmup_runs {
            rates.push(rate);
        }
        drop(serve);
    }
    let rate = median(&mut rates);
    println!(
        "throughput: median {rate:.0} comments/s over {} runs of {total} comments",
        o.runs
    );

    // Latency at a fixed offered load, on topics of its own, after the throughput runs: the
    // broker is a JVM, and started moments before, its latency falls from hundreds of
    // milliseconds to tens while its code is compiled (a broker in service is warm). The first
    // seconds of offered load are left out of the figures too.
    let lat = Broker::start();
    create_topics(&lat, 3).await;
    let group = unique("latency");
    let serve = start_serve(&lat, &group, "latency", &serve_args);
    let reader = output_consumer(&lat);
    for _ in 0..300 {
        if serve.log_text().contains("partitions assigned") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The reader polls (and so joins its group) before the first comment is sent.
    let reader = Arc::new(reader);
    let warmup = o.rate * o.warmup_seconds as usize;
    let count = o.rate * o.seconds as usize + warmup;
    let pids = (serve.pid(), broker_pid(&broker));
    let collector = tokio::spawn({
        let reader = Arc::clone(&reader);
        async move {
            // End to end, and its two parts: input timestamp → the service's produce call (the
            // output's CreateTime), and that → our consumer.
            let mut latencies = Vec::with_capacity(count);
            let mut service = Vec::with_capacity(count);
            let mut onward = Vec::with_capacity(count);
            let mut cpu = None;
            let mut n = 0;
            while n < count {
                let m = match tokio::time::timeout(Duration::from_secs(60), reader.recv()).await {
                    Ok(Ok(m)) => m,
                    _ => return Err(n),
                };
                let received = now_ms();
                n += 1;
                // Only the two fields needed (the bench's own CPU is on the same cores).
                let v: Answer =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                let id = v.id as usize;
                if let (true, Some(ts)) = (id >= warmup, v.source.timestamp) {
                    cpu.get_or_insert_with(|| Cpu::start(pids.0, pids.1));
                    latencies.push(received - ts);
                    if let Timestamp::CreateTime(out) = m.timestamp() {
                        service.push(out as f64 - ts);
                        onward.push(received - out as f64);
                    }
                }
            }
            Ok((latencies, service, onward, cpu))
        }
    });
    while reader.assignment().map_or(true, |a| a.count() == 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &lat.brokers)
        .set("linger.ms", o.producer_linger_ms.to_string())
        .create()
        .expect("producer");
    let sender = tokio::spawn({
        let texts = texts.clone();
        let rate = o.rate;
        let input = lat.input.clone();
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
    let (mut latencies, mut service, mut onward, cpu) = match collector.await {
        Ok(Ok(l)) => l,
        Ok(Err(n)) => panic!("latency run stalled after {n}\n{}", serve.log_text()),
        Err(e) => panic!("collector: {e}"),
    };
    let _ = sender.await;
    for v in [&mut latencies, &mut service, &mut onward] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "latency at {} comments/s (offering producer linger.ms={}) for {} s after {} s of warm-up ({} comments, {:.1} s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        o.rate,
        o.producer_linger_ms,
        o.seconds,
        o.warmup_seconds,
        latencies.len(),
        started.elapsed().as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "  input → the service's produce call: p50 {:.1} ms, p99 {:.1} ms; that → our consumer: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&service, 0.5),
        percentile(&service, 0.99),
        percentile(&onward, 0.5),
        percentile(&onward, 0.99)
    );
    if let Some(cpu) = cpu {
        println!("  {}", cpu.report(count - warmup));
    }
    drop(serve);

    stop.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        let polls = p.join().unwrap_or(0);
        println!("/metrics answered {polls} polls with 200");
    }
}
