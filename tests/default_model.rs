//! The shipped default model on the two public Algeria Times reader comments (the traffic
//! moderato exists for) and on a few obvious English cases.

mod common;

use std::sync::OnceLock;

use common::{default_model_path, fixture};
use moderato::classify::{label, Comment, HeadResult, Labelled, ModelRef};
use moderato::model::{file, Model, Scratch};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = default_model_path();
        file::load(&path).unwrap_or_else(|e| panic!("the shipped default model loads: {e}"))
    })
}

/// Classifies one comment with the default model.
fn classify(comment: &Comment) -> Labelled {
    let model = model();
    label(
        model,
        &ModelRef::of(model),
        comment,
        &mut Scratch::default(),
        0,
    )
}

/// A comment from its JSON form.
fn comment(json: &str) -> Comment {
    Comment::parse(json.as_bytes()).unwrap_or_else(|e| panic!("test comment parses ({e}): {json}"))
}

/// The Algeria Times comment with this id, from the fixture.
fn algeria_times(id: &str) -> Comment {
    let text = std::fs::read_to_string(fixture("algeria_times_comments.jsonl"))
        .expect("fixture is readable");
    text.lines()
        .map(comment)
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("fixture has comment {id}"))
}

/// `(flag, score)` of a binary head.
fn binary(out: &Labelled, head: &str) -> (bool, f32) {
    match out.heads.get(head) {
        Some(HeadResult::Binary { flag, score }) => (*flag, *score),
        other => panic!("head `{head}` is binary in the default model, got {other:?}"),
    }
}

/// Every binary head's score with its threshold, for assertion messages.
fn scores(out: &Labelled) -> String {
    model()
        .heads()
        .iter()
        .filter_map(|h| match out.heads.get(&h.name) {
            Some(HeadResult::Binary { flag, score }) => Some(format!(
                "{}: score {score:.4} threshold {:.4} flag {flag}",
                h.name, h.threshold
            )),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn algeria_times_c2_is_flagged_offensive_and_hate() {
    let out = classify(&algeria_times("algeriatimes-isis-alqaeda-c2"));
    let (offensive, _) = binary(&out, "offensive");
    let (hate, _) = binary(&out, "hate");
    assert!(
        offensive && hate,
        "c2 (sectarian slurs, call for annihilation) must be flagged offensive and hate; {} (model {} {})",
        scores(&out),
        out.model.version,
        out.model.sha256
    );
    assert!(out.labels.iter().any(|l| l == "offensive") && out.labels.iter().any(|l| l == "hate"));
}

#[test]
fn algeria_times_c1_is_not_flagged_hate() {
    let out = classify(&algeria_times("algeriatimes-isis-alqaeda-c1"));
    let (hate, _) = binary(&out, "hate");
    assert!(
        !hate,
        "c1 (critical political commentary) must not be flagged hate; {} (model {} {})",
        scores(&out),
        out.model.version,
        out.model.sha256
    );
}

/// Known failure of the current default model, kept runnable with `cargo test -- --ignored`:
/// c1 calls someone "the apostate agent" (العميل المرتد), and models trained on each Arabic set
/// alone (osact4, lhsab, mubarak2017 Al Jazeera and Twitter) all label it offensive; only the
/// mpold news-comment set does not. See the model card in README.md.
#[test]
#[ignore = "known limit of the default model: c1 scores offensive (see README, model card)"]
fn algeria_times_c1_is_not_flagged_offensive() {
    let out = classify(&algeria_times("algeriatimes-isis-alqaeda-c1"));
    let (offensive, _) = binary(&out, "offensive");
    assert!(
        !offensive,
        "c1 (critical political commentary) must not be flagged offensive; {} (model {} {})",
        scores(&out),
        out.model.version,
        out.model.sha256
    );
}

#[test]
fn obvious_english_insults_are_flagged_offensive() {
    for text in [
        "You are a stupid idiot and everyone knows it",
        "Shut up, you pathetic moron",
    ] {
        let out = classify(&comment(
            &serde_json::json!({ "id": 1, "text": text }).to_string(),
        ));
        let (offensive, _) = binary(&out, "offensive");
        assert!(
            offensive,
            "{text:?} must be flagged offensive; {}",
            scores(&out)
        );
    }
}

#[test]
fn friendly_english_sentences_are_not_flagged() {
    for text in [
        "Thank you for this thoughtful article, I learned a lot.",
        "Have a wonderful weekend with your family!",
    ] {
        let out = classify(&comment(
            &serde_json::json!({ "id": 2, "text": text }).to_string(),
        ));
        assert!(
            out.labels.is_empty(),
            "{text:?} must not be flagged; {}",
            scores(&out)
        );
    }
}

#[test]
fn stance_head_labels_a_comment_about_hillary_clinton() {
    let out = classify(&comment(
        r#"{"id": 3, "text": "Hillary has my vote, she is the most qualified candidate", "target": "Hillary Clinton"}"#,
    ));
    match out.heads.get("stance") {
        Some(HeadResult::Multiclass {
            label,
            scores,
            target,
        }) => {
            assert!(
                ["FAVOR", "AGAINST", "NONE"].contains(&label.as_str()),
                "{label}"
            );
            assert_eq!(target.as_deref(), Some("Hillary Clinton"));
            let total: f32 = scores.values().sum();
            assert!(
                (total - 1.0).abs() < 1e-3,
                "stance probabilities sum to 1: {scores:?}"
            );
        }
        other => panic!(
            "stance head answers for target Hillary Clinton, got {other:?} (skipped: {:?})",
            out.skipped
        ),
    }
    // Only `obscene`, which never saw English text, is left out.
    assert_eq!(
        out.skipped.keys().collect::<Vec<_>>(),
        ["obscene"],
        "{:?}",
        out.skipped
    );
}

#[test]
fn a_head_never_trained_on_a_script_gives_no_score_and_says_why() {
    // `obscene` was trained on Arabic only, `insult` on English only.
    let english = classify(&comment(r#"{"id": 1, "text": "You are a pathetic idiot"}"#));
    assert!(
        !english.heads.contains_key("obscene"),
        "{:?}",
        english.heads
    );
    let why = english
        .skipped
        .get("obscene")
        .map(String::as_str)
        .unwrap_or_default();
    assert!(why.contains("not trained on Latin-script text"), "{why}");
    assert!(english.heads.contains_key("insult"));

    let arabic = classify(&comment(r#"{"id": 2, "text": "يا حمار يا ابن الكلب"}"#));
    assert!(
        arabic.skipped.contains_key("insult"),
        "{:?}",
        arabic.skipped
    );
    assert!(arabic.heads.contains_key("obscene"));

    // Text without letters is scored by every head.
    let emoji = classify(&comment(r#"{"id": 3, "text": "🖕🖕🖕 !!!"}"#));
    assert_eq!(
        emoji.skipped.keys().collect::<Vec<_>>(),
        ["stance"],
        "only the stance head, for want of a target: {:?}",
        emoji.skipped
    );
    // Another script: no toxicity head has seen it.
    let greek = classify(&comment(r#"{"id": 4, "text": "Είσαι ένας ηλίθιος"}"#));
    assert!(
        greek.skipped.contains_key("offensive"),
        "{:?}",
        greek.skipped
    );
}

#[test]
fn a_stance_target_trained_in_another_language_gives_no_stance_and_says_why() {
    // Covid Vaccine is a Mawqif target: Arabic tweets only.
    let english = classify(&comment(
        r#"{"id": 1, "text": "The vaccine saved my mother's life", "target": "Covid Vaccine"}"#,
    ));
    assert!(!english.heads.contains_key("stance"), "{:?}", english.heads);
    let why = english
        .skipped
        .get("stance")
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        why.contains("`Covid Vaccine`") && why.contains("Latin-script"),
        "{why}"
    );
    // The same target in Arabic, and an English target in English, are scored.
    let arabic = classify(&comment(
        r#"{"id": 2, "text": "اللقاح آمن وفعال والحمد لله", "target": "Covid Vaccine"}"#,
    ));
    assert!(arabic.heads.contains_key("stance"), "{:?}", arabic.skipped);
    let semeval = classify(&comment(
        r#"{"id": 3, "text": "God is great", "target": "Atheism"}"#,
    ));
    assert!(
        semeval.heads.contains_key("stance"),
        "{:?}",
        semeval.skipped
    );
}
