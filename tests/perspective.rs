//! `moderato api` as a Perspective API replacement, over real HTTP with the shipped model:
//! Coral's exact requests, API keys, the loopback rule and `doNotStore`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, default_model_path, KillOnDrop};
use serde_json::{json, Value};

/// A running `moderato api` and its base URL.
struct Api {
    _child: KillOnDrop,
    base: String,
}

fn start(extra: &[&str]) -> Api {
    let model = default_model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moderato"))
        .args(["api", "--http", "127.0.0.1:0", "--model", arg(&model)])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("moderato api starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the listening line");
    let base = line
        .trim()
        .strip_prefix("moderato api listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    Api {
        _child: child,
        base,
    }
}

/// POSTs `body` and returns (status, JSON body, headers we look at).
fn post(url: &str, body: &Value, timeout: Duration) -> (u16, Value, Option<String>) {
    let response = match ureq::post(url).timeout(timeout).send_json(body.clone()) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = response.status();
    let model = response.header("x-moderato-model").map(String::from);
    let json: Value = response.into_json().expect("a JSON body");
    (status, json, model)
}

/// What Coral's `sendToPerspective` sends for `comments:analyze`.
fn coral_analyze(text: &str) -> Value {
    json!({
        "comment": {"text": text},
        "doNotStore": true,
        "requestedAttributes": {"TOXICITY": {}},
        "languages": ["en"],
    })
}

#[test]
fn coral_gets_what_it_reads_within_its_timeout_and_its_verdicts_become_feedback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let feedback = dir.path().join("feedback.jsonl");
    let api = start(&["--feedback-file", arg(&feedback)]);
    // Coral's endpoint setting is the base ending in /v1alpha1; it appends the method and key.
    let endpoint = format!("{}/v1alpha1", api.base);
    let url = format!("{endpoint}/comments:analyze?key=anything");
    for (text, toxic) in [
        ("You are a pathetic idiot and everyone here hates you", true),
        (
            "Thank you for this careful and well researched article",
            false,
        ),
        // Arabic, which Coral labels "en" like every locale it does not know.
        ("اللهم اهلك اعداءك يا رب واجعلهم عبرة يا ابن الكلب", true),
    ] {
        let started = Instant::now();
        let (status, body, model) = post(&url, &coral_analyze(text), Duration::from_millis(800));
        assert_eq!(status, 200, "{body}");
        assert!(started.elapsed() < Duration::from_millis(800));
        let value = body["attributeScores"]["TOXICITY"]["summaryScore"]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("no TOXICITY.summaryScore.value in {body}"));
        assert_eq!(value >= 0.5, toxic, "{text}: {value}");
        assert_eq!(body["languages"], json!(["en"]));
        assert!(model.is_some_and(|m| m.starts_with("default ")));
        assert_eq!(body["model"]["name"], "default");
    }

    // Coral's suggestscore on a rejection (value 1) and an approval (value 0).
    for (id, value) in [("c-1", 1), ("c-2", 0)] {
        let suggestion = json!({
            "comment": {"text": "You are a pathetic idiot"},
            "context": {"entries": [{"text": format!("{{\"Coral_comment_id\":\"{id}\"}}")}]},
            "attributeScores": {"TOXICITY": {"summaryScore": {"value": value}}},
            "languages": ["en"],
            "communityId": "Coral:https://news.example",
            "clientToken": format!("comment:{id}"),
        });
        let (status, body, _) = post(
            &format!("{endpoint}/comments:suggestscore?key=anything"),
            &suggestion,
            Duration::from_millis(800),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["clientToken"], format!("comment:{id}"));
    }
    let lines: Vec<Value> = std::fs::read_to_string(&feedback)
        .expect("the feedback file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["id"], "c-1");
    assert_eq!(lines[0]["head"], "offensive");
    assert_eq!(lines[0]["label"], true);
    assert_eq!(lines[0]["domain"], "Coral:https://news.example");
    assert_eq!(lines[1]["label"], false);
}

#[test]
fn perspective_errors_are_googles_shape() {
    let api = start(&[]);
    let url = format!("{}/v1alpha1/comments:analyze", api.base);
    let error_type = |body: Value| {
        let (status, body, _) = post(&url, &body, Duration::from_secs(5));
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        body["error"]["details"][0]["errorType"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let with =
        |text: &str, attrs: Value| json!({"comment": {"text": text}, "requestedAttributes": attrs});
    assert_eq!(
        error_type(with(" ", json!({"TOXICITY": {}}))),
        "COMMENT_EMPTY"
    );
    assert_eq!(
        error_type(with(&"x".repeat(20_481), json!({"TOXICITY": {}}))),
        "COMMENT_TOO_LONG"
    );
    assert_eq!(
        error_type(with("hello there", json!({}))),
        "NO_REQUESTED_ATTRIBUTES"
    );
    assert_eq!(
        error_type(with("hello there", json!({"THREAT": {}}))),
        "ATTRIBUTE_NOT_SUPPORTED"
    );
    // The shipped `insult` head was trained on English only, `obscene` on Arabic only.
    assert_eq!(
        error_type(with("يا حمار", json!({"INSULT": {}}))),
        "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"
    );
    assert_eq!(
        error_type(with("you are an idiot", json!({"PROFANITY": {}}))),
        "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"
    );
}

#[test]
fn keys_are_checked_and_a_network_address_needs_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# test key\ns3cret-key\n").expect("written");
    let api = start(&["--api-keys", arg(&keys)]);
    let body = coral_analyze("hello there, nice article");
    let analyze = format!("{}/v1alpha1/comments:analyze", api.base);
    for url in [analyze.clone(), format!("{analyze}?key=wrong")] {
        let (status, body, _) = post(&url, &body, Duration::from_secs(5));
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    }
    let (status, _, _) = post(
        &format!("{analyze}?key=s3cret-key"),
        &body,
        Duration::from_secs(5),
    );
    assert_eq!(status, 200);
    let by_header = ureq::post(&analyze)
        .set("x-goog-api-key", "s3cret-key")
        .send_json(body.clone())
        .map(|r| r.status());
    assert_eq!(by_header.ok(), Some(200));
    let suggest = format!("{}/v1alpha1/comments:suggestscore", api.base);
    let verdict = json!({"comment": {"text": "x"}, "attributeScores": {"TOXICITY": {"summaryScore": {"value": 1}}}});
    let (status, _, _) = post(&suggest, &verdict, Duration::from_secs(5));
    assert_eq!(status, 403, "suggestscore is keyed");
    // moderato's own routes answer in their own error shape.
    match ureq::post(&format!("{}/v1/classify", api.base)).send_json(json!({"text": "hello"})) {
        Err(ureq::Error::Status(403, r)) => {
            let body: Value = r.into_json().expect("JSON");
            assert!(body["error"].is_string(), "{body}");
        }
        other => panic!("/v1/classify without a key: {other:?}"),
    }
    // The dashboard's data carries comment text: keyed; the page, health and metrics are not.
    for path in ["/api/state", "/events"] {
        let r = ureq::get(&format!("{}{path}", api.base))
            .call()
            .map(|r| r.status());
        assert!(
            matches!(r, Err(ureq::Error::Status(403, _))),
            "{path}: {r:?}"
        );
    }
    let state = common::http_get(&format!("{}/api/state?key=s3cret-key", api.base));
    assert!(state.is_some(), "/api/state with the key");
    for path in ["/healthz", "/metrics", "/"] {
        assert!(
            common::http_get(&format!("{}{path}", api.base)).is_some(),
            "{path} is open"
        );
    }

    // Without keys, only loopback.
    let out = common::moderato(&["api", "--http", "0.0.0.0:0"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--api-keys") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
}

/// Settings `moderato api` cannot serve with are refused at start, each naming what to fix.
#[test]
fn unusable_api_settings_are_refused_at_start() {
    let model = default_model_path();
    let cases: [(&[&str], &str); 4] = [
        (&["--api-keys", "/nonexistent/keys"], "--api-keys"),
        (&["--public-url", "ftp://example.org/"], "--public-url"),
        (&["--attribute", "THREAT=no_such_head"], "no_such_head"),
        (
            &["--feedback-file", "/nonexistent/dir/fb.jsonl"],
            "/nonexistent/dir/fb.jsonl",
        ),
    ];
    for (extra, named) in cases {
        let mut args = vec!["api", "--http", "127.0.0.1:0", "--model", arg(&model)];
        args.extend_from_slice(extra);
        let out = common::moderato(&args, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} is refused: {stderr}");
        assert!(
            stderr.contains(named),
            "{extra:?}: the error names {named}: {stderr}"
        );
    }
}

/// The live feed's backlog (`/events`), read for a moment.
fn feed(base: &str) -> String {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connects");
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("request sent");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn do_not_store_keeps_the_comment_out_of_the_live_feed() {
    let api = start(&[]);
    let url = format!("{}/v1alpha1/comments:analyze", api.base);
    let mut secret = coral_analyze("my private words about the idiot next door");
    secret["clientToken"] = json!("private-1");
    let mut public = coral_analyze("a public comment about the idiot next door");
    public["doNotStore"] = json!(false);
    public["clientToken"] = json!("public-1");
    for body in [&secret, &public] {
        let (status, body, _) = post(&url, body, Duration::from_secs(5));
        assert_eq!(status, 200, "{body}");
    }
    let events = feed(&api.base);
    assert!(events.contains("public-1"), "{events}");
    assert!(!events.contains("private"), "{events}");
    // Both are counted in the metrics (without text or id).
    let metrics = common::http_get(&format!("{}/metrics", api.base)).unwrap_or_default();
    let classified: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("moderato_classified_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(classified, 2.0, "{metrics}");
    assert!(!metrics.contains("private"));
}
