//! Connecting `moderato serve` to a cluster the way managed Kafka requires, against Apache Kafka
//! (`scripts/broker`): SASL_SSL with SCRAM-SHA-512 and the broker's certificate verified, the
//! password from the environment or a file; SASL_SSL with OAUTHBEARER tokens that librdkafka
//! fetches from an OIDC token endpoint (a refused client stops the start); and the start-up
//! check, which stops the service
//! with a clear message on a wrong password, an untrusted certificate, unreachable brokers or a
//! missing topic instead of retrying quietly forever.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{collect, comment, create_topics, produce, unique, Broker, Serve};

/// How long a refused start may take: the check fails fast on authentication and TLS errors;
/// 30 s leaves room for a loaded machine.
const START_BOUND: Duration = Duration::from_secs(30);

/// The `-X` arguments of a client of the broker's SASL_SSL listener, verifying its certificate,
/// with the mechanism's own `properties`.
fn sasl_ssl_args(broker: &Broker, properties: Vec<String>) -> Vec<String> {
    ["security.protocol=SASL_SSL".to_string()]
        .into_iter()
        .chain(properties)
        .chain([
            format!("ssl.ca.location={}", broker.ca.display()),
            "ssl.endpoint.identification.algorithm=https".to_string(),
        ])
        .flat_map(|p| ["-X".to_string(), p])
        .collect()
}

/// The `-X` arguments of a SCRAM-SHA-512 client of the broker, without the password.
fn sasl_args(broker: &Broker) -> Vec<String> {
    sasl_ssl_args(
        broker,
        vec![
            "sasl.mechanism=SCRAM-SHA-512".to_string(),
            format!("sasl.username={}", broker.sasl_user),
        ],
    )
}

/// Starts `serve` on the SASL_SSL listener with credentials the brokers (or the token endpoint)
/// refuse, waits for the refused start, and checks that it names the authentication failure
/// and `hint`, and never the `secret`; returns the log.
fn authentication_refused(
    broker: &Broker,
    name: &str,
    args: &[String],
    env: &[(&str, &str)],
    secret: &str,
    hint: &str,
) -> String {
    let serve = Serve::start_on(
        broker,
        &broker.sasl_brokers,
        &unique(name),
        name,
        &refs(args),
        env,
    );
    let log = refused(serve);
    assert!(
        log.contains(&format!(
            "authentication failed against {}",
            broker.sasl_brokers
        )),
        "{log}"
    );
    assert!(log.contains(hint), "{log}");
    assert!(!log.contains(secret), "no secret in the log");
    log
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
    authentication_refused(
        &broker,
        "wrong",
        &args,
        &[],
        "not-the-password-0451",
        "check sasl.username and sasl.password",
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

/// Base64 (RFC 4648): the URL alphabet without padding for tokens (`url`), else the standard one
/// with padding, as HTTP basic authentication uses.
fn base64(bytes: &[u8], url: bool) -> String {
    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let c = char::from(STANDARD[(n >> (18 - 6 * i) & 63) as usize]);
            out.push(match (url, c) {
                (true, '+') => '-',
                (true, '/') => '_',
                _ => c,
            });
        }
        if !url {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

/// A stand-in OIDC token endpoint (the client-credentials grant): every POST gets an unsigned
/// JWT for `sub` valid for an hour, which the broker's unsecured validator accepts. Returns its
/// URL and the requests it answered (their request lines and headers).
fn token_endpoint(
    sub: &'static str,
    refuse: bool,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/oauth2/token",
        listener.local_addr().expect("address")
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            // One thread per connection, with a read timeout: a stalled client holds up no other.
            std::thread::spawn(move || answer(stream, sub, refuse, &log));
        }
    });
    (url, seen)
}

/// Reads one token request from `stream` and answers it with an unsigned JWT for `sub`, or
/// with 401 `invalid_client` when `refuse` (a wrong client secret).
fn answer(
    mut stream: std::net::TcpStream,
    sub: &str,
    refuse: bool,
    log: &std::sync::Mutex<Vec<String>>,
) {
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers, then as many body bytes as Content-Length says.
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = base64(br#"{"alg":"none"}"#, true);
    let claims = format!(r#"{{"sub":"{sub}","iat":{now},"exp":{}}}"#, now + 3600);
    let jwt = format!("{header}.{}.", base64(claims.as_bytes(), true));
    let (status, body) = if refuse {
        (
            "401 Unauthorized",
            r#"{"error":"invalid_client"}"#.to_string(),
        )
    } else {
        (
            "200 OK",
            format!(r#"{{"access_token":"{jwt}","token_type":"bearer","expires_in":3600}}"#),
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    if let Ok(mut l) = log.lock() {
        l.push(String::from_utf8_lossy(&request).to_string());
    }
}

/// The `-X` arguments of an OAUTHBEARER client of the broker that fetches its tokens from the
/// OIDC endpoint `url` (the client secret comes from the environment).
fn oidc_args(broker: &Broker, url: &str) -> Vec<String> {
    sasl_ssl_args(
        broker,
        vec![
            "sasl.mechanism=OAUTHBEARER".to_string(),
            "sasl.oauthbearer.method=oidc".to_string(),
            "sasl.oauthbearer.client.id=moderato-client".to_string(),
            format!("sasl.oauthbearer.token.endpoint.url={url}"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_oidc_client_stops_the_start() {
    let broker = Broker::start();
    create_topics(&broker, 1).await;
    let (url, requests) = token_endpoint("moderato", true);
    let log = authentication_refused(
        &broker,
        "oidc-refused",
        &oidc_args(&broker, &url),
        &[(
            "MODERATO_LIBRDKAFKA__SASL_OAUTHBEARER_CLIENT_SECRET",
            "wrong-secret-5512",
        )],
        "wrong-secret-5512",
        "check sasl.oauthbearer.client.id, sasl.oauthbearer.client.secret",
    );
    assert!(
        log.contains("invalid_client"),
        "the endpoint's answer: {log}"
    );
    assert!(requests.lock().is_ok_and(|r| !r.is_empty()), "it asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_tokens_from_an_oidc_endpoint_carry_comments_through() {
    let broker = Broker::start();
    create_topics(&broker, 1).await;
    let (url, requests) = token_endpoint("moderato", false);
    let secret = "client-secret-7781";
    let args = oidc_args(&broker, &url);
    let mut serve = Serve::start_on(
        &broker,
        &broker.sasl_brokers,
        &unique("oidc"),
        "oidc",
        &refs(&args),
        &[(
            "MODERATO_LIBRDKAFKA__SASL_OAUTHBEARER_CLIENT_SECRET",
            secret,
        )],
    );
    let sent = produce(
        &broker,
        (0..20).map(|i| (format!("k{i}"), comment(i))).collect(),
    )
    .await;
    let got = collect(&broker, Duration::from_secs(60), |g| g.len() >= sent.len()).await;
    assert_eq!(
        got.len(),
        20,
        "comments in, records out\n{}",
        serve.log_text()
    );
    serve.signal("TERM");
    assert!(serve
        .wait(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    // librdkafka asked the endpoint with the client's credentials (HTTP basic auth).
    let seen = requests.lock().map(|r| r.clone()).unwrap_or_default();
    let basic = base64(format!("moderato-client:{secret}").as_bytes(), false);
    assert!(!seen.is_empty(), "the token endpoint was asked");
    assert!(
        seen.iter().all(|r| r.starts_with("POST /oauth2/token ")
            && r.contains("grant_type=client_credentials")
            && r.contains(&format!("Basic {basic}"))),
        "{seen:?}"
    );
    let log = serve.log_text();
    assert!(
        !log.contains(secret) && !log.contains(&basic),
        "the secret is never logged, plain or encoded"
    );
}

#[test]
fn the_tests_base64_is_rfc_4648s() {
    assert_eq!(base64(b"Man", false), "TWFu");
    assert_eq!(base64(b"Ma", false), "TWE=");
    assert_eq!(base64(b"M", false), "TQ==");
    assert_eq!(base64(&[0xfb, 0xff], true), "-_8");
}
