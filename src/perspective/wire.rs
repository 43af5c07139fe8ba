//! The Perspective API's JSON messages (`commentanalyzer` v1alpha1), field for field as its
//! discovery document names them. Unknown fields are ignored, as Google's servers do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A body of text: `comment`, or an entry of `context`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, ToSchema)]
pub struct TextEntry {
    /// The text (UTF-8).
    #[serde(default)]
    pub text: Option<String>,
    /// `PLAIN_TEXT` (default) or `HTML`; only plain text is scored as such.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// What a comment replies to: kept for the record, not scored.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// Earlier messages of the thread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<TextEntry>,
    /// The article and the parent comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub article_and_parent_comment: Option<serde_json::Value>,
}

/// Per-attribute options of an analyze request.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeParameters {
    /// `PROBABILITY` (the default, and the only type served).
    #[serde(default)]
    pub score_type: Option<String>,
    /// Leave out the summary score when it is below this.
    #[serde(default)]
    pub score_threshold: Option<f32>,
}

/// `POST /v1alpha1/comments:analyze`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzeCommentRequest {
    /// The comment to score (required).
    #[serde(default)]
    pub comment: Option<TextEntry>,
    /// What the comment replies to (not scored).
    #[serde(default)]
    pub context: Option<Context>,
    /// Attribute name → options (required, not empty).
    #[serde(default)]
    pub requested_attributes: BTreeMap<String, AttributeParameters>,
    /// The caller's idea of the language; echoed back, never used to pick a model.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Return per-sentence scores as well.
    #[serde(default)]
    pub span_annotations: bool,
    /// Leave out attributes the comment's language is not covered for, instead of refusing.
    #[serde(default)]
    pub drop_unsupported_attributes: bool,
    /// Keep nothing of this request: no live feed, no feedback cache, no logs.
    #[serde(default)]
    pub do_not_store: bool,
    /// Echoed back.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The community (site, forum) the comment belongs to: selects its calibration.
    #[serde(default)]
    pub community_id: Option<String>,
}

/// A score and its type.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, ToSchema)]
pub struct Score {
    /// The value (a probability in `[0, 1]`).
    pub value: f32,
    /// `PROBABILITY`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The score of one span of the comment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, ToSchema)]
pub struct SpanScore {
    /// First UTF-16 code unit of the span.
    pub begin: u32,
    /// One past its last UTF-16 code unit.
    pub end: u32,
    /// The span's score.
    pub score: Score,
}

/// The scores of one attribute.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttributeScores {
    /// The whole comment's score (left out under `scoreThreshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_score: Option<Score>,
    /// Per-sentence scores (with `spanAnnotations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub span_scores: Vec<SpanScore>,
}

/// Which model answered: moderato's addition to the response (Perspective never said).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, ToSchema)]
#[schema(as = PerspectiveModel)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// SHA-256 of the model file.
    pub sha256: String,
}

/// The answer to `comments:analyze`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzeCommentResponse {
    /// Attribute name → scores.
    pub attribute_scores: BTreeMap<String, AttributeScores>,
    /// The request's `languages`.
    #[serde(default)]
    pub languages: Vec<String>,
    /// The languages detected in the comment, most likely first.
    #[serde(default)]
    pub detected_languages: Vec<String>,
    /// The request's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The model that answered.
    pub model: ModelInfo,
}

/// `POST /v1alpha1/comments:suggestscore`: a moderator's verdict on a comment.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuggestCommentScoreRequest {
    /// The comment (required).
    #[serde(default)]
    pub comment: Option<TextEntry>,
    /// What it replies to (kept for the record only).
    #[serde(default)]
    pub context: Option<Context>,
    /// Attribute name → the score the moderator gives (0 or 1 for a binary verdict).
    #[serde(default)]
    pub attribute_scores: BTreeMap<String, AttributeScores>,
    /// The caller's languages; echoed back.
    #[serde(default)]
    pub languages: Vec<String>,
    /// The community: becomes the feedback line's `domain`.
    #[serde(default)]
    pub community_id: Option<String>,
    /// Echoed back; also the feedback line's id (`comment:<id>` from Coral).
    #[serde(default)]
    pub client_token: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// The answer to `comments:suggestscore`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuggestCommentScoreResponse {
    /// The request's `clientToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The languages detected in the comment.
    #[serde(default)]
    pub detected_languages: Vec<String>,
    /// The request's `languages`.
    #[serde(default)]
    pub requested_languages: Vec<String>,
}
