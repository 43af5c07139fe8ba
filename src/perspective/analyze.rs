//! `comments:analyze`: a Perspective request → the heads' scores, in Perspective's shape.
//!
//! The comment is scored once, by the same [`label`] that `classify`, HTTP and the stream use;
//! each requested attribute reads its head's calibrated probability. The language that picks
//! what may be scored is the *detected* one: Coral sends `"en"` for every locale it does not
//! know, Arabic included, so the request's `languages` are only echoed back.

use std::collections::BTreeMap;

use super::attributes::Attributes;
use super::error::{comment_text, ApiError};
use super::wire::{AnalyzeCommentRequest, AnalyzeCommentResponse, AttributeScores, ModelInfo};
use super::wire::{Score, SpanScore};
use crate::classify::{label, Comment, HeadResult, Id};
use crate::lang::{language, script, Script};
use crate::model::{chunks, HeadOutcome, Scratch, CHUNK_CHARS, LONG_COMMENT};
use crate::policy::InputPolicy;
use crate::stream::reload::Loaded;

/// Longest `clientToken` accepted: it is echoed, and kept as the comment's id.
pub const MAX_TOKEN_BYTES: usize = 512;
/// The only score type served.
const PROBABILITY: &str = "PROBABILITY";

/// An answered request, and what the live view needs of it.
#[derive(Debug)]
pub struct Analysis {
    /// The response body.
    pub response: AnalyzeCommentResponse,
    /// The scored text (after the text limit).
    pub text: String,
    /// Its script.
    pub script: Script,
    /// Every binary head's (index, score, flagged), for metrics and the live view.
    pub scores: Vec<(usize, f32, bool)>,
}

/// Checks the request and answers it with `loaded`'s heads.
pub fn analyze(
    req: AnalyzeCommentRequest,
    loaded: &Loaded,
    attributes: &Attributes,
    policy: &InputPolicy,
    scratch: &mut Scratch,
) -> Result<Analysis, ApiError> {
    let model = &loaded.model;
    let text = comment_text(req.comment)?;
    if req.requested_attributes.is_empty() {
        return Err(ApiError::no_requested_attributes());
    }
    if req
        .client_token
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TOKEN_BYTES)
    {
        return Err(ApiError::bad_request(format!(
            "clientToken is over {MAX_TOKEN_BYTES} bytes"
        )));
    }
    let detected: Vec<String> = language(&text).map(String::from).into_iter().collect();
    let mut requested = Vec::new();
    for (name, params) in &req.requested_attributes {
        if let Some(kind) = params.score_type.as_deref() {
            if kind != PROBABILITY && kind != "SCORE_TYPE_UNSPECIFIED" {
                return Err(ApiError::bad_request(format!(
                    "Attribute {name}: score type {kind} is not served; use {PROBABILITY}."
                )));
            }
        }
        let Some(head) = attributes.head(name, model) else {
            return Err(ApiError::unknown_attribute(name, &attributes.names(model)));
        };
        requested.push((name.clone(), head, params.score_threshold));
    }

    // The one input policy of every producer: the default domain, and the text limit counted
    // after normalization (so invisible padding cannot push the abuse out of reach). A
    // `communityId` naming a script calibration (`lang:ar`) is not a community: ignored.
    let community = req.community_id.clone().filter(|c| !c.starts_with("lang:"));
    let mut comment = Comment {
        id: req.client_token.clone().map_or(Id::Null, Id::Text),
        text,
        target: None,
        domain: community,
        extra: serde_json::Map::new(),
    };
    let truncated = policy.apply(&mut comment, model.featurizer().normalizer());
    let record = label(model, &loaded.model_ref, &comment, scratch, 0);
    let written_in = script(&comment.text);
    let scores: Vec<(usize, f32, bool)> = model
        .heads()
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match record.heads.get(&h.name) {
            Some(HeadResult::Binary { flag, score }) => Some((i, *score, *flag)),
            _ => None,
        })
        .collect();
    // Coverage is what the scored (cut) text got: a head in `skipped` was never trained on its
    // script, and its attribute gets Perspective's language error, never a made-up score.
    let mut wanted = Vec::new();
    for (name, head, threshold) in requested {
        match scores.iter().find(|(i, _, _)| *i == head) {
            Some(&(_, value, _)) => wanted.push((name, head, value, threshold)),
            None if req.drop_unsupported_attributes => {}
            None => return Err(ApiError::language_not_supported(&name, &detected)),
        }
    }
    // A cut text is the normalized form of its prefix: its offsets would not be the request's,
    // so a comment over the text limit gets no spans.
    let spans = if req.span_annotations && !truncated {
        span_scores(&comment, loaded, scratch)
    } else {
        Vec::new()
    };

    let mut attribute_scores = BTreeMap::new();
    for (name, head, value, threshold) in wanted {
        let keep = |v: f32| threshold.is_none_or(|t| v >= t);
        let probability = |value| Score {
            value,
            kind: Some(PROBABILITY.into()),
        };
        attribute_scores.insert(
            name,
            AttributeScores {
                summary_score: keep(value).then(|| probability(value)),
                span_scores: spans
                    .iter()
                    .filter_map(|(begin, end, per_head)| {
                        let v = per_head.get(head).copied().flatten()?;
                        keep(v).then(|| SpanScore {
                            begin: *begin,
                            end: *end,
                            score: probability(v),
                        })
                    })
                    .collect(),
            },
        );
    }
    let r = &loaded.model_ref;
    Ok(Analysis {
        response: AnalyzeCommentResponse {
            attribute_scores,
            languages: req.languages,
            detected_languages: detected,
            client_token: req.client_token,
            model: ModelInfo {
                name: r.name.clone(),
                version: r.version.clone(),
                sha256: r.sha256.clone(),
            },
        },
        script: written_in,
        text: comment.text,
        scores,
    })
}

/// Per-sentence scores: `(begin, end, score per head)` with UTF-16 offsets, `end` exclusive.
/// A comment up to [`LONG_COMMENT`] characters is one span, scored as a whole; a longer one is
/// split into the sentence chunks the model takes the maximum over, each scored on its own.
fn span_scores(
    comment: &Comment,
    loaded: &Loaded,
    scratch: &mut Scratch,
) -> Vec<(u32, u32, Vec<Option<f32>>)> {
    let text = comment.text.as_str();
    let pieces = if text.chars().count() > LONG_COMMENT {
        chunks(text, CHUNK_CHARS)
    } else {
        vec![text]
    };
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let trimmed = piece.trim();
        if trimmed.is_empty() {
            continue;
        }
        // `piece` is a slice of `text`: its byte offset is the distance between the pointers.
        let start = trimmed.as_ptr() as usize - text.as_ptr() as usize;
        let begin = utf16_len(&text[..start]);
        let end = begin + utf16_len(trimmed);
        let outcomes = loaded
            .model
            .score_in(trimmed, None, comment.domain.as_deref(), scratch);
        let per_head = outcomes
            .into_iter()
            .map(|o| match o {
                HeadOutcome::Binary { score, .. } => Some(score),
                _ => None,
            })
            .collect();
        out.push((begin, end, per_head));
    }
    out
}

/// Length of `s` in UTF-16 code units (what Perspective's offsets count).
fn utf16_len(s: &str) -> u32 {
    s.chars().map(|c| c.len_utf16() as u32).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use crate::perspective::wire::{AttributeParameters, TextEntry};

    fn request(text: &str, attributes: &[&str]) -> AnalyzeCommentRequest {
        AnalyzeCommentRequest {
            comment: Some(TextEntry {
                text: Some(text.into()),
                kind: None,
            }),
            requested_attributes: attributes
                .iter()
                .map(|a| (a.to_string(), AttributeParameters::default()))
                .collect(),
            ..AnalyzeCommentRequest::default()
        }
    }

    fn run(req: AnalyzeCommentRequest) -> Result<Analysis, ApiError> {
        run_with(req, &InputPolicy::default())
    }

    fn run_with(req: AnalyzeCommentRequest, policy: &InputPolicy) -> Result<Analysis, ApiError> {
        let loaded = Loaded::new(fixtures::model());
        analyze(
            req,
            &loaded,
            &Attributes::default(),
            policy,
            &mut Scratch::default(),
        )
    }

    #[test]
    fn coverage_is_judged_on_the_text_that_is_scored() {
        // Mostly Arabic, but the first 20 counted characters are English: what is scored is
        // English, which `obscene` (PROFANITY) never saw. No 0.0 stands in for its score.
        let text = format!("you stupid idiot you fool {}", "مرحبا ".repeat(50));
        let policy = InputPolicy {
            max_text_chars: 20,
            ..InputPolicy::default()
        };
        let refused = run_with(request(&text, &["PROFANITY"]), &policy);
        assert_eq!(
            error_type(refused),
            Some("LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE")
        );
        let mut long_token = request("hello there", &["TOXICITY"]);
        long_token.client_token = Some("x".repeat(MAX_TOKEN_BYTES + 1));
        assert!(run(long_token).is_err());
    }

    fn error_type(r: Result<Analysis, ApiError>) -> Option<&'static str> {
        r.err().and_then(|e| e.error_type)
    }

    #[test]
    fn refuses_what_perspective_refuses() {
        assert_eq!(
            error_type(run(request("  ", &["TOXICITY"]))),
            Some("COMMENT_EMPTY")
        );
        let long = "a".repeat(crate::perspective::error::MAX_COMMENT_BYTES + 1);
        assert_eq!(
            error_type(run(request(&long, &["TOXICITY"]))),
            Some("COMMENT_TOO_LONG")
        );
        assert_eq!(
            error_type(run(request("hello", &[]))),
            Some("NO_REQUESTED_ATTRIBUTES")
        );
        assert_eq!(
            error_type(run(request("hello", &["THREAT"]))),
            Some("ATTRIBUTE_NOT_SUPPORTED")
        );
        // `obscene` (PROFANITY) was only trained on Arabic text.
        assert_eq!(
            error_type(run(request("you are a fool", &["PROFANITY"]))),
            Some("LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE")
        );
        let mut dropping = request("you are a fool", &["PROFANITY", "TOXICITY"]);
        dropping.drop_unsupported_attributes = true;
        let kept = run(dropping).expect("PROFANITY is dropped, TOXICITY scored");
        assert_eq!(
            kept.response.attribute_scores.keys().collect::<Vec<_>>(),
            ["TOXICITY"]
        );
    }

    #[test]
    fn scores_come_from_the_detected_language_and_echo_the_request() {
        let mut req = request(
            "اللهم انصر جندك على اعدائك يا رب",
            &["PROFANITY", "TOXICITY"],
        );
        req.languages = vec!["en".into()];
        req.client_token = Some("comment:7".into());
        let a = run(req).expect("Arabic is covered by both heads");
        assert_eq!(a.response.languages, ["en"]);
        assert_eq!(a.response.detected_languages, ["ar"]);
        assert_eq!(a.response.client_token.as_deref(), Some("comment:7"));
        assert_eq!(a.script, Script::Arabic);
        for (name, s) in &a.response.attribute_scores {
            let v = s.summary_score.as_ref().map(|s| s.value);
            assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{name}: {v:?}");
        }
    }

    #[test]
    fn a_threshold_leaves_out_lower_scores() {
        let score = |threshold| {
            let mut req = request("you are a fool", &["TOXICITY"]);
            req.requested_attributes.insert(
                "TOXICITY".into(),
                AttributeParameters {
                    score_threshold: threshold,
                    ..AttributeParameters::default()
                },
            );
            run(req).expect("scored").response.attribute_scores["TOXICITY"].clone()
        };
        let value = score(None).summary_score.expect("no threshold").value;
        assert!(score(Some(value)).summary_score.is_some());
        assert!(score(Some(value + 0.01)).summary_score.is_none());
    }

    #[test]
    fn spans_count_utf16_code_units_and_cover_each_sentence() {
        // A long comment with emoji (two UTF-16 units each) before the second sentence.
        let first = format!("{} 😀😀.", "you are a fool and a liar ".repeat(6));
        let second = format!(" {}", "what a lovely day it is today ".repeat(6));
        let text = format!("{first}{second}");
        let mut req = request(&text, &["TOXICITY"]);
        req.span_annotations = true;
        let a = run(req).expect("scored");
        let spans = &a.response.attribute_scores["TOXICITY"].span_scores;
        assert_eq!(spans.len(), 2, "{spans:?}");
        let units: Vec<u16> = text.encode_utf16().collect();
        let piece = |s: &SpanScore| String::from_utf16(&units[s.begin as usize..s.end as usize]);
        assert_eq!(piece(&spans[0]).ok().as_deref(), Some(first.trim()));
        assert_eq!(piece(&spans[1]).ok().as_deref(), Some(second.trim()));
        assert_eq!(
            spans[1].end as usize,
            text.trim_end().encode_utf16().count()
        );

        let mut short = request("تبا لك 😀", &["TOXICITY"]);
        short.span_annotations = true;
        let a = run(short).expect("scored");
        let span = &a.response.attribute_scores["TOXICITY"].span_scores[0];
        assert_eq!(
            (span.begin, span.end),
            (0, 9),
            "7 characters and an emoji of two units"
        );
    }
}
