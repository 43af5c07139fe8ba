//! A real Kafka-protocol broker (tansu) on a free loopback port, `moderato serve` child processes,
//! and a Kafka client of the tests' own to produce inputs and collect outputs and dead letters.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// Where tansu is looked for: `$TANSU`, `PATH`, then `~/.cargo/bin`.
fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = PathBuf::from(home).join(".cargo/bin/tansu");
        p.is_file().then_some(p)
    })
}

/// A free TCP port on loopback (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A unique name for groups and temp files within this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A tansu broker with in-memory storage; killed when dropped.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub brokers: String,
    /// The broker's log file.
    pub log: PathBuf,
}

impl Tansu {
    /// Starts tansu and waits until it answers metadata requests. A missing tansu is a failure,
    /// never a skip: `scripts/test` installs it.
    pub fn start() -> Tansu {
        let bin = tansu_binary().expect(
            "tansu (the Kafka-compatible broker the stream tests run against) is not installed; \
             run `scripts/test`, or `cargo install tansu --locked --features dynostore`",
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("{}.log", unique("tansu")));
        let out = File::create(&log).expect("tansu log file");
        let err = out.try_clone().expect("tansu log file");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("tansu starts");
        let t = Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port}: {}",
                std::fs::read_to_string(&t.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let result = admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create_topics request");
        for r in result {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// The committed offset of `group` for each of `partitions` of `topic` (-1: none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .create()
            .expect("offset reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        got.elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                };
                (e.partition(), o)
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The topics of one test's service.
pub const INPUT: &str = "comments";
/// Output topic.
pub const OUTPUT: &str = "labels";
/// Dead-letter topic.
pub const DLQ: &str = "dead";

/// Creates the input (with `partitions`), output and dead-letter topics.
pub async fn create_topics(broker: &Tansu, partitions: i32) {
    broker.create_topic(INPUT, partitions).await;
    broker.create_topic(OUTPUT, partitions).await;
    broker.create_topic(DLQ, 1).await;
}

/// A `moderato serve` child process; killed when dropped.
pub struct Serve {
    child: Child,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Serve {
    /// Starts `moderato serve` on the test topics, in `group`, named `instance`.
    pub fn start(brokers: &str, group: &str, instance: &str, extra: &[&str]) -> Serve {
        let log = std::env::temp_dir().join(format!("{}.log", unique(instance)));
        let err = File::create(&log).expect("serve log file");
        let child = Command::new(env!("CARGO_BIN_EXE_moderato"))
            .args(["serve", "--brokers", brokers, "--group", group])
            .args([
                "--input-topic",
                INPUT,
                "--output-topic",
                OUTPUT,
                "--dlq-topic",
                DLQ,
            ])
            .args(["--instance", instance])
            .args(if extra.contains(&"--http") {
                &[][..]
            } else {
                &["--http", "off"][..]
            })
            .args([
                "-X",
                "session.timeout.ms=6000",
                "-X",
                "heartbeat.interval.ms=500",
            ])
            .args(["-X", "consumer.topic.metadata.refresh.interval.ms=1000"])
            .args(extra)
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .env_remove("MODERATO_MODEL")
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("moderato serve starts");
        Serve { child, log }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name} {}", self.pid());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One input message the test produced, with where it landed.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Key.
    pub key: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Produces `payloads` (key, bytes) to the input topic and returns where each landed.
pub async fn produce(brokers: &str, payloads: Vec<(String, Vec<u8>)>) -> Vec<Sent> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("test producer");
    let mut pending = Vec::with_capacity(payloads.len());
    for (key, payload) in payloads {
        let delivery = loop {
            let record = FutureRecord::to(INPUT).key(&key).payload(&payload);
            match producer.send_result(record) {
                Ok(d) => break d,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        pending.push((key, payload, delivery));
    }
    let mut sent = Vec::with_capacity(pending.len());
    for (key, payload, delivery) in pending {
        let (partition, offset) = match delivery.await.expect("delivery future") {
            Ok(d) => (d.partition, d.offset),
            Err((e, _)) => panic!("producing a test message: {e}"),
        };
        sent.push(Sent {
            key,
            payload,
            partition,
            offset,
        });
    }
    sent
}

/// A record read back from the output or dead-letter topic.
#[derive(Clone, Debug)]
pub struct Got {
    /// `OUTPUT` or `DLQ`.
    pub topic: String,
    /// Partition it was read from.
    pub partition: i32,
    /// Key.
    pub key: Option<String>,
    /// Input partition and offset it answers.
    pub source: (i32, i64),
    /// The parsed JSON of an output record (Null for dead letters).
    pub json: Value,
    /// Raw payload.
    pub payload: Vec<u8>,
    /// Headers by name.
    pub headers: BTreeMap<String, String>,
}

/// Reads the output and dead-letter topics from the start until `done` says enough or
/// `timeout` passes, and returns everything read.
pub async fn collect(
    brokers: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Got]) -> bool,
) -> Vec<Got> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("collector"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .expect("collector");
    consumer.subscribe(&[OUTPUT, DLQ]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let m = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => panic!("collector: {e}"),
            Ok(Ok(m)) => m,
        };
        let headers: BTreeMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_string(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let payload = m.payload().unwrap_or_default().to_vec();
        let (json, source) = if m.topic() == DLQ {
            let num = |k: &str| headers.get(k).and_then(|v| v.parse::<i64>().ok());
            let source = (
                num("moderato-source-partition").expect("dead letter names its partition") as i32,
                num("moderato-source-offset").expect("dead letter names its offset"),
            );
            (Value::Null, source)
        } else {
            let json: Value = serde_json::from_slice(&payload).expect("output is JSON");
            let source = (
                json["source"]["partition"]
                    .as_i64()
                    .expect("source.partition") as i32,
                json["source"]["offset"].as_i64().expect("source.offset"),
            );
            (json, source)
        };
        got.push(Got {
            topic: m.topic().to_string(),
            partition: m.partition(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            source,
            json,
            payload,
            headers,
        });
    }
    got
}

/// How many distinct input coordinates `got` answers.
pub fn distinct_sources(got: &[Got]) -> usize {
    got.iter()
        .map(|g| g.source)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// A valid comment payload.
pub fn comment(i: usize) -> Vec<u8> {
    let texts = [
        "Thanks for the thorough reporting, a really informative piece.",
        "You are a complete idiot and your opinions are garbage.",
        "اللقاح آمن وفعال والحمد لله أخذت الجرعتين بدون أي مشاكل",
        "This article is biased nonsense written by clowns.",
    ];
    serde_json::json!({"id": i, "text": texts[i % texts.len()], "meta": {"n": i}})
        .to_string()
        .into_bytes()
}
