//! The HTTP server's limits over real sockets: bodies over the limit refused before they are
//! read (a huge `Content-Length`, `Expect: 100-continue`, a chunked body), slow request heads
//! and stalled bodies timed out while keep-alive and the live feed go on, connections over the
//! cap kept waiting, and shutdown that live feeds do not hold up and that drops stuck
//! connections at its deadline. Last, a spawned `moderato serve` under a slowloris crowd and 200
//! live-feed clients that never read: its memory stays bounded and SIGTERM still exits 0.
//!
//! Every wait here has a generous bound (seconds where the server needs milliseconds), so a
//! busy machine makes the tests slower, not red; none of them measures speed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::{comment, free_port, produce, Broker};
use common::{http_get, wait_for, KillOnDrop};
use moderato::clock::now;
use moderato::ops::drift::DriftConfig;
use moderato::ops::http::{router, App};
use moderato::ops::live::{Item, Live};
use moderato::ops::{serve_on, HttpLimits, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The longest any single step may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// An in-process server over the real routes (no model loaded: no test here needs one).
struct Server {
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    app: App,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(limits: HttpLimits) -> Server {
    let telemetry = Arc::new(Telemetry::new(
        Live::new("serve", "test".into(), DriftConfig::default()),
        true,
    ));
    let app = App::new(Arc::clone(&telemetry), None, 10_000).with_limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(serve_on(
        listener,
        router(app.clone()),
        limits,
        app.shutdown.clone(),
    ));
    Server {
        addr,
        telemetry,
        app,
        task,
    }
}

/// Reads a response head (through the blank line), or fails after `PATIENCE`.
async fn head(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(PATIENCE, async {
        while !got.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read");
            assert!(n > 0, "closed mid-head: {}", String::from_utf8_lossy(&got));
            got.push(byte[0]);
        }
    })
    .await
    .expect("a response head in time");
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads the rest of a response whose head said `Content-Length`.
async fn body(stream: &mut TcpStream, head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let mut buf = vec![0u8; len];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("the body in time")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether the server closes `stream` within `PATIENCE` (whatever it sends first is skipped).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn status(head: &str) -> &str {
    head.get(9..12).unwrap_or(head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let s = start(HttpLimits::new()).await;
    let limit = HttpLimits::new().max_body_bytes;

    // A huge Content-Length with `Expect: 100-continue`: 413 at once, never "100 Continue".
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(
        b"POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("write");
    let h = head(&mut c).await;
    assert_eq!(status(&h), "413", "{h}");

    // A Content-Length over the limit whose body never comes: 413 without waiting for it.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    let req = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n[{{\"text\"",
        limit + 1
    );
    c.write_all(req.as_bytes()).await.expect("write");
    let h = head(&mut c).await;
    assert_eq!(status(&h), "413", "{h}");

    // A chunked body (no length given) that passes the limit and never ends: 413 as soon as it
    // passes, without waiting for its end. 17 chunks of 64 KiB are just over 1 MiB, all read.
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"POST /v1/classify HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("write");
    let chunk = vec![b' '; 64 << 10];
    for _ in 0..=limit / chunk.len() {
        c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .expect("write");
        c.write_all(&chunk).await.expect("write");
        c.write_all(b"\r\n").await.expect("write");
    }
    let h = head(&mut c).await;
    assert_eq!(status(&h), "413", "{h}");

    // A body within the limit reaches the handler (which has no model yet).
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    let json = br#"{"id": 1, "text": "hello"}"#;
    let req = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        json.len()
    );
    c.write_all(req.as_bytes()).await.expect("write");
    c.write_all(json).await.expect("write");
    let h = head(&mut c).await;
    assert_eq!(status(&h), "503", "{h}");
    assert!(body(&mut c, &h).await.contains("model not loaded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_stalled_bodies_time_out_while_keep_alive_and_the_feed_go_on() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        ..HttpLimits::new()
    };
    let s = start(limits).await;

    // A head sent a byte at a time (slowloris) is cut off once the header timeout passes.
    let mut slow = TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slow head was still open after {PATIENCE:?}");

    // A body that stalls gets 408 once the request timeout passes.
    let mut stalled = TcpStream::connect(s.addr).await.expect("connect");
    stalled
        .write_all(b"POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n[{\"te")
        .await
        .expect("write");
    let h = head(&mut stalled).await;
    assert_eq!(status(&h), "408", "{h}");

    // Keep-alive: requests one after the other on one connection, pauses under the timeout.
    let mut kept = TcpStream::connect(s.addr).await.expect("connect");
    for _ in 0..3 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        let h = head(&mut kept).await;
        assert_eq!(status(&h), "200", "{h}");
        assert_eq!(body(&mut kept, &h).await, "ok\n");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The live feed is not a request that times out: an event published well after the
    // request timeout still arrives.
    let mut feed = TcpStream::connect(s.addr).await.expect("connect");
    feed.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("write");
    let h = head(&mut feed).await;
    assert_eq!(status(&h), "200", "{h}");
    tokio::time::sleep(limits.request_timeout * 2).await;
    let scores = [(0usize, 0.9f32, true)];
    let late = Item {
        id: "late-one",
        text: Some("published after the request timeout"),
        lang: "latin",
        scores: &scores,
        stance: None,
        dead: None,
        partition: 0,
        offset: 0,
    };
    s.telemetry
        .live
        .record(now(), &["offensive".to_string()], "v1", &[late]);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&got).contains("late-one") {
            let n = feed.read(&mut buf).await.expect("read");
            assert!(n > 0, "the feed closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the late event arrives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let s = start(HttpLimits {
        max_connections: 2,
        ..HttpLimits::new()
    })
    .await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(get).await.expect("write");
        let h = head(&mut c).await;
        assert_eq!(status(&h), "200", "{h}");
        body(&mut c, &h).await;
        open.push(c);
    }
    // The third is left in the kernel's backlog: its request gets no answer yet…
    let mut third = TcpStream::connect(s.addr)
        .await
        .expect("connect (kernel backlog)");
    third.write_all(get).await.expect("write");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "answered over the cap: {early:?}");
    // …until a slot frees.
    drop(open.pop());
    let h = head(&mut third).await;
    assert_eq!(status(&h), "200", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feeds_and_idle_connections_do_not_hold_shutdown_up() {
    // A deadline far beyond the test's patience: finishing in time means nothing waited for it.
    let s = start(HttpLimits {
        shutdown_timeout: Duration::from_secs(600),
        ..HttpLimits::new()
    })
    .await;
    // A dashboard that never reads, and an idle keep-alive connection.
    let mut feed = TcpStream::connect(s.addr).await.expect("connect");
    feed.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let h = head(&mut idle).await;
    body(&mut idle, &h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    s.app.shutdown.trigger();
    stops_within_patience(s.task).await;
    assert!(closed(&mut idle).await, "the idle connection was closed");
    assert!(closed(&mut feed).await, "the feed was closed");
    assert!(
        TcpStream::connect(s.addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_connection_is_dropped_at_the_shutdown_deadline() {
    let s = start(HttpLimits {
        header_read_timeout: Duration::from_secs(600),
        shutdown_timeout: Duration::from_millis(500),
        ..HttpLimits::new()
    })
    .await;
    // Half a request head: hyper will not close it gracefully, and its header timeout is far.
    let mut stuck = TcpStream::connect(s.addr).await.expect("connect");
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.app.shutdown.trigger();
    stops_within_patience(s.task).await;
    assert!(closed(&mut stuck).await, "the stuck connection was dropped");
}

/// Waits (at most `PATIENCE`) for the server task to end without an error.
async fn stops_within_patience(task: JoinHandle<std::io::Result<()>>) {
    let done = tokio::time::timeout(PATIENCE, task).await;
    assert!(
        matches!(done, Ok(Ok(Ok(())))),
        "the server stopped: {done:?}"
    );
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A client sending its request head one byte at a time.
fn slowloris(addr: &str) -> Option<std::net::TcpStream> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").ok()?;
    c.set_nonblocking(true).ok()?;
    Some(c)
}

/// Whether the server has closed a (non-blocking) slowloris connection.
fn is_closed(c: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Slowloris clients at once.
const SLOWLORIS: usize = 300;
/// Live-feed clients that never read.
const STALLED_FEEDS: usize = 200;
/// The most the server's resident memory may grow under them, over its size when idle. Their
/// buffers are bounded (hyper's at 64 KiB each way, and it stops polling a feed whose client
/// does not read), feed events are shared and at most 20 a second; measured growth here was
/// about 18 MiB over 30 MiB idle, so this bound leaves room for a noisy machine's allocator.
const RSS_GROWTH_BOUND_KIB: u64 = 64 << 10;

#[test]
fn a_slowloris_crowd_and_stalled_feeds_pin_bounded_memory_and_sigterm_exits_0() {
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("http-limits-{}.log", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_moderato"))
        .args(["serve", "--embedded-broker", "--http", &http])
        .args(["--http-header-timeout-ms", "2000"])
        .args(["--http-shutdown-timeout-ms", "3000"])
        .args(["--shutdown-timeout-ms", "5000"])
        .env("RUST_LOG", "warn")
        .env_remove("MODERATO_MODEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
        .spawn()
        .expect("moderato serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let pid = child.id();
    let mut serve = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let brokers = first
        .strip_prefix("embedded broker: ")
        .unwrap_or_else(|| panic!("the broker's address first: {first:?}"));
    // serve's default input topic, which the embedded broker created.
    let mut broker = Broker::on(brokers);
    broker.input = "comments".into();
    std::thread::spawn(move || lines.for_each(drop));
    let base = format!("http://{http}");
    wait_for(&format!("{base}/readyz"), "readiness", |b| {
        b.contains(r#""ready":true"#)
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let batch = |from: usize, n: usize| -> Vec<(String, Vec<u8>)> {
        (from..from + n)
            .map(|i| (format!("k{i}"), comment(i)))
            .collect()
    };
    rt.block_on(produce(&broker, batch(0, 200)));
    wait_for(&format!("{base}/api/state"), "200 labelled", |b| {
        b.contains(r#""labelled":200"#)
    });
    let idle = rss_kib(pid);
    assert!(idle > 0, "VmRSS of {pid} is readable");

    // 200 dashboards that never read a byte of their feed.
    let feeds: Vec<std::net::TcpStream> = (0..STALLED_FEEDS)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&http).expect("connect a feed");
            c.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
                .expect("request the feed");
            c
        })
        .collect();
    // 300 slowloris clients, a byte a second each; each one cut off is replaced.
    let attacking = Arc::new(AtomicBool::new(true));
    let cut = Arc::new(AtomicUsize::new(0));
    let crowd = {
        let (attacking, cut, http) = (Arc::clone(&attacking), Arc::clone(&cut), http.clone());
        std::thread::spawn(move || {
            let mut conns: Vec<_> = (0..SLOWLORIS).filter_map(|_| slowloris(&http)).collect();
            while attacking.load(Ordering::Relaxed) {
                for c in &mut conns {
                    if is_closed(c) || c.write_all(b"X").is_err() {
                        cut.fetch_add(1, Ordering::Relaxed);
                        if let Some(fresh) = slowloris(&http) {
                            *c = fresh;
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            conns
        })
    };
    // Comments keep flowing to the feeds meanwhile; memory is sampled throughout.
    let producing = std::thread::spawn(move || {
        for round in 0..8 {
            rt.block_on(produce(&broker, batch(1000 + round * 250, 250)));
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let attack_until = Instant::now() + Duration::from_secs(8);
    let mut peak = idle;
    let mut answered = 0;
    while Instant::now() < attack_until {
        peak = peak.max(rss_kib(pid));
        answered += usize::from(http_get(&format!("{base}/healthz")).is_some());
        std::thread::sleep(Duration::from_millis(250));
    }
    producing.join().expect("producer thread");
    peak = peak.max(rss_kib(pid));
    attacking.store(false, Ordering::Relaxed);
    let slow = crowd.join().expect("slowloris thread");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    assert!(
        cut.load(Ordering::Relaxed) >= SLOWLORIS,
        "slow heads were cut off after the 2 s header timeout ({} cuts)",
        cut.load(Ordering::Relaxed)
    );
    assert!(
        answered > 10,
        "the server kept answering others under the attack ({answered} answers)"
    );
    assert!(
        peak < idle + RSS_GROWTH_BOUND_KIB,
        "resident memory grew from {idle} KiB idle to {peak} KiB (bound: +{RSS_GROWTH_BOUND_KIB} KiB)"
    );
    eprintln!(
        "VmRSS idle {idle} KiB, peak under attack {peak} KiB (+{} KiB)",
        peak - idle
    );

    // SIGTERM with every feed and slow head still open: the Kafka side drains (at most 5 s),
    // the feeds end, and what cannot finish is dropped after the 3 s HTTP deadline.
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(25);
    let exit = loop {
        if let Some(status) = serve.0.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop((feeds, slow));
    let status =
        exit.unwrap_or_else(|| panic!("still running 25 s after SIGTERM:\n{}", log_text()));
    assert_eq!(status.code(), Some(0), "exit status; log:\n{}", log_text());
    let _ = std::fs::remove_file(&log);
}
