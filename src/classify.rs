//! Where a comment becomes a label: input record → model scores → output record (JSON).
//!
//! `moderato classify`, `moderato serve` and the HTTP API all speak these records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::error::InputError;
use crate::lang::Script;
use crate::model::explain::{Contribution, Explainer};
use crate::model::{HeadOutcome, Model, Scratch};

/// An input comment: `{"id", "text", "target"?, ...}`; other fields are kept as they are.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct Comment {
    /// Caller's id (string or number), kept exactly as it was written.
    #[serde(default)]
    #[schema(schema_with = id_schema)]
    pub id: Id,
    /// The comment (not empty).
    #[schema(min_length = 1)]
    pub text: String,
    /// Target of the stance head (e.g. "Hillary Clinton").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Site or data set the comment comes from; selects a head's domain calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Everything else, passed through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Comment {
    /// Parses one JSON payload, with a precise reason when it is not a usable comment.
    pub fn parse(payload: &[u8]) -> Result<Self, InputError> {
        let text =
            std::str::from_utf8(payload).map_err(|e| InputError::NotUtf8(e.valid_up_to()))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| InputError::NotJson(e.to_string()))?;
        let inexact = value.get("id").is_some_and(Value::is_f64);
        let mut comment = Self::from_value(value)?;
        if inexact {
            // A number `Value` holds only as an f64 (beyond u64, a fraction, an exponent): its
            // text, as written, from a second look at just that field.
            #[derive(Deserialize)]
            struct RawId<'a> {
                #[serde(borrow)]
                id: &'a RawValue,
            }
            if let Ok(raw) = serde_json::from_str::<RawId<'_>>(text) {
                comment.id = Id::Number(raw.id.get().to_string());
            }
        }
        Ok(comment)
    }

    /// Reads one parsed JSON value as a comment, with the same checks as [`Comment::parse`].
    pub fn from_value(value: Value) -> Result<Self, InputError> {
        let Value::Object(mut obj) = value else {
            return Err(InputError::NotJson("expected an object".into()));
        };
        let text = match obj.remove("text") {
            Some(Value::String(s)) => s,
            _ => return Err(InputError::NoText),
        };
        if text.trim().is_empty() {
            return Err(InputError::EmptyText);
        }
        let id = match obj.remove("id") {
            None | Some(Value::Null) => Id::Null,
            Some(Value::String(s)) => Id::Text(s),
            Some(Value::Number(n)) => Id::Number(n.to_string()),
            Some(_) => {
                return Err(InputError::NotJson(
                    "`id` must be a string or a number".into(),
                ))
            }
        };
        let mut string_field = |name: &str| match obj.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                obj.insert(name.to_string(), other);
                None
            }
            None => None,
        };
        let target = string_field("target");
        let domain = string_field("domain");
        Ok(Self {
            id,
            text,
            target,
            domain,
            extra: obj,
        })
    }
}

/// A comment id exactly as the input wrote it: a string, a number (as its JSON text, so
/// `123456789012345678901234567890` and `1E2` come back out as written, not as floats), or
/// null when the input had none. It serializes back to the same JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Id {
    /// No id, or `null`.
    #[default]
    Null,
    /// A string id.
    Text(String),
    /// A number id: its JSON text, as written.
    Number(String),
}

impl Id {
    /// Whether the input had no id.
    pub fn is_null(&self) -> bool {
        matches!(self, Id::Null)
    }

    /// The id as text: a string as it is, a number as written, `null` for none (what the
    /// feedback join and the dashboard key comments by).
    pub fn text(&self) -> String {
        match self {
            Id::Null => "null".into(),
            Id::Text(s) | Id::Number(s) => s.clone(),
        }
    }

    /// Reads the JSON text of an id; `None` when it is not a string, a number or null.
    pub fn from_json(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        match raw.bytes().next()? {
            b'"' => serde_json::from_str(raw).ok().map(Id::Text),
            b'n' => (raw == "null").then_some(Id::Null),
            b'-' | b'0'..=b'9' => serde_json::from_str::<serde::de::IgnoredAny>(raw)
                .ok()
                .map(|_| Id::Number(raw.to_string())),
            _ => None,
        }
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        matches!(self, Id::Text(s) if s == other)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Text(s.to_string())
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Number(n.to_string())
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Null => s.serialize_unit(),
            Id::Text(t) => s.serialize_str(t),
            Id::Number(n) => match RawValue::from_string(n.clone()) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_str(n),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Id::from_json(raw.get())
            .ok_or_else(|| serde::de::Error::custom("`id` must be a string, a number or null"))
    }
}

/// A comment id as text: a string id as it is, any other JSON value (a number) as JSON. The
/// feedback join looks comments up by this, so the stream and the join must both use it.
pub fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The schema of a comment id: a string, a number, or null when the input had none.
pub fn id_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Null,
        ]))
        .description(Some(
            "The input's id: a string or a number (null when it had none).",
        ))
}

/// A head's result in an output record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum HeadResult {
    /// Binary head.
    Binary {
        /// Whether the score reaches the head's threshold.
        flag: bool,
        /// Calibrated probability.
        score: f32,
    },
    /// Multiclass head.
    Multiclass {
        /// Chosen class.
        label: String,
        /// Probability per class.
        scores: BTreeMap<String, f32>,
        /// The target it was conditioned on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        target: Option<String>,
    },
}

/// Which model produced a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// SHA-256 of the model file.
    pub sha256: String,
}

impl ModelRef {
    /// The reference of a loaded model.
    pub fn of(model: &Model) -> Self {
        Self {
            name: model.info.name.clone(),
            version: model.info.version.clone(),
            sha256: model.sha256.clone(),
        }
    }
}

/// An output record: labels, per-head results and the model that made them.
#[derive(Clone, Debug, Serialize)]
pub struct Labelled {
    /// The input's id, as written.
    pub id: Id,
    /// Names of the flagged binary heads.
    pub labels: Vec<String>,
    /// Per-head results.
    pub heads: BTreeMap<String, HeadResult>,
    /// Heads left out, with the reason: a conditioned head without a known target, or a head
    /// never trained on the comment's script.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, String>,
    /// Top n-gram contributions of every flagged head (with `--explain N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<BTreeMap<String, Vec<Contribution>>>,
    /// The model.
    pub model: ModelRef,
    /// The comment's script, as the heads were chosen by (the record's `script`).
    #[serde(skip)]
    pub script: Script,
}

/// Classifies one comment; `explain_top > 0` adds that many contributions per flagged head.
pub fn label(
    model: &Model,
    model_ref: &ModelRef,
    comment: &Comment,
    scratch: &mut Scratch,
    explain_top: usize,
) -> Labelled {
    let script = crate::lang::script(&comment.text);
    let outcomes = model.score_scripted(
        &comment.text,
        script,
        comment.target.as_deref(),
        comment.domain.as_deref(),
        scratch,
    );
    let mut out = Labelled {
        id: comment.id.clone(),
        labels: Vec::new(),
        heads: BTreeMap::new(),
        skipped: BTreeMap::new(),
        explain: None,
        model: model_ref.clone(),
        script,
    };
    let mut explanations = BTreeMap::new();
    // Featurized and scored part by part once, for every head explained (none without
    // `--explain`).
    let mut explainer: Option<Explainer<'_>> = None;
    for (hi, (head, outcome)) in model.heads().iter().zip(outcomes).enumerate() {
        let (class, target) = match outcome {
            HeadOutcome::Binary { score, flag } => {
                if flag {
                    out.labels.push(head.name.clone());
                }
                out.heads
                    .insert(head.name.clone(), HeadResult::Binary { flag, score });
                if !flag {
                    continue;
                }
                // A conditioned binary head was scored with its target's copy: explain it so.
                let target = comment.target.as_deref().and_then(|t| head.target_index(t));
                (0, target)
            }
            HeadOutcome::Multiclass {
                label,
                probs,
                target,
            } => {
                let scores = head.classes.iter().cloned().zip(probs).collect();
                out.heads.insert(
                    head.name.clone(),
                    HeadResult::Multiclass {
                        label: head.classes[label].clone(),
                        scores,
                        target: target.map(|t| head.targets[t].clone()),
                    },
                );
                (label, target)
            }
            HeadOutcome::Skipped { reason } => {
                out.skipped.insert(head.name.clone(), reason);
                continue;
            }
        };
        if explain_top > 0 {
            let explainer = explainer.get_or_insert_with(|| Explainer::new(model, &comment.text));
            explanations.insert(
                head.name.clone(),
                explainer.explain(hi, class, target, comment.domain.as_deref(), explain_top),
            );
        }
    }
    if explain_top > 0 {
        out.explain = Some(explanations);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_each_kind_of_bad_input() {
        assert_eq!(
            Comment::parse(b"\xff\xfe").unwrap_err(),
            InputError::NotUtf8(0)
        );
        assert!(matches!(
            Comment::parse(b"{nope").unwrap_err(),
            InputError::NotJson(_)
        ));
        assert!(matches!(
            Comment::parse(b"[1]").unwrap_err(),
            InputError::NotJson(_)
        ));
        assert_eq!(
            Comment::parse(br#"{"id": 1}"#).unwrap_err(),
            InputError::NoText
        );
        assert_eq!(
            Comment::parse(br#"{"id": 1, "text": 5}"#).unwrap_err(),
            InputError::NoText
        );
        assert_eq!(
            Comment::parse(br#"{"id": 1, "text": "  "}"#).unwrap_err(),
            InputError::EmptyText
        );
    }

    #[test]
    fn ids_come_back_out_exactly_as_written() {
        for id in [
            "123456789012345678901234567890",
            "1E2",
            "-0.50",
            "18446744073709551616",
            "7",
            "\"s\\u00e9\"",
            "null",
        ] {
            let line = format!("{{\"id\": {id}, \"text\": \"hello\"}}");
            let c = Comment::parse(line.as_bytes()).expect("valid");
            let out = serde_json::to_string(&c.id).expect("serializes");
            let want = if id.starts_with('"') { "\"sé\"" } else { id };
            assert_eq!(out, want, "{id}");
            let back: Id = serde_json::from_str(&out).expect("reads back");
            assert_eq!(back, c.id, "{id}");
        }
        let c = Comment::parse(br#"{"text": "hi"}"#).expect("valid");
        assert!(c.id.is_null());
        assert_eq!(
            Id::from_json("123456789012345678901234567890")
                .map(|i| i.text())
                .as_deref(),
            Some("123456789012345678901234567890")
        );
        assert!(Id::from_json("[1]").is_none() && Id::from_json("{}").is_none());
    }

    #[test]
    fn parse_keeps_unknown_fields() {
        let c = Comment::parse(
            r#"{"id": "a", "text": "hi", "target": "Atheism", "meta": {"k": 1}, "lang": "en"}"#
                .as_bytes(),
        )
        .expect("valid");
        assert_eq!(c.id, Id::from("a"));
        assert_eq!(c.target.as_deref(), Some("Atheism"));
        assert_eq!(c.extra["meta"]["k"], Value::from(1));
        assert_eq!(c.extra["lang"], Value::from("en"));
    }
}
