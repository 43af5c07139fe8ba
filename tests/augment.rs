//! A data set marked `augment = true` (rows written to correct a known bias, such as
//! `training/identity/`) moves the shared features, and nothing else: it gets no domain copy
//! and no calibration of its own. Trained on the toy config twice, with and without it.

use std::path::Path;
use std::process::Command;

use moderato::classify::{label, Comment, HeadResult, ModelRef};
use moderato::model::{file, Model, Scratch};

fn train(out: &Path, skip_augment: bool) -> Model {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moderato"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["train", "--config", "tests/fixtures/augment.toml", "--out"])
        .arg(out);
    if skip_augment {
        cmd.args(["--skip-dataset", "toyaugment"]);
    }
    let run = cmd.output().expect("moderato runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    file::load(out).expect("the trained model loads")
}

fn offensive(model: &Model, text: &str) -> f32 {
    let comment = Comment::parse(
        serde_json::json!({"id": 1, "text": text})
            .to_string()
            .as_bytes(),
    )
    .expect("comment parses");
    let out = label(
        model,
        &ModelRef::of(model),
        &comment,
        &mut Scratch::default(),
        0,
    );
    match out.heads.get("offensive") {
        Some(HeadResult::Binary { score, .. }) => *score,
        other => panic!("offensive scored: {other:?}"),
    }
}

#[test]
fn an_augment_set_moves_the_shared_features_and_gets_no_domain_or_calibration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let with = train(&dir.path().join("with.model"), false);
    let without = train(&dir.path().join("without.model"), true);

    let head = with
        .heads()
        .iter()
        .find(|h| h.name == "offensive")
        .expect("offensive head");
    assert_eq!(head.domains, ["toy"], "no domain copy for the augment set");
    assert!(
        head.calibrations.iter().all(|c| c.name != "toyaugment"),
        "no calibration of its own: {:?}",
        head.calibrations
    );

    // Scored with no domain (a new site), the benign use of the word drops.
    let benign = "Our neighbour Mr Moron fixed the garden fence";
    let (w, wo) = (offensive(&with, benign), offensive(&without, benign));
    assert!(
        w < wo,
        "benign surname: {w} with the augment set, {wo} without"
    );
    // Abuse stays abuse.
    let abusive = offensive(&with, "You moron, shut up");
    assert!(abusive > w, "abuse {abusive} above the benign sentence {w}");
}
