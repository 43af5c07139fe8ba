//! The training protocol: selection is by cross-validation on the training rows alone, so a dev
//! split can change what is printed but never what is trained; and training is reproducible to
//! the byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{arg, describe, fixture};
use moderato::model::file;
use sha2::{Digest, Sha256};

/// Trains a stance head (conditioned on `target`) on the toy fixture, with `dev` if given.
fn train(out: &Path, dev: Option<&Path>) -> String {
    let train = fixture("toy_train.csv");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moderato"));
    cmd.args(["train", "--quiet", "--data", arg(&train)]);
    if let Some(dev) = dev {
        cmd.args(["--dev", arg(dev)]);
    }
    cmd.args(["--label", "stance", "--target", "target", "--out", arg(out)])
        .env("RUST_LOG", "warn")
        // The reproducible-builds clock: the model's `created` and `version` come from it.
        .env("SOURCE_DATE_EPOCH", "1764547200");
    let output = cmd.output().expect("moderato train runs");
    assert!(
        output.status.success(),
        "train failed: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of the fixture's dev split whose stance labels are rotated by one row: every row
/// keeps its text and target, and most get another row's label.
fn shuffled_dev(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture("toy_dev.csv")).expect("fixture reads");
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    let stance = |l: &str| l.rsplit(',').next().unwrap_or_default().to_string();
    let labels: Vec<String> = lines.iter().map(|l| stance(l)).collect();
    let mut out = String::from(header);
    out.push('\n');
    for (i, l) in lines.iter().enumerate() {
        let keep = &l[..l.len() - stance(l).len()];
        out += &format!("{keep}{}\n", labels[(i + 1) % labels.len()]);
    }
    let path = dir.join("dev_shuffled.csv");
    std::fs::write(&path, out).expect("temp file writes");
    path
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("model file reads");
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn two_trainings_on_the_fixture_give_byte_identical_models() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a.model"), dir.path().join("b.model"));
    train(&a, Some(&fixture("toy_dev.csv")));
    train(&b, Some(&fixture("toy_dev.csv")));
    assert_eq!(sha256(&a), sha256(&b));
}

#[test]
fn selection_never_reads_the_dev_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shuffled = shuffled_dev(dir.path());
    let paths = ["real", "shuffled", "none"].map(|n| dir.path().join(format!("{n}.model")));
    let printed_real = train(&paths[0], Some(&fixture("toy_dev.csv")));
    let printed_shuffled = train(&paths[1], Some(&shuffled));
    train(&paths[2], None);
    let [real, shuffled, none] = paths.map(|p| file::load(&p).expect("model loads"));
    // The dev split was read and scored: the printed and stored dev numbers differ...
    assert_ne!(printed_real, printed_shuffled);
    assert_ne!(real.info.dev_metrics, shuffled.info.dev_metrics);
    // ...and nothing that was chosen or learnt moved: C, the grid's cross-validated scores,
    // offsets, temperature, biases and every weight.
    for other in [&shuffled, &none] {
        assert_eq!(real.info.training, other.info.training);
        assert_eq!(real.heads(), other.heads());
        assert_eq!(real.table(), other.table());
    }
    let record = &real.info.training["stance"];
    assert_eq!(record["folds"], 5, "{record}");
    assert!(record["cv"].as_f64().is_some(), "{record}");
}
