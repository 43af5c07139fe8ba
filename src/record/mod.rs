//! The output record: what `moderato classify`, `POST /v1/classify` and the Kafka stream write
//! for a comment, one type for all three (and what `monitor` and `demo` read back).
//!
//! - [`Record`]: the typed record, serde both ways, with [`SCHEMA_VERSION`] in every record.
//! - [`classify`]: one comment through the whole path as every producer runs it: the
//!   [`InputPolicy`], the model, the record.
//! - [`feedback`]: a moderator's decision as the feedback file holds it.
//! - [`schema`]: the record's JSON Schema (`docs/record.schema.json`), from the same type.

pub mod feedback;
pub mod schema;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::classify::{id_schema, label, Comment, HeadResult, Id, Labelled, ModelRef};
use crate::lang::Script;
use crate::model::explain::Contribution;
use crate::model::{Model, Scratch};
use crate::policy::InputPolicy;

/// The version of the record's shape; raised when a field changes meaning or goes away.
/// 2: `lang` is the detected language (ISO 639-1), and the script moved to `script`.
pub const SCHEMA_VERSION: u32 = 2;

/// Output fields the record writes itself; an input field of the same name is not passed through.
pub const RESERVED: &[&str] = &[
    "schema_version",
    "id",
    "labels",
    "heads",
    "skipped",
    "explain",
    "model",
    "source",
    "lang",
    "script",
    "truncated",
    "omitted",
];

/// Where a stream message came from: the coordinates consumers de-duplicate on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// The input's Kafka timestamp (ms since the epoch), when it has one.
    pub timestamp: Option<i64>,
}

/// One labelled comment, as every producer writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Record {
    /// The version of the record's shape (`SCHEMA_VERSION`, 2 now); a record written before
    /// versioning reads as 0.
    #[serde(default)]
    #[schema(required = true, minimum = 1)]
    pub schema_version: u32,
    /// The input's id, exactly as it was written (a number of any length or notation
    /// included).
    #[schema(schema_with = id_schema)]
    pub id: Id,
    /// Names of the flagged binary heads.
    pub labels: Vec<String>,
    /// Per-head results, by head name.
    pub heads: BTreeMap<String, HeadResult>,
    /// Heads left out, with the reason (absent when none was): a conditioned head without a
    /// known target, or a head never trained on the comment's script.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, String>,
    /// Top n-gram contributions per flagged or multiclass head (`classify --explain N` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub explain: Option<BTreeMap<String, Vec<Contribution>>>,
    /// The model that labelled it.
    pub model: ModelRef,
    /// The input message's coordinates (the Kafka stream only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub source: Option<Source>,
    /// The comment's language as an ISO 639-1 code (`en`, `ar`, ...), or null when the
    /// language identifier cannot tell (no letters, or too few words). Informational: which
    /// heads score a comment follows `script`. (Before schema 2 this field held the script.)
    #[schema(required = true, nullable = true)]
    pub lang: Option<String>,
    /// The comment's dominant script (`ar`, `latin`, `other`): what decides which heads have
    /// seen such text. Always written since schema 2; older records held it in `lang`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = true, nullable = false)]
    pub script: Option<Script>,
    /// The text was over the input policy's limit and only its prefix was scored (absent when
    /// it was not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Passthrough fields left out, largest first, because the record would not have fit in
    /// a Kafka record (the stream only; absent when none was). Labels and scores are never
    /// left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<String>,
    /// The input's other fields (`target`, `domain`, `meta`, ...), passed through untouched;
    /// `domain` is the one the comment was scored with.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

impl Record {
    /// The record of `comment`, labelled as `labelled`; `truncated` says whether the input
    /// policy cut its text. The comment's other fields move into the record (no copy).
    pub fn new(labelled: Labelled, comment: &mut Comment, truncated: bool) -> Self {
        let mut passthrough = std::mem::take(&mut comment.extra);
        passthrough.retain(|k, _| !RESERVED.contains(&k.as_str()));
        if let Some(domain) = &comment.domain {
            passthrough.insert("domain".into(), Value::from(domain.as_str()));
        }
        if let Some(target) = &comment.target {
            passthrough.insert("target".into(), Value::from(target.as_str()));
        }
        Self {
            schema_version: SCHEMA_VERSION,
            id: labelled.id,
            labels: labelled.labels,
            heads: labelled.heads,
            skipped: labelled.skipped,
            explain: labelled.explain,
            model: labelled.model,
            source: None,
            lang: crate::lang::language(&comment.text).map(String::from),
            script: Some(labelled.script),
            truncated,
            omitted: Vec::new(),
            passthrough,
        }
    }

    /// The comment's script; for a record older than schema 2, read from its `lang`, which
    /// then held the script code.
    pub fn script(&self) -> Script {
        if let Some(script) = self.script {
            return script;
        }
        if self.schema_version >= 2 {
            // A schema-2 record without a script: its `lang` is a language, not a script.
            return match self.lang.as_deref() {
                Some("ar" | "fa" | "ur") => Script::Arabic,
                Some(_) => Script::Latin,
                None => Script::Other,
            };
        }
        match self.lang.as_deref() {
            Some("ar") => Script::Arabic,
            Some("latin") => Script::Latin,
            _ => Script::Other,
        }
    }

    /// The same record, naming the stream message it answers.
    pub fn with_source(self, source: Source) -> Self {
        Self {
            source: Some(source),
            ..self
        }
    }
}

/// One comment through the whole path, as every producer runs it: `policy` (default domain,
/// text limit) applied to `comment` in place, the model's labels (`explain_top` contributions
/// per flagged head when above 0), the record.
pub fn classify(
    model: &Model,
    model_ref: &ModelRef,
    policy: &InputPolicy,
    comment: &mut Comment,
    scratch: &mut Scratch,
    explain_top: usize,
) -> Record {
    let truncated = policy.apply(comment, model.featurizer().normalizer());
    let labelled = label(model, model_ref, comment, scratch, explain_top);
    Record::new(labelled, comment, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled() -> Labelled {
        Labelled {
            id: Id::from(7),
            labels: vec!["offensive".into()],
            heads: BTreeMap::from([(
                "offensive".to_string(),
                HeadResult::Binary {
                    flag: true,
                    score: 0.9,
                },
            )]),
            skipped: BTreeMap::new(),
            explain: None,
            model: ModelRef {
                name: "m".into(),
                version: "v1".into(),
                sha256: "00".into(),
            },
            script: Script::Latin,
        }
    }

    #[test]
    fn passthrough_keeps_unknown_fields_but_never_shadows_the_records_own() {
        let mut comment = Comment::parse(
            br#"{"id": 7, "text": "hello", "target": "Cats", "meta": {"k": 1}, "lang": "en", "schema_version": 9, "labels": 1}"#,
        )
        .expect("valid");
        let record = Record::new(labelled(), &mut comment, false);
        let v = serde_json::to_value(&record).expect("serializes");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["script"], "latin", "the detected script");
        assert_eq!(
            v["lang"],
            Value::Null,
            "too short to tell, whatever the input says"
        );
        assert_eq!(v["labels"], serde_json::json!(["offensive"]));
        assert_eq!(v["meta"]["k"], 1);
        assert_eq!(v["target"], "Cats");
        assert!(v.get("truncated").is_none() && v.get("source").is_none());
        assert!(v.get("text").is_none(), "a record never carries the text");
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let mut comment =
            Comment::parse(br#"{"id": 7, "text": "hi", "meta": [1, 2]}"#).expect("ok");
        let record = Record::new(labelled(), &mut comment, true).with_source(Source {
            topic: "comments".into(),
            partition: 2,
            offset: 5,
            timestamp: None,
        });
        let bytes = serde_json::to_vec(&record).expect("serializes");
        let back: Record = serde_json::from_slice(&bytes).expect("reads back");
        assert_eq!(back, record);
    }

    #[test]
    fn a_record_from_before_schema_version_reads_as_version_0() {
        let old = br#"{"id":"a","labels":[],"heads":{},"model":{"name":"m","version":"v","sha256":"x"},"lang":"ar"}"#;
        let record: Record = serde_json::from_slice(old).expect("reads");
        assert_eq!(
            (record.schema_version, record.script()),
            (0, Script::Arabic)
        );
    }

    #[test]
    fn lang_is_the_language_and_script_the_script() {
        let model = crate::model::fixtures::model();
        let model_ref = ModelRef::of(&model);
        for (text, lang, script) in [
            (
                "The vaccine saved my mother's life, and I am grateful",
                "en",
                "latin",
            ),
            (
                "مقال ممتاز، لكن الكاتب نسي أن أسعار الخبز ارتفعت",
                "ar",
                "ar",
            ),
        ] {
            let json = serde_json::json!({"id": 1, "text": text}).to_string();
            let mut comment = Comment::parse(json.as_bytes()).expect("valid");
            let policy = InputPolicy::default();
            let mut scratch = Scratch::default();
            let record = classify(&model, &model_ref, &policy, &mut comment, &mut scratch, 0);
            let v = serde_json::to_value(&record).expect("serializes");
            assert_eq!(
                (v["lang"].as_str(), v["script"].as_str()),
                (Some(lang), Some(script)),
                "{text}"
            );
        }
    }
}
