//! A real Apache Kafka broker (`scripts/broker`, one per test process, topics per test),
//! `moderato serve` child processes, and a Kafka client of the tests' own to produce inputs and
//! collect outputs and dead letters.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

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

/// The Apache Kafka broker of this test process, started by `scripts/broker` on first use and
/// shared by its tests, each with topics of its own. `scripts/broker` stops it as soon as this
/// process exits, however it ends (`BROKER_OWNER_PID`), so no Java process outlives the tests.
struct Shared {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Runs `scripts/broker start DIR` (DIR under the target directory, or `BROKER_TMPDIR`) and reads the
/// `NAME=VALUE` lines it prints.
fn start_shared() -> Shared {
    let pid = std::process::id();
    // `BROKER_TMPDIR=/dev/shm` puts the broker (its log too) in memory, out of reach of this
    // machine's disk: what the stream bench uses to tell the disk's stalls from the service's.
    let base = std::env::var_os("BROKER_TMPDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    let dir = base.join(format!("broker-{pid}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker");
    let out = Command::new(&script)
        .arg("start")
        .arg(&dir)
        .env("BROKER_OWNER_PID", pid.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("scripts/broker runs (it needs java, mvn, openssl, python3: `scripts/test`)");
    assert!(
        out.status.success(),
        "scripts/broker start {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Shared { dir, env }
}

/// One test's view of the shared broker: its listeners and credentials, and topic names of
/// this test's own (created by [`create_topics`]).
#[derive(Clone, Debug)]
pub struct Broker {
    /// PLAINTEXT listener, `127.0.0.1:PORT`.
    pub brokers: String,
    /// SASL_SSL listener (SCRAM-SHA-512), `127.0.0.1:PORT`.
    pub sasl_brokers: String,
    /// PEM file of the CA that signed the SASL_SSL listener's certificate.
    pub ca: PathBuf,
    /// The SCRAM user.
    pub sasl_user: String,
    /// Its password.
    pub sasl_password: String,
    /// The broker's log file.
    pub log: PathBuf,
    /// This test's input topic.
    pub input: String,
    /// This test's output topic.
    pub output: String,
    /// This test's dead-letter topic.
    pub dlq: String,
}

impl Broker {
    /// The shared broker (started on first use; a broker that cannot start fails the test,
    /// never skips it) with fresh topic names for one test.
    pub fn start() -> Broker {
        let shared = SHARED.get_or_init(start_shared);
        let var = |k: &str| {
            shared
                .env
                .get(k)
                .cloned()
                .unwrap_or_else(|| panic!("scripts/broker printed no {k}="))
        };
        Broker {
            brokers: var("BOOTSTRAP"),
            sasl_brokers: var("SASL_BOOTSTRAP"),
            ca: PathBuf::from(var("CA")),
            sasl_user: var("SASL_USER"),
            sasl_password: var("SASL_PASSWORD"),
            log: shared.dir.join("broker.log"),
            input: unique("comments"),
            output: unique("labels"),
            dlq: unique("dead"),
        }
    }

    /// A view of another cluster at `brokers` (librdkafka's mock), with fresh topic names and
    /// no SASL listener or log.
    pub fn on(brokers: &str) -> Broker {
        Broker {
            brokers: brokers.into(),
            sasl_brokers: String::new(),
            ca: PathBuf::new(),
            sasl_user: String::new(),
            sasl_password: String::new(),
            log: PathBuf::new(),
            input: unique("comments"),
            output: unique("labels"),
            dlq: unique("dead"),
        }
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// Creates this test's input (with `partitions`), output and dead-letter topics.
pub async fn create_topics(broker: &Broker, partitions: i32) {
    broker.create_topic(&broker.input, partitions).await;
    broker.create_topic(&broker.output, partitions).await;
    broker.create_topic(&broker.dlq, 1).await;
}

/// A `moderato serve` child process; killed when dropped.
pub struct Serve {
    child: Child,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Serve {
    /// Starts `moderato serve` on the test's topics (PLAINTEXT listener), in `group`, named
    /// `instance`.
    pub fn start(broker: &Broker, group: &str, instance: &str, extra: &[&str]) -> Serve {
        Serve::start_on(broker, &broker.brokers, group, instance, extra, &[])
    }

    /// Starts `moderato serve` on the test's topics through the listener `brokers`, with
    /// extra environment variables `envs`.
    pub fn start_on(
        broker: &Broker,
        brokers: &str,
        group: &str,
        instance: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Serve {
        let log = std::env::temp_dir().join(format!("{}.log", unique(instance)));
        let err = File::create(&log).expect("serve log file");
        // `BENCH_SERVE_BIN`: another build to run (an older revision, for the stream bench's
        // before-and-after; see `scripts/same-labels`). Tests never set it.
        let bin = std::env::var_os("BENCH_SERVE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_moderato").into());
        let child = Command::new(bin)
            .args(["serve", "--brokers", brokers, "--group", group])
            .args([
                "--input-topic",
                &broker.input,
                "--output-topic",
                &broker.output,
                "--dlq-topic",
                &broker.dlq,
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
            .envs(envs.iter().copied())
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

/// Produces `payloads` (key, bytes) to the test's input topic and returns where each landed.
pub async fn produce(broker: &Broker, payloads: Vec<(String, Vec<u8>)>) -> Vec<Sent> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("test producer");
    let mut pending = Vec::with_capacity(payloads.len());
    for (key, payload) in payloads {
        let delivery = loop {
            let record = FutureRecord::to(&broker.input).key(&key).payload(&payload);
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
    /// The output or the dead-letter topic.
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

/// Reads the test's output and dead-letter topics from the start until `done` says enough or
/// `timeout` passes, and returns everything read.
pub async fn collect(
    broker: &Broker,
    timeout: Duration,
    mut done: impl FnMut(&[Got]) -> bool,
) -> Vec<Got> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.brokers)
        .set("group.id", unique("collector"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .expect("collector");
    consumer
        .subscribe(&[&broker.output, &broker.dlq])
        .expect("subscribe");
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
        let (json, source) = if m.topic() == broker.dlq {
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
