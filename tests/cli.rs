//! End-to-end tests of the `moderato` binary: train on the hand-written fixture, classify JSON
//! lines, evaluate with a report, and the error messages of the common mistakes.

mod common;

use std::path::{Path, PathBuf};

use common::{arg, assert_success, describe, fixture, moderato};
use serde_json::Value;

/// Trains a one-head model on the toy fixture into `dir` and returns its path.
fn train_toy_model(dir: &Path, label: &str, target: Option<&str>) -> PathBuf {
    let out = dir.join(format!("{label}.model"));
    let (train, dev) = (fixture("toy_train.csv"), fixture("toy_dev.csv"));
    let mut args = vec![
        "train",
        "--quiet",
        "--data",
        arg(&train),
        "--dev",
        arg(&dev),
        "--label",
        label,
    ];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    args.extend(["--out", arg(&out)]);
    let output = moderato(&args, "");
    assert_success(&output, "train");
    assert!(
        out.is_file(),
        "train exited 0 but wrote no {}",
        out.display()
    );
    out
}

/// Runs `classify --model MODEL EXTRA…` on `input` and returns (output lines as JSON, stderr).
fn classify(model: &Path, extra: &[&str], input: &str) -> (Vec<Value>, String) {
    let mut args = vec!["classify", "--model", arg(model)];
    args.extend_from_slice(extra);
    let output = moderato(&args, input);
    assert_success(&output, "classify");
    let stdout = String::from_utf8(output.stdout.clone()).expect("classify writes UTF-8");
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("output line is not JSON ({e}): {l}"))
        })
        .collect();
    (lines, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

const GOOD_AND_BAD_LINES: &str = concat!(
    r#"{"id": "g1", "text": "You stupid idiot, nobody asked you"}"#,
    "\n",
    "this line is not JSON at all\n",
    r#"{"id": "g2", "text": "What a lovely morning, thanks for the article"}"#,
    "\n",
    r#"{"id": 42, "comment": "an object without a text field"}"#,
    "\n",
    r#"{"id": 7, "text": "يا غبي يا حمار"}"#,
    "\n",
    r#"{"text": "a comment without an id"}"#,
    "\n",
);

#[test]
fn train_on_fixture_exits_zero_and_writes_a_model_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "label", None);
    let bytes = std::fs::read(&model).expect("model file is readable");
    assert!(
        bytes.starts_with(b"MODERATO"),
        "model file starts with the magic bytes"
    );
}

#[test]
fn classify_answers_every_line_in_order_and_reports_bad_lines_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "label", None);
    let (out, stderr) = classify(&model, &[], GOOD_AND_BAD_LINES);
    assert_eq!(out.len(), 6, "one output line per input line: {out:#?}");

    assert_eq!(out[0]["id"], "g1");
    assert_eq!(keys(&out[1]), ["error", "line"], "bad line 2: {}", out[1]);
    assert_eq!(out[1]["line"], 2);
    assert!(
        out[1]["error"].as_str().is_some_and(|e| e.contains("JSON")),
        "{}",
        out[1]
    );
    assert_eq!(out[2]["id"], "g2");
    assert_eq!(keys(&out[3]), ["error", "line"], "bad line 4: {}", out[3]);
    assert_eq!(out[3]["line"], 4);
    assert!(
        out[3]["error"].as_str().is_some_and(|e| e.contains("text")),
        "{}",
        out[3]
    );
    assert_eq!(out[4]["id"], 7, "numeric ids stay numbers");
    assert_eq!(out[5]["id"], Value::Null, "a missing id comes back as null");

    assert!(
        stderr.contains("2 bad input line"),
        "stderr counts the bad lines: {stderr}"
    );

    // The easy fixture makes the toy model right on obvious comments in both languages.
    let label_of = |v: &Value| v["heads"]["label"]["label"].as_str().map(str::to_owned);
    assert_eq!(label_of(&out[0]).as_deref(), Some("toxic"), "{}", out[0]);
    assert_eq!(label_of(&out[2]).as_deref(), Some("clean"), "{}", out[2]);
    assert_eq!(label_of(&out[4]).as_deref(), Some("toxic"), "{}", out[4]);
}

#[test]
fn classify_output_has_the_documented_json_shape() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "label", None);
    let (out, _) = classify(
        &model,
        &[],
        r#"{"id": "s1", "text": "I love cats, great article"}"#,
    );
    assert_eq!(out.len(), 1);
    let rec = &out[0];
    assert_eq!(
        keys(rec),
        [
            "heads",
            "id",
            "labels",
            "lang",
            "model",
            "schema_version",
            "script"
        ],
        "{rec}"
    );
    assert_eq!(rec["schema_version"], 2, "{rec}");
    assert_eq!(rec["script"], "latin", "{rec}");
    assert_eq!(
        rec["lang"],
        serde_json::Value::Null,
        "five words: too few to tell"
    );
    assert_eq!(rec["id"], "s1");
    assert!(rec["labels"].is_array(), "{rec}");

    assert_eq!(
        keys(&rec["heads"]),
        ["label"],
        "one head named after the label column: {rec}"
    );
    let head = &rec["heads"]["label"];
    assert_eq!(keys(head), ["label", "scores"], "{head}");
    let chosen = head["label"].as_str().expect("head label is a string");
    assert!(["clean", "toxic"].contains(&chosen), "{head}");
    assert_eq!(keys(&head["scores"]), ["clean", "toxic"], "{head}");
    let total: f64 = head["scores"]
        .as_object()
        .expect("scores is an object")
        .values()
        .map(|v| v.as_f64().expect("scores are numbers"))
        .sum();
    assert!(
        (total - 1.0).abs() < 1e-3,
        "class probabilities sum to 1: {head}"
    );

    let m = &rec["model"];
    assert_eq!(keys(m), ["name", "sha256", "version"], "{m}");
    assert!(m["name"].as_str().is_some_and(|s| !s.is_empty()), "{m}");
    assert!(m["version"].as_str().is_some_and(|s| !s.is_empty()), "{m}");
    let sha = m["sha256"].as_str().expect("model.sha256 is a string");
    assert!(
        sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "model.sha256 is a lowercase hex SHA-256: {m}"
    );
}

#[test]
fn classify_explain_adds_the_top_ngrams_of_each_head() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "label", None);
    let (out, _) = classify(
        &model,
        &["--explain", "3"],
        r#"{"id": 1, "text": "You stupid moron"}"#,
    );
    let explain = &out[0]["explain"];
    assert_eq!(keys(explain), ["label"], "{}", out[0]);
    let terms = explain["label"]
        .as_array()
        .expect("explain.label is a list");
    assert_eq!(terms.len(), 3, "--explain 3 gives three terms: {explain}");
    for t in terms {
        assert_eq!(keys(t), ["contribution", "ngrams"], "{t}");
        assert!(t["contribution"].is_number(), "{t}");
        let ngrams = t["ngrams"].as_array().expect("ngrams is a list");
        assert!(
            !ngrams.is_empty() && ngrams.iter().all(Value::is_string),
            "{t}"
        );
    }

    let (plain, _) = classify(&model, &[], r#"{"id": 1, "text": "You stupid moron"}"#);
    assert!(
        plain[0].get("explain").is_none(),
        "no explain without --explain: {}",
        plain[0]
    );
}

#[test]
fn eval_writes_metrics_and_svg_plots_with_high_macro_f1_on_the_easy_fixture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "label", None);
    let report = dir.path().join("report");
    let dev = fixture("toy_dev.csv");
    let output = moderato(
        &[
            "eval",
            "--model",
            arg(&model),
            "--data",
            arg(&dev),
            "--label",
            "label",
            "--report",
            arg(&report),
        ],
        "",
    );
    assert_success(&output, "eval");

    let metrics: Value = serde_json::from_slice(
        &std::fs::read(report.join("metrics.json")).expect("metrics.json written"),
    )
    .expect("metrics.json is JSON");
    let macro_f1 = metrics["macro_f1"]
        .as_f64()
        .expect("metrics.json has macro_f1");
    assert!(
        macro_f1 > 0.7,
        "macro-F1 {macro_f1} on the easy fixture: {metrics:#}"
    );
    assert_eq!(metrics["n"], 30, "every dev row is scored: {metrics:#}");
    for svg in ["roc.svg", "pr.svg"] {
        let text = std::fs::read_to_string(report.join(svg))
            .unwrap_or_else(|e| panic!("{svg} not written: {e}"));
        assert!(
            text.starts_with("<svg"),
            "{svg} starts with <svg: {}",
            &text[..text.len().min(80)]
        );
    }
}

#[test]
fn stance_head_reports_the_target_it_was_conditioned_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "stance", Some("target"));
    let input = concat!(
        r#"{"id": "c", "text": "I love cats, they are great", "target": "Cats"}"#,
        "\n",
        r#"{"id": "q", "text": "أكره القهوة، طعمها سيء", "target": "القهوة"}"#,
        "\n",
    );
    let (out, _) = classify(&model, &[], input);
    assert_eq!(out.len(), 2);
    let cats = &out[0]["heads"]["stance"];
    assert_eq!(keys(cats), ["label", "scores", "target"], "{}", out[0]);
    assert_eq!(cats["target"], "Cats");
    assert_eq!(cats["label"], "FAVOR", "{}", out[0]);
    assert_eq!(keys(&cats["scores"]), ["AGAINST", "FAVOR", "NONE"]);
    let coffee = &out[1]["heads"]["stance"];
    assert_eq!(coffee["target"], "القهوة", "{}", out[1]);
    assert_eq!(coffee["label"], "AGAINST", "{}", out[1]);
    assert!(
        out[0].get("skipped").is_none(),
        "nothing skipped: {}",
        out[0]
    );
}

#[test]
fn stance_head_is_skipped_with_a_reason_when_the_target_is_missing_or_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = train_toy_model(dir.path(), "stance", Some("target"));
    let input = concat!(
        r#"{"id": "none", "text": "I love cats, they are great"}"#,
        "\n",
        r#"{"id": "dogs", "text": "I love dogs, they are great", "target": "Dogs"}"#,
        "\n",
    );
    let (out, _) = classify(&model, &[], input);
    assert_eq!(out.len(), 2);
    for rec in &out {
        assert!(
            rec["heads"].get("stance").is_none(),
            "stance absent from heads: {rec}"
        );
        assert!(
            rec["skipped"]["stance"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{rec}"
        );
    }
    let no_target = out[0]["skipped"]["stance"].as_str().unwrap_or_default();
    assert!(no_target.contains("no target"), "{no_target}");
    let unknown = out[1]["skipped"]["stance"].as_str().unwrap_or_default();
    assert!(
        unknown.contains("Dogs"),
        "the reason names the unknown target: {unknown}"
    );
    assert!(
        unknown.contains("Cats"),
        "the reason lists the known targets: {unknown}"
    );
}

#[test]
fn classify_with_a_missing_model_fails_naming_the_file() {
    let output = moderato(&["classify", "--model", "/nonexistent/toy.model"], "");
    assert!(!output.status.success(), "must fail: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/toy.model"),
        "stderr names the file: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {}",
        describe(&output)
    );
}

#[test]
fn train_with_a_missing_label_column_fails_listing_the_available_columns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("never.model");
    let train = fixture("toy_train.csv");
    let output = moderato(
        &[
            "train",
            "--quiet",
            "--data",
            arg(&train),
            "--label",
            "toxicity",
            "--out",
            arg(&out),
        ],
        "",
    );
    assert!(!output.status.success(), "must fail: {}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("toxicity"),
        "stderr names the missing column: {stderr}"
    );
    assert!(
        stderr.contains("id, text, label, target, stance"),
        "stderr lists the columns the file has: {stderr}"
    );
    assert!(!out.exists(), "no model is written on failure");
}

/// The `hate` score of every output line of a `classify` run with the default model.
fn hate_scores(args: &[&str], stdin: &str) -> Vec<f64> {
    let output = moderato(args, stdin);
    assert_success(&output, "classify with the default model");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON output line");
            v["heads"]["hate"]["score"].as_f64().expect("hate score")
        })
        .collect()
}

#[test]
fn classify_domain_flag_applies_to_comments_without_their_own_domain() {
    let text = "They are all traitors and should be thrown out of the country";
    let plain = serde_json::json!({"id": 1, "text": text}).to_string();
    let own = serde_json::json!({"id": 2, "text": text, "domain": "davidson2017"}).to_string();
    let input = format!("{plain}\n{own}\n");
    let without = hate_scores(&["classify"], &input);
    let with = hate_scores(&["classify", "--domain", "mpold"], &input);
    assert_ne!(
        without[0], with[0],
        "--domain changes the score of a comment without one"
    );
    assert_eq!(
        without[1], with[1],
        "a comment's own domain wins over --domain"
    );
}

#[test]
fn the_example_serve_config_parses_and_resolves() {
    use moderato::stream::ServeSettings;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/moderato.example.toml");
    let cfg = ServeSettings::from_file(&path)
        .expect("deploy/moderato.example.toml parses")
        .resolve()
        .expect("and every value is accepted");
    assert_eq!(cfg.output_topic, "comment-labels");
    assert_eq!(cfg.client_properties("consumer").len(), 2);
}

#[test]
fn serve_refuses_a_bad_config_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "brokers = \"localhost:9092\"\nbatch_size = 0\n").expect("write");
    let out = moderato(&["serve", "--config", &path.to_string_lossy()], "");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`batch_size`"), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_model_file_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.model");
    std::fs::write(&path, b"not a model at all").expect("write");
    let out = moderato(
        &[
            "serve",
            "--brokers",
            "127.0.0.1:1",
            "--http",
            "off",
            "--model",
            &path.to_string_lossy(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a moderato model file"), "{stderr}");
}

#[test]
fn exit_status_is_0_on_success_1_on_runtime_errors_2_on_usage_errors() {
    let ok = moderato(&["classify"], "{\"id\": 1, \"text\": \"hello\"}\n");
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));
    let runtime = moderato(&["classify", "--model", "/nonexistent/m.model"], "");
    assert_eq!(runtime.status.code(), Some(1), "{}", describe(&runtime));
    let unreadable = moderato(&["classify", "--input", "/nonexistent/in.jsonl"], "");
    assert_eq!(
        unreadable.status.code(),
        Some(1),
        "{}",
        describe(&unreadable)
    );
    let usage = moderato(&["classify", "--no-such-flag"], "");
    assert_eq!(usage.status.code(), Some(2), "{}", describe(&usage));
    let bad_value = moderato(&["classify", "--max-text-chars", "0"], "");
    assert_eq!(bad_value.status.code(), Some(2), "{}", describe(&bad_value));
    let help = moderato(&["--help"], "");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Exit status:")
            && text.contains("1  runtime error")
            && text.contains("2  usage error"),
        "--help documents the exit status:\n{text}"
    );
}

#[test]
fn classify_into_a_reader_that_closes_early_exits_0_quietly() {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_moderato"))
        .arg("classify")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("classify starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let line = "{\"id\": 1, \"text\": \"you are a stupid idiot\"}\n".repeat(1000);
        // Far more output than a pipe holds; the writes fail once classify has gone.
        for _ in 0..50 {
            if stdin.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    let mut first = String::new();
    {
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut first).expect("a first line");
        // `| head -1`: the reader goes away here.
    }
    let output = child.wait_with_output().expect("classify ends");
    let _ = writer.join();
    assert!(first.contains("\"id\":1"), "{first}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("Broken pipe") && !stderr.contains("error"),
        "{stderr}"
    );
}

#[test]
fn classify_keeps_ids_exactly_as_written() {
    let input = concat!(
        "{\"id\": 123456789012345678901234567890, \"text\": \"hello there\"}\n",
        "{\"id\": 1E2, \"text\": \"hello there\"}\n",
        "{\"id\": -0.50, \"text\": \"hello there\"}\n",
        "{\"id\": 18446744073709551615, \"text\": \"hello there\"}\n",
        "{\"id\": \"s-1\", \"text\": \"hello there\"}\n",
    );
    let out = moderato(&["classify"], input);
    assert_success(&out, "classify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    for (line, id) in lines.iter().zip([
        "123456789012345678901234567890",
        "1E2",
        "-0.50",
        "18446744073709551615",
        "\"s-1\"",
    ]) {
        assert!(line.contains(&format!("\"id\":{id},")), "{id}: {line}");
    }
}

/// The stream's answer to one payload, with the default settings and model: the labelled
/// record as JSON, or the dead letter's reason code.
fn stream_answer(payload: &[u8]) -> Result<Value, String> {
    use moderato::stream::record::{process, Inbound, Source};
    let model = moderato::model::file::load(&common::default_model_path()).expect("model");
    let model_ref = moderato::classify::ModelRef::of(&model);
    let cfg = moderato::stream::ServeConfig::with_brokers("localhost:1").expect("defaults");
    let msg = Inbound {
        source: Source {
            topic: "comments".into(),
            partition: 0,
            offset: 0,
            timestamp: None,
        },
        key: None,
        payload: Some(payload.to_vec()),
        headers: Vec::new(),
        bad_header: None,
        whole: None,
    };
    let out = process(&msg, &cfg, &model, &model_ref, &mut Default::default());
    match out.reason {
        Some(code) => Err(code.to_string()),
        None => Ok(serde_json::from_slice(&out.payload).expect("a JSON record")),
    }
}

#[test]
fn classify_and_the_stream_agree_on_long_comments_and_long_lines() {
    let long_text = format!(
        "{}you are a stupid idiot",
        "a perfectly calm sentence. ".repeat(600)
    );
    let long = serde_json::json!({"id": "long", "text": long_text}).to_string();
    // Over the stream's 1,000,000-byte payload limit, though tiny once normalized.
    let huge = serde_json::json!({"id": "huge", "text": "x".repeat(1_200_000)}).to_string();
    let out = moderato(&["classify"], &format!("{long}\n{huge}\n"));
    assert_success(&out, "classify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let mut streamed = stream_answer(long.as_bytes()).expect("the stream labels it");
    streamed.as_object_mut().map(|o| o.remove("source"));
    assert_eq!(lines[0], streamed, "the same record for a long comment");
    assert_eq!(lines[0]["truncated"], true);
    assert_eq!(stream_answer(huge.as_bytes()), Err("too_large".into()));
    assert_eq!(lines[1]["line"], 2, "{}", lines[1]);
    let error = lines[1]["error"].as_str().unwrap_or_default();
    assert!(error.contains("over the limit of 1000000"), "{error}");
    // The limit is `--max-payload-bytes`, as the stream's setting is called.
    let small = moderato(
        &["classify", "--max-payload-bytes", "100"],
        &format!("{long}\n"),
    );
    assert_success(&small, "classify --max-payload-bytes");
    assert!(String::from_utf8_lossy(&small.stdout).contains("over the limit of 100"));
}
