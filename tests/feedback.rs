//! The learning half of the feedback loop: `train --feedback` trains on moderators' decisions,
//! and a decision changes how the model scores what it judged.

mod common;

use common::{describe, fixture, moderato};
use serde_json::Value;

/// `tests/fixtures/toy.toml` with its data paths made absolute, written next to `out`.
fn config(out: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture("toy.toml")).expect("toy.toml");
    let absolute = |name: &str| fixture(name).to_string_lossy().replace('\\', "/");
    let text = text
        .replace(
            "\"toy_train.csv\"",
            &format!("{:?}", absolute("toy_train.csv")),
        )
        .replace("\"toy_dev.csv\"", &format!("{:?}", absolute("toy_dev.csv")));
    let path = out.with_extension("toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

fn train(out: &std::path::Path, feedback: Option<&std::path::Path>) -> String {
    let config = config(out);
    let mut args = vec![
        "train".to_string(),
        "--quiet".into(),
        "--config".into(),
        config.to_string_lossy().into_owned(),
        "--out".into(),
        out.to_string_lossy().into_owned(),
    ];
    if let Some(f) = feedback {
        args.extend(["--feedback".into(), f.to_string_lossy().into_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = moderato(&args, "");
    assert!(run.status.success(), "{}", describe(&run));
    String::from_utf8_lossy(&run.stderr).into_owned()
}

fn score(model: &std::path::Path, text: &str) -> f64 {
    let line = serde_json::json!({"id": 1, "text": text}).to_string();
    let run = moderato(&["classify", "--model", &model.to_string_lossy()], &line);
    let v: Value = serde_json::from_slice(run.stdout.trim_ascii()).expect("classify JSON");
    v["heads"]["offensive"]["score"].as_f64().expect("a score")
}

#[test]
fn decisions_teach_the_model_what_moderators_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let before = dir.path().join("before.model");
    let after = dir.path().join("after.model");
    train(&before, None);
    let log = train(&after, Some(&fixture("toy_feedback.jsonl")));
    // 6 lines: one without text, one with an unknown head; f5's later "yes" wins over its "no".
    assert!(
        log.contains("6 decisions → 3 comments (1 without text, 1 invalid, skipped)"),
        "{log}"
    );
    let phrase = "what a wizard barista";
    let (b, a) = (score(&before, phrase), score(&after, phrase));
    assert!(
        b < 0.5 && a > b + 0.2,
        "feedback moved the score from {b:.3} to {a:.3}"
    );
}

#[test]
fn a_feedback_file_without_usable_decisions_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("fb.jsonl");
    std::fs::write(&empty, "{\"id\":\"x\",\"text\":null,\"head\":\"offensive\",\"label\":true,\"joined\":\"missing\",\"at\":1.0}\n")
        .expect("write");
    let out = dir.path().join("m.model");
    let run = moderato(
        &[
            "train",
            "--quiet",
            "--config",
            &config(&out).to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
            "--feedback",
            &empty.to_string_lossy(),
        ],
        "",
    );
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("no usable decision"),
        "{}",
        describe(&run)
    );
}

/// Labels JSON lines of `texts` with `classify` (optionally for `domain`) and returns the records.
fn classify_all(model: &std::path::Path, texts: &[String], domain: Option<&str>) -> Vec<Value> {
    let input: String = texts
        .iter()
        .map(|t| serde_json::json!({"text": t}).to_string() + "\n")
        .collect();
    let mut args = vec!["classify", "--model", model.to_str().expect("UTF-8 path")];
    if let Some(d) = domain {
        args.extend(["--domain", d]);
    }
    let run = moderato(&args, &input);
    assert!(run.status.success(), "{}", describe(&run));
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect()
}

#[test]
fn calibrate_moves_one_sites_threshold_and_leaves_the_rest_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("toy.model");
    train(&model, None);
    let texts: Vec<String> = ["toy_train.csv", "toy_dev.csv"]
        .iter()
        .flat_map(|f| {
            let mut r = csv_texts(&fixture(f));
            r.truncate(200);
            r
        })
        .collect();
    let flagged = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r["heads"]["offensive"]["flag"] == true)
            .count()
    };
    let before = classify_all(&model, &texts, None);
    // A lenient site: its moderators remove only the worst tenth of what the model scores.
    let mut scores: Vec<f64> = before
        .iter()
        .map(|r| r["heads"]["offensive"]["score"].as_f64().expect("a score"))
        .collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let cut = scores[texts.len() / 10];
    let decisions: String = texts
        .iter()
        .zip(&before)
        .map(|(t, r)| {
            let score = r["heads"]["offensive"]["score"].as_f64().unwrap_or(0.0);
            // The shape the README documents for a file written by hand (no `joined`, no `at`).
            serde_json::json!({"id": "x", "text": t, "head": "offensive", "label": score > cut,
                               "domain": "lenient.example"})
            .to_string()
                + "\n"
        })
        .collect();
    let feedback = dir.path().join("decisions.jsonl");
    std::fs::write(&feedback, decisions).expect("written");
    let calibrated = dir.path().join("lenient.model");
    let run = moderato(
        &[
            "calibrate",
            "--model",
            model.to_str().expect("UTF-8"),
            "--feedback",
            feedback.to_str().expect("UTF-8"),
            "--domain",
            "lenient.example",
            "--out",
            calibrated.to_str().expect("UTF-8"),
        ],
        "",
    );
    assert!(run.status.success(), "{}", describe(&run));
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(report.contains("1 head(s) calibrated"), "{report}");

    let site = classify_all(&calibrated, &texts, Some("lenient.example"));
    let (was, now) = (flagged(&before), flagged(&site));
    assert!(
        now < was,
        "the lenient site flags {now}, the model flagged {was}\n{report}"
    );
    assert!(
        now <= texts.len() / 10 + 5,
        "{now} of {} flagged\n{report}",
        texts.len()
    );
    // Without the domain, or with another, the calibrated model labels as before.
    for domain in [None, Some("other.example")] {
        let again = classify_all(&calibrated, &texts, domain);
        let heads = |rs: &[Value]| rs.iter().map(|r| r["heads"].clone()).collect::<Vec<_>>();
        assert_eq!(heads(&again), heads(&classify_all(&model, &texts, domain)));
    }
}

/// The `text` column of a fixture CSV.
fn csv_texts(path: &std::path::Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).expect("a CSV fixture");
    r.records()
        .filter_map(Result::ok)
        .filter_map(|rec| rec.get(1).map(String::from))
        .collect()
}
