//! The identity-term bias report (`benches/identity/identity.py`) runs on the shipped model and
//! reports, per head and language, an AUC, a false-positive rate for every identity term and the
//! worst term. (Its figures are a benchmark for the model card, not asserted here.)

mod common;

use std::process::Command;

#[test]
fn the_identity_term_report_names_every_terms_false_positive_rate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("identity.json");
    let out = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "benches/identity/identity.py",
            "--exe",
            env!("CARGO_BIN_EXE_moderato"),
        ])
        .arg("--model")
        .arg(common::default_model_path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the report")).expect("JSON");
    assert!(report["sentences"].as_u64().unwrap_or(0) > 500);
    for head in ["offensive", "hate"] {
        for lang in ["en", "ar"] {
            let r = &report["heads"][head][lang];
            let auc = r["auc"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&auc), "{head}/{lang}: {r}");
            let fpr = r["per_term_fpr"].as_object().expect("per-term rates");
            assert!(fpr.len() > 20, "{head}/{lang}: {} terms", fpr.len());
            assert!(fpr
                .values()
                .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap_or(-1.0))));
            let worst = r["worst_term"]["fpr"].as_f64().unwrap_or(-1.0);
            let max = fpr.values().filter_map(|v| v.as_f64()).fold(0.0, f64::max);
            assert_eq!(worst, max, "{head}/{lang}");
        }
    }
}

/// The mitigation data (`training/identity/`) is what its generator writes, and shares no
/// template and no sentence with the evaluation: the report measures sentences never trained on.
#[test]
fn the_identity_training_sentences_are_not_the_evaluations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fresh = dir.path().join("train.csv");
    let gen = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("training/identity/generate.py")
        .arg(&fresh)
        .output()
        .expect("python3 runs");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let committed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("training/identity/train.csv"),
    )
    .expect("the committed CSV");
    assert!(
        std::fs::read(&fresh).expect("the fresh CSV") == committed,
        "training/identity/train.csv is stale: rerun training/identity/generate.py"
    );
    let check = r#"
import csv, sys
sys.path[:0] = ["benches/identity", "training/identity"]
import identity, generate
evals = {r["text"].lower() for r in identity.sentences()}
trains = {r["text"].lower() for r in generate.rows()}
shared = evals & trains
assert not shared, f"{len(shared)} sentences in both: {sorted(shared)[:3]}"
eval_t = set(identity.EN_BENIGN + identity.EN_ABUSIVE + identity.AR_BENIGN + identity.AR_ABUSIVE)
train_t = set(generate.EN_BENIGN + generate.EN_INSULT + generate.EN_GROUP
              + generate.AR_BENIGN + generate.AR_INSULT + generate.AR_GROUP)
assert not eval_t & train_t, eval_t & train_t
assert not set(identity.EN_NAMES) & set(generate.EN_NAMES)
assert not set(identity.AR_NAMES) & set(generate.AR_NAMES)
print(len(evals), len(trains))
"#;
    let out = Command::new("python3")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-c", check])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
