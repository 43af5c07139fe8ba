//! `comments:suggestscore`: a moderator's verdict becomes a feedback line, in the JSONL that
//! `serve --feedback-topic` writes and `moderato train --feedback` learns from, with the
//! request's `communityId` as the line's `domain`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use super::attributes::Attributes;
use super::error::{comment_text, ApiError};
use super::wire::{SuggestCommentScoreRequest, SuggestCommentScoreResponse};
use crate::lang::language;
use crate::model::Model;
use crate::record::feedback::FeedbackLine;

/// Coral's `clientToken` for a comment: `comment:<id>`.
const CORAL_PREFIX: &str = "comment:";

/// The comment id a `clientToken` stands for: Coral's `comment:<id>` without its prefix.
pub fn comment_id(token: &str) -> &str {
    token.strip_prefix(CORAL_PREFIX).unwrap_or(token)
}

/// The feedback file, opened for appending; one line is one `write` call under the lock.
pub struct FeedbackSink {
    file: Mutex<File>,
    /// Where it is.
    pub path: PathBuf,
}

impl FeedbackSink {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
            path: path.to_path_buf(),
        })
    }

    /// Appends `lines`, each as one JSON line, and flushes.
    pub fn append(&self, lines: &[FeedbackLine]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut bytes, line)?;
            bytes.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&bytes)?;
        file.flush()
    }
}

/// The feedback lines a suggestion stands for, one per attribute, and the response.
pub fn suggestion(
    req: SuggestCommentScoreRequest,
    model: &Model,
    attributes: &Attributes,
    at: f64,
) -> Result<(Vec<FeedbackLine>, SuggestCommentScoreResponse), ApiError> {
    let text = comment_text(req.comment)?;
    if req.attribute_scores.is_empty() {
        return Err(ApiError::no_requested_attributes());
    }
    let id = req
        .client_token
        .as_deref()
        .map_or(String::new(), |t| comment_id(t).to_string());
    let mut lines = Vec::new();
    for (name, scores) in &req.attribute_scores {
        let Some(head) = attributes.head(name, model) else {
            return Err(ApiError::unknown_attribute(name, &attributes.names(model)));
        };
        let Some(score) = &scores.summary_score else {
            return Err(ApiError::bad_request(format!(
                "attributeScores.{name}.summaryScore is required: moderato learns from \
                 verdicts on whole comments"
            )));
        };
        if !(0.0..=1.0).contains(&score.value) {
            return Err(ApiError::bad_request(format!(
                "attributeScores.{name}.summaryScore.value must be in [0, 1], got {}",
                score.value
            )));
        }
        lines.push(FeedbackLine {
            id: id.clone(),
            text: Some(text.clone()),
            target: None,
            head: model.heads()[head].name.clone(),
            label: Value::Bool(score.value >= 0.5),
            domain: req.community_id.clone(),
            joined: "message".into(),
            at,
        });
    }
    let response = SuggestCommentScoreResponse {
        client_token: req.client_token,
        detected_languages: language(&text).map(String::from).into_iter().collect(),
        requested_languages: req.languages,
    };
    Ok((lines, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use crate::perspective::wire::{AttributeScores, Score, TextEntry};

    fn coral(value: f32) -> SuggestCommentScoreRequest {
        SuggestCommentScoreRequest {
            comment: Some(TextEntry {
                text: Some("you are a fool".into()),
                kind: None,
            }),
            attribute_scores: [(
                "TOXICITY".to_string(),
                AttributeScores {
                    summary_score: Some(Score { value, kind: None }),
                    span_scores: Vec::new(),
                },
            )]
            .into(),
            languages: vec!["en".into()],
            community_id: Some("Coral:https://news.example".into()),
            client_token: Some("comment:c-42".into()),
            ..SuggestCommentScoreRequest::default()
        }
    }

    #[test]
    fn a_verdict_becomes_a_feedback_line_of_its_community() {
        let model = fixtures::model();
        let (lines, response) =
            suggestion(coral(1.0), &model, &Attributes::default(), 5.0).expect("valid");
        assert_eq!(response.client_token.as_deref(), Some("comment:c-42"));
        assert_eq!(response.requested_languages, ["en"]);
        let line = &lines[0];
        assert_eq!(line.id, "c-42");
        assert_eq!(line.head, "offensive");
        assert_eq!(line.label, Value::Bool(true));
        assert_eq!(line.domain.as_deref(), Some("Coral:https://news.example"));
        assert_eq!(line.text.as_deref(), Some("you are a fool"));

        let (lines, _) =
            suggestion(coral(0.0), &model, &Attributes::default(), 5.0).expect("valid");
        assert_eq!(lines[0].label, Value::Bool(false));
        assert!(suggestion(coral(2.0), &model, &Attributes::default(), 5.0).is_err());
    }

    #[test]
    fn lines_append_to_the_file_as_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("feedback.jsonl");
        let sink = FeedbackSink::open(&path).expect("opens");
        let model = fixtures::model();
        let (lines, _) =
            suggestion(coral(1.0), &model, &Attributes::default(), 5.0).expect("valid");
        sink.append(&lines).expect("written");
        sink.append(&lines).expect("written");
        let text = std::fs::read_to_string(&path).expect("readable");
        let back: Vec<FeedbackLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a feedback line"))
            .collect();
        assert_eq!(back, [lines[0].clone(), lines[0].clone()]);
    }
}
