//! Settings of `moderato serve`: one struct read from the command line, `MODERATO_*`
//! environment variables and a TOML file, in that order of precedence, then checked field by
//! field so a bad value is refused at start with its name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::guarantee::Guarantee;
use super::properties;
use crate::error::ConfigError;
use crate::http_limits::HttpLimits;
use crate::policy::{InputPolicy, DEFAULT_MAX_TEXT_CHARS};

/// The producer's queue (`queue.buffering.max.kbytes`) and the consumer's pre-fetch queue
/// (`queued.max.messages.kbytes`), in KiB: 32 MiB each, what the README's memory budget counts.
pub const QUEUE_KBYTES: usize = 32 << 10;

/// Default of `max_inflight_bytes`: 64 MiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 64 << 20;
/// Default of `feedback_cache_bytes`: 32 MiB.
pub const DEFAULT_FEEDBACK_CACHE_BYTES: usize = 32 << 20;

/// How input payloads are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// A JSON object `{"id", "text", "target"?, "meta"?, ...}`.
    #[default]
    Json,
    /// The payload is the comment text (UTF-8); id = `topic/partition/offset`.
    Text,
}

/// Every setting as given, each optional: the command line and the config file both fill one.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "MODERATO_BROKERS")]
    pub brokers: Option<String>,
    /// Topic the comments are read from [default: comments].
    #[arg(long, env = "MODERATO_INPUT_TOPIC")]
    pub input_topic: Option<String>,
    /// Topic the labelled records are written to [default: comment-labels].
    #[arg(long, env = "MODERATO_OUTPUT_TOPIC")]
    pub output_topic: Option<String>,
    /// Consumer group; run more instances in one group to share the partitions [default: moderato].
    #[arg(long, env = "MODERATO_GROUP")]
    pub group: Option<String>,
    /// Dead-letter topic for messages that cannot be classified [default: INPUT_TOPIC.dlq].
    #[arg(long, env = "MODERATO_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// Model file [default: the shipped default model]; a change to it is hot-reloaded.
    #[arg(long, env = "MODERATO_MODEL")]
    pub model: Option<PathBuf>,
    /// Payload format of the input topic [default: json].
    #[arg(long, value_enum, env = "MODERATO_INPUT_FORMAT")]
    pub input_format: Option<InputFormat>,
    /// Most messages classified together [default: 1000].
    #[arg(long, env = "MODERATO_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Longest wait to fill a batch, in milliseconds [default: 5].
    #[arg(long, env = "MODERATO_BATCH_TIMEOUT_MS")]
    pub batch_timeout_ms: Option<u64>,
    /// Longer texts are classified on this many leading characters and marked truncated
    /// [default: 10000].
    #[arg(long, env = "MODERATO_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    /// Larger payloads go to the dead-letter topic [default: 1000000, Kafka's message.max.bytes].
    #[arg(long, env = "MODERATO_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Bytes of messages (payload, key, headers) read and not yet finished; past it the service
    /// reads no further until a batch is done. The service's memory for them is about three
    /// times this (the message, its output record, the producer's copy) [default: 67108864,
    /// 64 MiB: with the other defaults the service fits a 512 MB container; see README].
    #[arg(long, env = "MODERATO_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// How often stored offsets are committed, in milliseconds [default: 1000].
    #[arg(long, env = "MODERATO_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
    /// Longest drain on SIGINT / SIGTERM or a rebalance, in milliseconds [default: 10000].
    #[arg(long, env = "MODERATO_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// How often the model file is checked for changes, in milliseconds; 0 = only on SIGHUP
    /// [default: 2000].
    #[arg(long, env = "MODERATO_RELOAD_POLL_MS")]
    pub reload_poll_ms: Option<u64>,
    /// Domain (calibration) for comments that name none, e.g. a site's data set.
    #[arg(long, env = "MODERATO_DOMAIN")]
    pub domain: Option<String>,
    /// Name of this instance, sent in the `moderato-instance` header [default: host-pid].
    #[arg(long, env = "MODERATO_INSTANCE")]
    pub instance: Option<String>,
    /// HTTP address of the metrics, health and dashboard side; `off` disables it
    /// [default: 127.0.0.1:9464].
    #[arg(long, env = "MODERATO_HTTP")]
    pub http: Option<String>,
    /// HTTP connections open at once; at the cap new ones wait to be accepted [default: 1024].
    #[arg(long, env = "MODERATO_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Time a client has to send a request's headers (also the keep-alive idle time), in
    /// milliseconds; slower clients are disconnected [default: 10000].
    #[arg(long, env = "MODERATO_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// Time a request has until its response starts (body upload included), in milliseconds;
    /// then 408. The live feed streams on past it [default: 30000].
    #[arg(long, env = "MODERATO_HTTP_REQUEST_TIMEOUT_MS")]
    pub http_request_timeout_ms: Option<u64>,
    /// Largest HTTP request body; larger ones get 413 [default: 1048576].
    #[arg(long, env = "MODERATO_HTTP_MAX_BODY_BYTES")]
    pub http_max_body_bytes: Option<usize>,
    /// `POST /v1/classify` requests scored at once [default: 4].
    #[arg(long, env = "MODERATO_HTTP_CLASSIFY_CONCURRENCY")]
    pub http_classify_concurrency: Option<usize>,
    /// `POST /v1/classify` requests that may wait for a turn; more get 503 with Retry-After
    /// [default: 16].
    #[arg(long, env = "MODERATO_HTTP_CLASSIFY_QUEUE")]
    pub http_classify_queue: Option<usize>,
    /// Time HTTP connections get to finish once the service stops (live feeds end at once),
    /// in milliseconds; then they are dropped [default: 5000].
    #[arg(long, env = "MODERATO_HTTP_SHUTDOWN_TIMEOUT_MS")]
    pub http_shutdown_timeout_ms: Option<u64>,
    /// Topic of moderator decisions `{"id", "text"?, "head", "label"}` to collect (off unless set).
    #[arg(long, env = "MODERATO_FEEDBACK_TOPIC")]
    pub feedback_topic: Option<String>,
    /// JSONL file the decisions are appended to, joined with their comment's text
    /// [default: feedback.jsonl].
    #[arg(long, env = "MODERATO_FEEDBACK_FILE")]
    pub feedback_file: Option<PathBuf>,
    /// Recent comment texts kept for the feedback join [default: 100000].
    #[arg(long, env = "MODERATO_FEEDBACK_CACHE")]
    pub feedback_cache: Option<usize>,
    /// Bytes of the recent comments (ids, texts, targets) kept for the feedback join; the
    /// oldest go first past it [default: 33554432, 32 MiB].
    #[arg(long, env = "MODERATO_FEEDBACK_CACHE_BYTES")]
    pub feedback_cache_bytes: Option<usize>,
    /// File of API keys for `/v1/classify` and the Perspective routes: one key, or its SHA-256
    /// hex, per line. Without it any key is accepted, and only a loopback `--http` is allowed.
    #[arg(long, env = "MODERATO_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// Serve the classification routes on a non-loopback `--http` without `--api-keys`.
    #[arg(long, env = "MODERATO_INSECURE_NO_AUTH")]
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// Longest wait at start for the brokers to answer the start-up check (credentials accepted,
    /// topics present), in milliseconds [default: 15000].
    #[arg(long, env = "MODERATO_STARTUP_TIMEOUT_MS")]
    pub startup_timeout_ms: Option<u64>,
    /// Delivery guarantee; exactly-once needs a stable `--instance` and output readers with
    /// `isolation.level=read_committed` [default: at-least-once].
    #[arg(long, value_enum, env = "MODERATO_GUARANTEE")]
    pub guarantee: Option<Guarantee>,
    /// librdkafka properties for both clients (`[librdkafka]` table in the file; `consumer.` or
    /// `producer.` prefixes aim at one client; `MODERATO_LIBRDKAFKA__NAME` variables; a value
    /// `@PATH` is read from the file PATH).
    #[arg(skip)]
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

impl ServeSettings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Fills every setting missing here from `fallback` (command line over file).
    pub fn or(self, fallback: ServeSettings) -> ServeSettings {
        let mut librdkafka = fallback.librdkafka;
        librdkafka.extend(self.librdkafka);
        ServeSettings {
            brokers: self.brokers.or(fallback.brokers),
            input_topic: self.input_topic.or(fallback.input_topic),
            output_topic: self.output_topic.or(fallback.output_topic),
            group: self.group.or(fallback.group),
            dlq_topic: self.dlq_topic.or(fallback.dlq_topic),
            model: self.model.or(fallback.model),
            input_format: self.input_format.or(fallback.input_format),
            batch_size: self.batch_size.or(fallback.batch_size),
            batch_timeout_ms: self.batch_timeout_ms.or(fallback.batch_timeout_ms),
            max_text_chars: self.max_text_chars.or(fallback.max_text_chars),
            max_payload_bytes: self.max_payload_bytes.or(fallback.max_payload_bytes),
            max_inflight_bytes: self.max_inflight_bytes.or(fallback.max_inflight_bytes),
            commit_interval_ms: self.commit_interval_ms.or(fallback.commit_interval_ms),
            shutdown_timeout_ms: self.shutdown_timeout_ms.or(fallback.shutdown_timeout_ms),
            reload_poll_ms: self.reload_poll_ms.or(fallback.reload_poll_ms),
            domain: self.domain.or(fallback.domain),
            instance: self.instance.or(fallback.instance),
            http: self.http.or(fallback.http),
            http_max_connections: self.http_max_connections.or(fallback.http_max_connections),
            http_header_timeout_ms: self
                .http_header_timeout_ms
                .or(fallback.http_header_timeout_ms),
            http_request_timeout_ms: self
                .http_request_timeout_ms
                .or(fallback.http_request_timeout_ms),
            http_max_body_bytes: self.http_max_body_bytes.or(fallback.http_max_body_bytes),
            http_classify_concurrency: self
                .http_classify_concurrency
                .or(fallback.http_classify_concurrency),
            http_classify_queue: self.http_classify_queue.or(fallback.http_classify_queue),
            http_shutdown_timeout_ms: self
                .http_shutdown_timeout_ms
                .or(fallback.http_shutdown_timeout_ms),
            feedback_topic: self.feedback_topic.or(fallback.feedback_topic),
            feedback_file: self.feedback_file.or(fallback.feedback_file),
            feedback_cache: self.feedback_cache.or(fallback.feedback_cache),
            feedback_cache_bytes: self.feedback_cache_bytes.or(fallback.feedback_cache_bytes),
            api_keys: self.api_keys.or(fallback.api_keys),
            insecure_no_auth: self.insecure_no_auth || fallback.insecure_no_auth,
            startup_timeout_ms: self.startup_timeout_ms.or(fallback.startup_timeout_ms),
            guarantee: self.guarantee.or(fallback.guarantee),
            librdkafka,
        }
    }

    /// Applies the defaults and checks every field.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let http_limits = self.http_limits()?;
        let brokers = self.brokers.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
            invalid(
                "brokers",
                "missing: pass --brokers HOST:PORT, set MODERATO_BROKERS or `brokers` in the config file",
            )
        })?;
        let input_topic = topic("input_topic", self.input_topic, "comments")?;
        let output_topic = topic("output_topic", self.output_topic, "comment-labels")?;
        let dlq_topic = topic("dlq_topic", self.dlq_topic, &format!("{input_topic}.dlq"))?;
        if output_topic == input_topic || dlq_topic == input_topic {
            return Err(invalid(
                "output_topic",
                "the output and dead-letter topics must differ from the input topic",
            ));
        }
        let group = self.group.unwrap_or_else(|| "moderato".into());
        if group.trim().is_empty() {
            return Err(invalid("group", "must not be empty"));
        }
        let batch_size = ranged("batch_size", self.batch_size.unwrap_or(1000), 1, 100_000)?;
        let batch_timeout = ranged(
            "batch_timeout_ms",
            self.batch_timeout_ms.unwrap_or(5),
            0,
            60_000,
        )?;
        let max_text_chars = ranged(
            "max_text_chars",
            self.max_text_chars.unwrap_or(DEFAULT_MAX_TEXT_CHARS),
            1,
            10_000_000,
        )?;
        let max_payload_bytes = ranged(
            "max_payload_bytes",
            self.max_payload_bytes.unwrap_or(1_000_000),
            64,
            100_000_000,
        )?;
        let max_inflight_bytes = ranged(
            "max_inflight_bytes",
            self.max_inflight_bytes
                .unwrap_or(DEFAULT_MAX_INFLIGHT_BYTES),
            1 << 20,
            1 << 36,
        )?;
        if max_inflight_bytes < max_payload_bytes {
            return Err(invalid(
                "max_inflight_bytes",
                &format!(
                    "{max_inflight_bytes} is below max_payload_bytes ({max_payload_bytes}): \
                     raise it, or lower max_payload_bytes, so that one message of the largest \
                     accepted size fits"
                ),
            ));
        }
        let commit_interval = ranged(
            "commit_interval_ms",
            self.commit_interval_ms.unwrap_or(1000),
            10,
            600_000,
        )?;
        let shutdown_timeout = ranged(
            "shutdown_timeout_ms",
            self.shutdown_timeout_ms.unwrap_or(10_000),
            100,
            3_600_000,
        )?;
        let reload_poll = ranged(
            "reload_poll_ms",
            self.reload_poll_ms.unwrap_or(2000),
            0,
            3_600_000,
        )?;
        let startup_timeout = ranged(
            "startup_timeout_ms",
            self.startup_timeout_ms.unwrap_or(15_000),
            100,
            600_000,
        )?;
        let mut librdkafka = self.librdkafka;
        let from_files = properties::read_files(&mut librdkafka)?;
        for (key, value) in &librdkafka {
            if key.trim().is_empty() || key.contains(char::is_whitespace) {
                return Err(invalid(
                    &format!("librdkafka.{key}"),
                    "a property name has no spaces",
                ));
            }
            if let Some(reason) = refused(key, value) {
                return Err(invalid(&format!("librdkafka.{key}"), reason));
            }
        }
        let http = match self.http.as_deref() {
            Some("off") => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                invalid(
                    "http",
                    &format!("`{addr}` is not HOST:PORT (e.g. 127.0.0.1:9464) or `off`"),
                )
            })?),
            None => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464))),
        };
        let instance = self.instance.unwrap_or_else(default_instance);
        let feedback = match self.feedback_topic {
            Some(t) => Some(FeedbackConfig {
                topic: topic("feedback_topic", Some(t), "")?,
                file: self
                    .feedback_file
                    .unwrap_or_else(|| PathBuf::from("feedback.jsonl")),
                cache: ranged(
                    "feedback_cache",
                    self.feedback_cache.unwrap_or(100_000),
                    1,
                    100_000_000,
                )?,
                cache_bytes: ranged(
                    "feedback_cache_bytes",
                    self.feedback_cache_bytes
                        .unwrap_or(DEFAULT_FEEDBACK_CACHE_BYTES),
                    1 << 16,
                    1 << 36,
                )?,
            }),
            None => None,
        };
        Ok(ServeConfig {
            brokers,
            input_topic,
            output_topic,
            dlq_topic,
            group,
            model: self.model,
            input_format: self.input_format.unwrap_or_default(),
            batch_size,
            batch_timeout: Duration::from_millis(batch_timeout),
            max_text_chars,
            max_payload_bytes,
            max_inflight_bytes,
            commit_interval: Duration::from_millis(commit_interval),
            shutdown_timeout: Duration::from_millis(shutdown_timeout),
            reload_poll: (reload_poll > 0).then(|| Duration::from_millis(reload_poll)),
            domain: self.domain,
            instance,
            http,
            http_limits,
            feedback,
            api_keys: self.api_keys,
            insecure_no_auth: self.insecure_no_auth,
            guarantee: self.guarantee.unwrap_or_default(),
            startup_timeout: Duration::from_millis(startup_timeout),
            librdkafka,
            from_files,
        })
    }
}

/// Checked settings of a running service.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Input topic.
    pub input_topic: String,
    /// Output topic.
    pub output_topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Consumer group.
    pub group: String,
    /// Model file (`None`: the shipped default).
    pub model: Option<PathBuf>,
    /// Input payload format.
    pub input_format: InputFormat,
    /// Most messages per batch.
    pub batch_size: usize,
    /// Longest wait to fill a batch.
    pub batch_timeout: Duration,
    /// Classification prefix length, in characters.
    pub max_text_chars: usize,
    /// Dead-letter limit on payload size.
    pub max_payload_bytes: usize,
    /// Most bytes of messages read and not finished.
    pub max_inflight_bytes: usize,
    /// Offset commit interval.
    pub commit_interval: Duration,
    /// Longest drain on shutdown or rebalance.
    pub shutdown_timeout: Duration,
    /// Model-file poll interval (`None`: SIGHUP only).
    pub reload_poll: Option<Duration>,
    /// Default domain for comments that name none.
    pub domain: Option<String>,
    /// This instance's name.
    pub instance: String,
    /// HTTP side address (`None`: off).
    pub http: Option<std::net::SocketAddr>,
    /// Limits of the HTTP side.
    pub http_limits: HttpLimits,
    /// The feedback collector (`None`: off).
    pub feedback: Option<FeedbackConfig>,
    /// API key file of the classification routes.
    pub api_keys: Option<PathBuf>,
    /// Whether a non-loopback `http` may serve them without keys.
    pub insecure_no_auth: bool,
    /// Delivery guarantee.
    pub guarantee: Guarantee,
    /// Longest wait for the start-up check of brokers and topics.
    pub startup_timeout: Duration,
    /// Pass-through librdkafka properties (secrets included: log only `redacted_properties`).
    pub librdkafka: BTreeMap<String, String>,
    /// The properties whose value was read from a file (`@PATH`); never logged.
    pub from_files: BTreeSet<String>,
}

/// Where moderator decisions come from and go.
#[derive(Clone, Debug)]
pub struct FeedbackConfig {
    /// Topic of decisions.
    pub topic: String,
    /// JSONL file they are appended to.
    pub file: PathBuf,
    /// Recent comment texts kept for the join.
    pub cache: usize,
    /// Most bytes of those texts (with their ids and targets).
    pub cache_bytes: usize,
}

impl ServeSettings {
    /// The HTTP limits given, each checked, with the defaults for the rest.
    fn http_limits(&self) -> Result<HttpLimits, ConfigError> {
        let d = HttpLimits::new();
        let ms = |d: Duration| d.as_millis() as u64;
        let millis = |field: &str, v: Option<u64>, default: Duration, min: u64| {
            ranged(field, v.unwrap_or(ms(default)), min, 3_600_000).map(Duration::from_millis)
        };
        Ok(HttpLimits {
            max_connections: ranged(
                "http_max_connections",
                self.http_max_connections.unwrap_or(d.max_connections),
                1,
                1_000_000,
            )?,
            header_read_timeout: millis(
                "http_header_timeout_ms",
                self.http_header_timeout_ms,
                d.header_read_timeout,
                100,
            )?,
            request_timeout: millis(
                "http_request_timeout_ms",
                self.http_request_timeout_ms,
                d.request_timeout,
                100,
            )?,
            max_body_bytes: ranged(
                "http_max_body_bytes",
                self.http_max_body_bytes.unwrap_or(d.max_body_bytes),
                1024,
                1 << 30,
            )?,
            classify_concurrency: ranged(
                "http_classify_concurrency",
                self.http_classify_concurrency
                    .unwrap_or(d.classify_concurrency),
                1,
                1024,
            )?,
            classify_queue: ranged(
                "http_classify_queue",
                self.http_classify_queue.unwrap_or(d.classify_queue),
                0,
                100_000,
            )?,
            shutdown_timeout: millis(
                "http_shutdown_timeout_ms",
                self.http_shutdown_timeout_ms,
                d.shutdown_timeout,
                0,
            )?,
            ..d
        })
    }
}

impl ServeConfig {
    /// A config with defaults for everything but the brokers (tests, demo).
    pub fn with_brokers(brokers: &str) -> Result<Self, ConfigError> {
        ServeSettings {
            brokers: Some(brokers.into()),
            ..ServeSettings::default()
        }
        .resolve()
    }

    /// The producer's `message.max.bytes`: `max_payload_bytes` plus 64 KiB for the labels and
    /// headers (at least librdkafka's default, 1,000,000), unless a `-X` property sets it.
    pub fn producer_max_bytes(&self) -> usize {
        // As `client_properties("producer")` would find it (the unprefixed key sorts first),
        // without building that list: every record asks.
        let set = self
            .librdkafka
            .get("message.max.bytes")
            .or_else(|| self.librdkafka.get("producer.message.max.bytes"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        set.unwrap_or((self.max_payload_bytes + (64 << 10)).max(1_000_000))
    }

    /// Most bytes (key, payload, headers) of one produced record: the producer's
    /// `message.max.bytes` less 1 KiB for the record's framing in a batch. Larger records are
    /// fitted to it (see [`super::fit`]).
    pub fn max_record_bytes(&self) -> usize {
        self.producer_max_bytes().saturating_sub(1 << 10)
    }

    /// The pass-through properties for one client (`consumer` or `producer`): unprefixed ones
    /// plus those with that client's prefix, without it.
    pub fn client_properties(&self, client: &str) -> Vec<(String, String)> {
        let prefix = format!("{client}.");
        let other = if client == "consumer" {
            "producer."
        } else {
            "consumer."
        };
        self.librdkafka
            .iter()
            .filter(|(k, _)| !k.starts_with(other))
            .map(|(k, v)| (k.strip_prefix(&prefix).unwrap_or(k).to_string(), v.clone()))
            .collect()
    }

    /// The input policy of the stream: `domain` and `max_text_chars`.
    pub fn input_policy(&self) -> InputPolicy {
        InputPolicy {
            default_domain: self.domain.clone(),
            max_text_chars: self.max_text_chars,
        }
    }

    /// The pass-through properties with secrets hidden, for logs.
    pub fn redacted_properties(&self) -> BTreeMap<String, String> {
        self.librdkafka
            .iter()
            .map(|(k, v)| {
                let secret = properties::is_secret(k) || self.from_files.contains(k);
                (k.clone(), if secret { "***".into() } else { v.clone() })
            })
            .collect()
    }
}

/// librdkafka properties the service's guarantees and settings rest on.
const GUARANTEES: &[&str] = &[
    "enable.auto.offset.store",
    "enable.auto.commit",
    "enable.idempotence",
    "group.id",
    "bootstrap.servers",
];

/// Why a pass-through property (with or without a `consumer.` / `producer.` prefix) is refused,
/// and what to do instead; `None` when it may be passed on.
fn refused(key: &str, value: &str) -> Option<&'static str> {
    let bare = key
        .strip_prefix("consumer.")
        .or_else(|| key.strip_prefix("producer."))
        .unwrap_or(key);
    match bare {
        // These carry the delivery guarantee; overriding them would silently void it.
        _ if GUARANTEES.contains(&bare) => Some(
            "moderato sets this itself (at-least-once delivery, --brokers, --group); leave it out",
        ),
        "metadata.broker.list" => Some(
            "an alias of bootstrap.servers: give the brokers with --brokers (MODERATO_BROKERS, \
             `brokers` in the file)",
        ),
        "transactional.id" => Some(
            "moderato manages transactional ids itself (`--guarantee exactly-once` derives one \
             from the group, input topic and --instance); a transactional id set here would make \
             the producer transactional behind the pipeline's back; leave it out",
        ),
        "isolation.level" => Some(
            "moderato sets the consumer's isolation level itself (read_committed: comments of \
             aborted transactions are never classified); leave it out. Consumers of moderato's \
             output set isolation.level in their own configuration",
        ),
        "auto.offset.reset"
            if matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "latest" | "largest" | "end"
            ) =>
        {
            Some(
                "`latest` makes a new group (or one whose committed offsets expired) silently \
                 skip every comment already in the topic; moderato starts such a group at the \
                 earliest offset. To skip a backlog on purpose, move the group's offsets once: \
                 kafka-consumer-groups.sh --bootstrap-server BROKERS --group GROUP --topic \
                 TOPIC --reset-offsets --to-latest --execute",
            )
        }
        _ => None,
    }
}

fn invalid(field: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn ranged<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(invalid(field, &format!("{value} is outside {min}..={max}")));
    }
    Ok(value)
}

/// A Kafka topic name: 1–249 characters of `[A-Za-z0-9._-]`.
fn topic(field: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = value.unwrap_or_else(|| default.to_string());
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 || !name.chars().all(legal) {
        return Err(invalid(
            field,
            &format!("`{name}` is not a Kafka topic name (1-249 characters of A-Z a-z 0-9 . _ -)"),
        ));
    }
    Ok(name)
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "moderato".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything_but_brokers() {
        let err = ServeSettings::default().resolve().unwrap_err();
        assert!(err.to_string().contains("`brokers`"), "{err}");
        let cfg = ServeConfig::with_brokers("localhost:9092").expect("valid");
        assert_eq!(cfg.input_topic, "comments");
        assert_eq!(cfg.dlq_topic, "comments.dlq");
        assert_eq!(cfg.batch_size, 1000);
    }

    #[test]
    fn memory_bounds_have_defaults_that_fit_a_small_container_and_are_checked() {
        let cfg = ServeConfig::with_brokers("a:1").expect("valid");
        assert_eq!(cfg.max_inflight_bytes, 64 << 20);
        assert_eq!(cfg.max_record_bytes(), 1_000_000 + (64 << 10) - 1024);
        let fb = ServeSettings {
            brokers: Some("a:1".into()),
            feedback_topic: Some("decisions".into()),
            ..ServeSettings::default()
        };
        let fb = fb.resolve().expect("valid").feedback.expect("on");
        assert_eq!(fb.cache_bytes, 32 << 20);
        let small = ServeSettings {
            brokers: Some("a:1".into()),
            max_inflight_bytes: Some(2 << 20),
            max_payload_bytes: Some(3 << 20),
            ..ServeSettings::default()
        };
        let err = small.resolve().unwrap_err().to_string();
        assert!(
            err.contains("`max_inflight_bytes`") && err.contains("max_payload_bytes"),
            "{err}"
        );
    }

    #[test]
    fn command_line_wins_over_file_and_bad_fields_are_named() {
        let file: ServeSettings = toml::from_str(
            "brokers = \"a:1\"\nbatch_size = 10\n[librdkafka]\n\"sasl.password\" = \"hunter2\"\n",
        )
        .expect("parses");
        let cli = ServeSettings {
            batch_size: Some(20),
            ..ServeSettings::default()
        };
        let cfg = cli.or(file).resolve().expect("valid");
        assert_eq!((cfg.brokers.as_str(), cfg.batch_size), ("a:1", 20));
        assert_eq!(cfg.redacted_properties()["sasl.password"], "***");

        let bad = ServeSettings {
            batch_size: Some(0),
            ..ServeSettings::default()
        };
        let err = bad.or(cfg_file("brokers = \"a:1\"")).resolve().unwrap_err();
        assert!(err.to_string().contains("`batch_size`"), "{err}");
        let err = toml::from_str::<ServeSettings>("brokerz = \"a\"").unwrap_err();
        assert!(err.to_string().contains("brokerz"), "{err}");
        let voided =
            cfg_file("brokers = \"a:1\"\n[librdkafka]\n\"enable.auto.offset.store\" = \"true\"\n");
        let err = voided.resolve().unwrap_err().to_string();
        assert!(err.contains("librdkafka.enable.auto.offset.store"), "{err}");
        let bad_topic = cfg_file("brokers = \"a:1\"\noutput_topic = \"no spaces\"").resolve();
        assert!(bad_topic
            .unwrap_err()
            .to_string()
            .contains("`output_topic`"));
    }

    #[test]
    fn client_prefixes_aim_properties_at_one_client() {
        let cfg = cfg_file(
            "brokers = \"a:1\"\n[librdkafka]\n\"consumer.fetch.wait.max.ms\" = \"10\"\n\"producer.linger.ms\" = \"2\"\n\"security.protocol\" = \"ssl\"\n",
        )
        .resolve()
        .expect("valid");
        let consumer = cfg.client_properties("consumer");
        assert!(consumer.contains(&("fetch.wait.max.ms".into(), "10".into())));
        assert!(consumer.contains(&("security.protocol".into(), "ssl".into())));
        assert!(!consumer.iter().any(|(k, _)| k.contains("linger")));
    }

    #[test]
    fn the_producers_message_size_is_read_with_or_without_its_prefix() {
        let with = |props: &str| {
            cfg_file(&format!("brokers = \"a:1\"\n[librdkafka]\n{props}"))
                .resolve()
                .expect("valid")
                .producer_max_bytes()
        };
        assert_eq!(with(""), 1_000_000 + (64 << 10));
        assert_eq!(
            with("\"producer.message.max.bytes\" = \"3000000\"\n"),
            3_000_000
        );
        assert_eq!(with("\"message.max.bytes\" = \"2000000\"\n"), 2_000_000);
        assert_eq!(
            with("\"consumer.message.max.bytes\" = \"3000000\"\n"),
            1_000_000 + (64 << 10)
        );
    }

    /// The error of a config whose `[librdkafka]` table holds `key = value`.
    fn refusal(key: &str, value: &str) -> String {
        cfg_file(&format!(
            "brokers = \"a:1\"\n[librdkafka]\n\"{key}\" = \"{value}\"\n"
        ))
        .resolve()
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn transactional_id_is_refused_exactly_once_comes_as_a_flag() {
        let err = refusal("transactional.id", "moderato-1");
        assert!(err.contains("`librdkafka.transactional.id`"), "{err}");
        assert!(err.contains("--guarantee exactly-once"), "{err}");
        let err = refusal("producer.transactional.id", "x");
        assert!(err.contains("--guarantee exactly-once"), "{err}");
    }

    #[test]
    fn auto_offset_reset_latest_is_refused_as_a_silent_skip() {
        for value in ["latest", "largest", "end", "LATEST"] {
            let err = refusal("auto.offset.reset", value);
            assert!(
                err.contains("`librdkafka.auto.offset.reset`"),
                "{value}: {err}"
            );
            assert!(err.contains("silently skip"), "{value}: {err}");
            assert!(
                err.contains("--reset-offsets --to-latest"),
                "{value}: {err}"
            );
        }
        assert_eq!(refusal("consumer.auto.offset.reset", "earliest"), "");
    }

    #[test]
    fn isolation_level_is_refused_moderato_sets_it() {
        for key in ["isolation.level", "consumer.isolation.level"] {
            let err = refusal(key, "read_uncommitted");
            assert!(err.contains(&format!("`librdkafka.{key}`")), "{err}");
            assert!(err.contains("read_committed"), "{err}");
        }
    }

    #[test]
    fn metadata_broker_list_is_refused_in_favour_of_brokers() {
        let err = refusal("metadata.broker.list", "b:9092");
        assert!(err.contains("`librdkafka.metadata.broker.list`"), "{err}");
        assert!(err.contains("--brokers"), "{err}");
    }

    #[test]
    fn oauthbearer_config_and_file_values_are_redacted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let user = dir.path().join("user");
        std::fs::write(&user, "svc-moderato\n").expect("write");
        let cfg = cfg_file(&format!(
            "brokers = \"a:1\"\n[librdkafka]\n\"sasl.oauthbearer.config\" = \"principal=x secret=y\"\n\
             \"sasl.username\" = \"@{}\"\n\"client.rack\" = \"r1\"\n",
            user.display()
        ))
        .resolve()
        .expect("valid");
        assert_eq!(cfg.librdkafka["sasl.username"], "svc-moderato");
        let shown = cfg.redacted_properties();
        assert_eq!(shown["sasl.oauthbearer.config"], "***");
        assert_eq!(
            shown["sasl.username"], "***",
            "values from files are not logged"
        );
        assert_eq!(shown["client.rack"], "r1");
    }

    #[test]
    fn an_unreadable_property_file_is_a_start_up_error_naming_property_and_path() {
        let err = refusal("sasl.password", "@/nonexistent/moderato-secret");
        assert!(err.contains("`sasl.password`"), "{err}");
        assert!(err.contains("/nonexistent/moderato-secret"), "{err}");
    }

    fn cfg_file(text: &str) -> ServeSettings {
        toml::from_str(text).expect("parses")
    }
}
