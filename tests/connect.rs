//! Connecting `moderato serve` to a cluster the way managed Kafka requires, against Apache Kafka
//! (`scripts/broker`): SASL_SSL with SCRAM-SHA-512 and the broker's certificate verified, the
//! password from the environment or a file; and the start-up check, which stops the service
//! with a clear message on a wrong password, an untrusted certificate, unreachable brokers or a
//! missing topic instead of retrying quietly forever.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{collect, comment, create_topics, produce, unique, Broker, Serve};

/// How long a refused start may take: the check fails fast on authentication and TLS errors;
/// 30 s leaves room for a loaded machine.
const START_BOUND: Duration = Duration::from_secs(30);

/// The `-X` arguments of a SASL_SSL client of the broker, without the password.
fn sasl_args(broker: &Broker) -> Vec<String> {
    [
        "security.protocol=SASL_SSL".to_string(),
        "sasl.mechanism=SCRAM-SHA-512".to_string(),
        format!("sasl.username={}", broker.sasl_user),
        format!("ssl.ca.location={}", broker.ca.display()),
        "ssl.endpoint.identification.algorithm=https".to_string(),
    ]
    .into_iter()
    .flat_map(|p| ["-X".to_string(), p])
    .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits for a start that must be refused; returns its log.
fn refused(mut serve: Serve) -> String {
    let started = Instant::now();
    let status = serve.wait(START_BOUND);
    let log = serve.log_text();
    let status = status.unwrap_or_else(|| panic!("still running after {START_BOUND:?}:\n{log}"));
    assert!(!status.success(), "a refused start exits non-zero:\n{log}");
    println!("refused after {:.1} s", started.elapsed().as_secs_f64());
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_with_scram_and_verified_tls_carries_comments_through() {
    let broker = Broker::start();
    create_topics(&broker, 2).await;
    let group = unique("sasl");
    let args = sasl_args(&broker);

    // The password from MODERATO_LIBRDKAFKA__SASL_PASSWORD.
    let mut first = Serve::start_on(
        &broker,
        &broker.sasl_brokers,
        &group,
        "env",
        &refs(&args),
        &[("MODERATO_LIBRDKAFKA__SASL_PASSWORD", &broker.sasl_password)],
    );
    let sent = produce(
        &broker,
        (0..50).map(|i| (format!("k{i}"), comment(i))).collect(),
    )
    .await;
    let got = collect(&broker, Duration::from_secs(60), |g| g.len() >= sent.len()).await;
    assert_eq!(
        got.len(),
        50,
        "comments in, records out\n{}",
        first.log_text()
    );
    assert!(got.iter().all(|g| g.topic == broker.output));
    first.signal("TERM");
    assert!(first
        .wait(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    assert!(
        !first.log_text().contains(&broker.sasl_password),
        "the password is never logged"
    );

    // The password from a file: `-X sasl.password=@FILE`.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sasl-password");
    std::fs::write(&file, format!("{}\n", broker.sasl_password)).expect("write");
    let mut with_file = args.clone();
    with_file.extend(["-X".into(), format!("sasl.password=@{}", file.display())]);
    let mut second = Serve::start_on(
        &broker,
        &broker.sasl_brokers,
        &group,
        "file",
        &refs(&with_file),
        &[],
    );
    produce(
        &broker,
        (50..100).map(|i| (format!("k{i}"), comment(i))).collect(),
    )
    .await;
    let got = collect(&broker, Duration::from_secs(60), |g| g.len() >= 100).await;
    let by_file = got
        .iter()
        .filter(|g| g.headers.get("moderato-instance").map(String::as_str) == Some("file"))
        .count();
    assert!(
        got.len() >= 100 && by_file >= 50,
        "{} records, {by_file} by the second instance\n{}",
        got.len(),
        second.log_text()
    );
    second.signal("TERM");
    assert!(second
        .wait(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_start_naming_the_authentication_failure() {
    let broker = Broker::start();
    create_topics(&broker, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sasl-password");
    std::fs::write(&file, "not-the-password-0451\n").expect("write");
    let mut args = sasl_args(&broker);
    args.extend(["-X".into(), format!("sasl.password=@{}", file.display())]);
    let serve = Serve::start_on(
        &broker,
        &broker.sasl_brokers,
        &unique("wrong"),
        "wrong",
        &refs(&args),
        &[],
    );
    let log = refused(serve);
    assert!(
        log.contains(&format!(
            "authentication failed against {}",
            broker.sasl_brokers
        )),
        "{log}"
    );
    assert!(
        log.contains("check sasl.username and sasl.password"),
        "{log}"
    );
    assert!(
        !log.contains("not-the-password-0451"),
        "no secret in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_the_start_verification_is_on() {
    let broker = Broker::start();
    create_topics(&broker, 1).await;
    // No ssl.ca.location: the system's CAs do not trust the test CA.
    let args: Vec<String> = [
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        "ssl.endpoint.identification.algorithm=https",
    ]
    .into_iter()
    .flat_map(|p| ["-X".to_string(), p.to_string()])
    .chain(["-X".into(), format!("sasl.username={}", broker.sasl_user)])
    .collect();
    let serve = Serve::start_on(
        &broker,
        &broker.sasl_brokers,
        &unique("untrusted"),
        "untrusted",
        &refs(&args),
        &[("MODERATO_LIBRDKAFKA__SASL_PASSWORD", &broker.sasl_password)],
    );
    let log = refused(serve);
    assert!(log.contains("TLS handshake with"), "{log}");
    assert!(log.contains("check ssl.ca.location"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_output_topic_stops_the_start_naming_it_and_how_to_create_it() {
    let broker = Broker::start();
    broker.create_topic(&broker.input, 1).await;
    broker.create_topic(&broker.dlq, 1).await;
    let serve = Serve::start(&broker, &unique("missing"), "missing", &[]);
    let log = refused(serve);
    assert!(
        log.contains(&format!(
            "the output topic `{}` does not exist on {}",
            broker.output, broker.brokers
        )),
        "{log}"
    );
    assert!(log.contains("kafka-topics.sh"), "{log}");
    assert!(log.contains("--output-topic"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_stop_the_start_after_the_timeout() {
    let broker = Broker::start();
    // A port nothing listens on.
    let nowhere = format!("127.0.0.1:{}", common::kafka::free_port());
    let serve = Serve::start_on(
        &broker,
        &nowhere,
        &unique("nowhere"),
        "nowhere",
        &["--startup-timeout-ms", "3000"],
        &[],
    );
    let started = Instant::now();
    let log = refused(serve);
    assert!(
        log.contains(&format!("no answer from the brokers {nowhere} within 3 s")),
        "{log}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
}
