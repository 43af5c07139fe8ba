//! The live dashboard in a real browser: headless Chromium (Debian's, driven through
//! chromedriver's WebDriver HTTP API) opens the page of a running `moderato demo` only once its
//! sample comments are all labelled and finds them listed, then sees typed comments arrive and
//! the charts update, and saves a screenshot to `target/screenshots/dashboard.png`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::kafka::free_port;
use common::{wait_for, KillOnDrop};
use moderato::ops::state::DashboardState;
use serde_json::{json, Value};

/// One WebDriver command; returns its `value`.
fn webdriver(method: &str, url: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, url).timeout(Duration::from_secs(60));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let text = match res {
        Ok(r) => r.into_string().expect("webdriver body"),
        Err(ureq::Error::Status(code, r)) => {
            panic!(
                "webdriver {method} {url}: {code} {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("webdriver {method} {url}: {e}"),
    };
    let v: Value = serde_json::from_str(&text).expect("webdriver JSON");
    v["value"].clone()
}

/// The demo's sample comments (its `SAMPLES`), plus the malformed one it sends after them.
const SAMPLES: &str = include_str!("../examples/comments.jsonl");
/// The id of the demo's malformed sample (a dead letter).
const MALFORMED_ID: &str = "bad-1";

/// Comments typed into the demo while the page is open (Arabic and English, some offensive).
const LINES: &[&str] = &[
    "Great reporting, thank you for covering this properly.",
    "اللهم اهزم أعداءك واجعل تدبيرهم تدميرا",
    "You are a pathetic idiot and a liar.",
    "مقال رائع ومفيد شكرا للكاتب",
    "{\"text\": \"The vaccine saved my mother's life\", \"target\": \"Covid Vaccine\"}",
    "What a stupid clown this politician is",
    "يا حمار يا غبي",
    "I disagree with the article but it is well argued.",
];

#[test]
fn the_dashboard_lists_earlier_comments_then_shows_new_ones_and_charts_updating() {
    let http = format!("127.0.0.1:{}", free_port());
    let mut demo = Command::new(env!("CARGO_BIN_EXE_moderato"))
        .args(["demo", "--http", &http, "--pace-ms", "100"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let mut stdin = demo.stdin.take().expect("piped stdin");
    let _demo = KillOnDrop(demo);
    let page = format!("http://{http}/");
    // The page opens only once every sample is labelled (or dead-lettered): it must list them
    // from the server's backlog, not only comments that arrive while it is open.
    let mut sample_ids: Vec<String> = SAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("sample JSON");
            v["id"].as_str().expect("sample id").to_string()
        })
        .collect();
    sample_ids.push(MALFORMED_ID.into());
    wait_for(&format!("{page}api/state"), "every sample labelled", |b| {
        serde_json::from_str::<DashboardState>(b)
            .is_ok_and(|s| s.totals.consumed >= sample_ids.len() as u64)
    });

    let driver_port = free_port();
    let _driver = KillOnDrop(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/test installs chromium-driver)"),
    );
    let wd = format!("http://127.0.0.1:{driver_port}");
    wait_for(&format!("{wd}/status"), "chromedriver", |b| !b.is_empty());
    let profile = tempfile::tempdir().expect("profile dir");
    let session = webdriver(
        "POST",
        &format!("{wd}/session"),
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--window-size=1600,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}})),
    );
    let id = session["sessionId"]
        .as_str()
        .expect("session id")
        .to_string();
    let s = format!("{wd}/session/{id}");
    webdriver("POST", &format!("{s}/url"), Some(json!({"url": page})));
    let listed = || {
        webdriver(
            "POST",
            &format!("{s}/execute/sync"),
            Some(
                json!({"script": "return [...document.querySelectorAll('#feed .feed-row')]
                .map(r => r.dataset.id);", "args": []}),
            ),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = listed();
    let all_listed = |shown: &Value| {
        sample_ids
            .iter()
            .all(|id| shown.as_array().is_some_and(|a| a.contains(&json!(id))))
    };
    while !all_listed(&shown) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        shown = listed();
    }
    assert!(
        all_listed(&shown),
        "a page opened after the samples were labelled lists them all: {shown} (want {sample_ids:?})"
    );
    assert_eq!(
        shown.as_array().map(Vec::len),
        Some(sample_ids.len()),
        "each once: {shown}"
    );

    // Now keep comments flowing while the browser watches.
    let typing = Arc::new(AtomicBool::new(true));
    let writer = {
        let typing = Arc::clone(&typing);
        std::thread::spawn(move || {
            let mut i = 0;
            while typing.load(Ordering::Relaxed) {
                let line = LINES[i % LINES.len()];
                if writeln!(stdin, "{line}").is_err() {
                    break;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    let probe = || {
        webdriver(
            "POST",
            &format!("{s}/execute/sync"),
            Some(json!({"script": "return {
                updates: Number(document.body.dataset.updates || 0),
                events: Number(document.body.dataset.events || 0),
                rows: document.querySelectorAll('#feed .feed-row').length,
                arabic: [...document.querySelectorAll('#feed .feed-row')]
                    .some(r => /[\\u0600-\\u06FF]/.test(r.textContent)),
                rtl: [...document.querySelectorAll('#feed [dir=auto]')].length,
                bars: document.querySelectorAll('#series-chart rect').length,
                throughput: document.querySelector('#throughput').textContent,
            };", "args": []})),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = probe();
    let mut last = first.clone();
    while Instant::now() < deadline {
        last = probe();
        let grew = last["updates"].as_u64() >= first["updates"].as_u64().map(|u| u + 3);
        let typed = last["events"].as_u64() >= first["events"].as_u64().map(|e| e + 8);
        if grew && typed && last["arabic"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last["events"].as_u64() >= first["events"].as_u64().map(|e| e + 8),
        "typed comments arrived while the page was open: {first} → {last}"
    );
    assert!(
        last["rows"].as_u64() >= Some(16),
        "the feed shows them below the samples: {last}"
    );
    assert!(
        last["arabic"] == true && last["rtl"].as_u64() > Some(0),
        "Arabic, right to left: {last}"
    );
    assert!(
        last["updates"].as_u64() >= first["updates"].as_u64().map(|u| u + 3),
        "the charts kept updating: {first} → {last}"
    );
    assert!(
        last["bars"].as_u64() > Some(0),
        "the time series has bars: {last}"
    );

    std::thread::sleep(Duration::from_secs(2));
    let png = webdriver("GET", &format!("{s}/screenshot"), None);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().expect("base64 PNG"))
        .expect("valid base64");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join("dashboard.png"), &bytes).expect("save the screenshot");
    let _ = ureq::delete(&s).call();
    typing.store(false, Ordering::Relaxed);
    let _ = writer.join();
}
