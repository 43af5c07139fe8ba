//! The start-up check of `moderato serve`: before the pipeline starts, a short-lived client
//! built from the same settings asks the brokers for the metadata of the input, output and
//! dead-letter topics. Wrong credentials, an untrusted certificate, unreachable brokers or a
//! missing topic stop the start with an error saying what to check, instead of librdkafka
//! retrying quietly forever while nothing flows.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use super::config::ServeConfig;

/// Why the service cannot start against these brokers and topics.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The brokers refused the SASL credentials.
    #[error("authentication failed against {brokers}: {reason}; {hint}")]
    Authentication {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's description (it holds no secret).
        reason: String,
        /// What to check, for the configured `sasl.mechanism`.
        hint: &'static str,
    },
    /// The TLS handshake failed, e.g. the broker's certificate is not trusted.
    #[error(
        "TLS handshake with {brokers} failed: {reason}; check ssl.ca.location (the CA that \
         signed the brokers' certificates; the system store when unset) and that the \
         certificates name the hosts in --brokers"
    )]
    Tls {
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's description.
        reason: String,
    },
    /// No broker answered a metadata request in time.
    #[error(
        "no answer from the brokers {brokers} within {} s ({reason}); check --brokers, \
         security.protocol (PLAINTEXT, SSL, SASL_SSL) and that the brokers are reachable from here",
        timeout.as_secs_f64()
    )]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// How long the check waited.
        timeout: Duration,
        /// The last connection error seen, if any.
        reason: String,
    },
    /// One of the service's topics does not exist.
    #[error(
        "the {role} topic `{topic}` does not exist on {brokers}; create it before starting \
         moderato, e.g. kafka-topics.sh --bootstrap-server {brokers} --create --topic {topic} \
         --partitions 6 (deploy/create-topics.sh creates all of them), or name another with \
         {flag}"
    )]
    MissingTopic {
        /// `input`, `output` or `dead-letter`.
        role: &'static str,
        /// The topic.
        topic: String,
        /// The flag that names it.
        flag: &'static str,
        /// The bootstrap servers.
        brokers: String,
    },
    /// The credentials may not see one of the topics.
    #[error(
        "not authorized to describe the {role} topic `{topic}` on {brokers}; grant this \
         principal DESCRIBE and {access} on it"
    )]
    NotAuthorized {
        /// `input`, `output` or `dead-letter`.
        role: &'static str,
        /// The topic.
        topic: String,
        /// READ (input) or WRITE (output, dead letters).
        access: &'static str,
        /// The bootstrap servers.
        brokers: String,
    },
    /// The check's client could not be created (an unknown property or value).
    #[error("kafka client: {0}")]
    Client(#[source] KafkaError),
}

/// The first authentication or TLS error librdkafka reports, and the last transport error.
#[derive(Default)]
struct Watch {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    fatal: Option<(RDKafkaErrorCode, String)>,
    last: Option<String>,
}

impl Watch {
    /// Records an error: the first authentication or TLS failure, else the latest other one.
    fn record(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        match code {
            Some(
                c @ (RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::SSL),
            ) => {
                seen.fatal.get_or_insert_with(|| (c, reason.to_string()));
            }
            _ => seen.last = Some(reason.to_string()),
        }
    }
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(error.rdkafka_error_code(), reason);
    }

    /// A failed TLS handshake reaches only the log (as `FAIL`), not the error callback.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) > (RDKafkaLogLevel::Warning as i32) {
            tracing::debug!(target: "librdkafka", "{fac} {message}");
            return;
        }
        tracing::warn!(target: "librdkafka", "{fac} {message}");
        if fac == "FAIL" {
            let code = if message.contains("SSL handshake failed")
                || message.contains("certificate verify failed")
            {
                Some(RDKafkaErrorCode::SSL)
            } else if message.contains("SASL authentication error") {
                Some(RDKafkaErrorCode::Authentication)
            } else {
                None
            };
            self.record(code, message);
        }
    }
}

impl ProducerContext for Watch {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// One metadata attempt's wait; short, so an authentication error is reported at once.
const ATTEMPT: Duration = Duration::from_millis(500);
/// How long a topic must stay unknown before it counts as missing (a topic created just
/// before the start may take a moment to reach every broker's metadata).
const UNKNOWN_GRACE: Duration = Duration::from_secs(2);

/// Checks, within `cfg.startup_timeout`, that the brokers accept the configured security
/// settings and that the input, output and dead-letter topics exist and may be described.
pub fn check(cfg: &ServeConfig) -> Result<(), PreflightError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("moderato-{}-preflight", cfg.instance));
    for (k, v) in cfg.client_properties("producer") {
        config.set(k, v);
    }
    // Asking about a missing topic must not create it.
    config.set("allow.auto.create.topics", "false");
    let client: BaseProducer<Watch> = config
        .create_with_context(Watch::default())
        .map_err(|e| PreflightError::Client(super::properties::hide_value(e)))?;
    let deadline = Instant::now() + cfg.startup_timeout;
    let topics = [
        ("input", cfg.input_topic.as_str(), "--input-topic", "READ"),
        (
            "output",
            cfg.output_topic.as_str(),
            "--output-topic",
            "WRITE",
        ),
        (
            "dead-letter",
            cfg.dlq_topic.as_str(),
            "--dlq-topic",
            "WRITE",
        ),
    ];
    for (role, topic, flag, access) in topics {
        let mut unknown_since: Option<Instant> = None;
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(ATTEMPT);
            let answer = client.client().fetch_metadata(Some(topic), wait);
            client.poll(Duration::ZERO);
            let seen = watched(&client);
            if let Some((code, reason)) = seen.fatal {
                let brokers = cfg.brokers.clone();
                return Err(match code {
                    RDKafkaErrorCode::SSL => PreflightError::Tls { brokers, reason },
                    _ => PreflightError::Authentication {
                        brokers,
                        reason,
                        hint: credentials_hint(cfg),
                    },
                });
            }
            let now = Instant::now();
            let error = match &answer {
                Ok(md) => md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| t.error()),
                Err(_) => None,
            };
            match error {
                Some(None) => break,
                Some(Some(e)) if is(e, RDKafkaErrorCode::TopicAuthorizationFailed) => {
                    return Err(PreflightError::NotAuthorized {
                        role,
                        topic: topic.into(),
                        access,
                        brokers: cfg.brokers.clone(),
                    })
                }
                Some(Some(e))
                    if is(e, RDKafkaErrorCode::UnknownTopicOrPartition)
                        || is(e, RDKafkaErrorCode::UnknownTopic) =>
                {
                    let since = *unknown_since.get_or_insert(now);
                    if now >= deadline || now.duration_since(since) >= UNKNOWN_GRACE {
                        return Err(PreflightError::MissingTopic {
                            role,
                            topic: topic.into(),
                            flag,
                            brokers: cfg.brokers.clone(),
                        });
                    }
                }
                // No answer yet, or a passing error (leader election): ask again.
                _ => {}
            }
            if now >= deadline {
                let reason = seen
                    .last
                    .or_else(|| answer.err().map(|e| e.to_string()))
                    .unwrap_or_else(|| "no metadata".into());
                return Err(PreflightError::Unreachable {
                    brokers: cfg.brokers.clone(),
                    timeout: cfg.startup_timeout,
                    reason,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    tracing::info!(brokers = %cfg.brokers, "brokers answered; input, output and dead-letter topics exist");
    Ok(())
}

/// What the client's context has seen so far (empty if its lock is poisoned).
/// What to check when the brokers refuse the credentials of `cfg`'s `sasl.mechanism`.
fn credentials_hint(cfg: &ServeConfig) -> &'static str {
    let oauth = cfg
        .client_properties("producer")
        .into_iter()
        .any(|(k, v)| k == "sasl.mechanism" && v.eq_ignore_ascii_case("OAUTHBEARER"));
    if oauth {
        "check sasl.oauthbearer.client.id, sasl.oauthbearer.client.secret \
         (MODERATO_LIBRDKAFKA__SASL_OAUTHBEARER_CLIENT_SECRET or -X \
         sasl.oauthbearer.client.secret=@FILE) and sasl.oauthbearer.token.endpoint.url"
    } else {
        "check sasl.username and sasl.password (MODERATO_LIBRDKAFKA__SASL_PASSWORD or -X \
         sasl.password=@FILE), and that sasl.mechanism matches the cluster's (e.g. \
         SCRAM-SHA-512 or PLAIN)"
    }
}

fn watched(client: &BaseProducer<Watch>) -> Seen {
    client
        .context()
        .seen
        .lock()
        .map(|s| Seen {
            fatal: s.fatal.clone(),
            last: s.last.clone(),
        })
        .unwrap_or_default()
}

fn is(e: RDKafkaRespErr, code: RDKafkaErrorCode) -> bool {
    RDKafkaErrorCode::from(e) == code
}
