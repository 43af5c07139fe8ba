//! The moderators' feedback loop, learning side: the JSONL file `serve` collects becomes one
//! more data set, `feedback`, that labels the heads its decisions name (training only; the
//! dev splits stay the yardstick). A later decision on the same comment and head wins.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::{DatasetSpec, LabelSpec, TrainConfig};
use crate::error::DataError;
use crate::model::HeadKind;
use crate::record::feedback::FeedbackLine;

/// What a feedback file contributed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedbackStats {
    /// Lines read.
    pub lines: usize,
    /// Comments (distinct text and target) that became training rows.
    pub comments: usize,
    /// Lines skipped because their comment's text was never found.
    pub without_text: usize,
    /// Lines skipped because they do not parse, the head is unknown or the label is not one of
    /// its classes.
    pub invalid: usize,
}

/// The class a decision's label means for a binary head (`"1"` / `"0"`) or a multiclass head.
pub(crate) fn class(kind: HeadKind, classes: &[String], label: &Value) -> Option<String> {
    match kind {
        HeadKind::Binary => {
            let yes = match label {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64()? != 0.0,
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "flag" => true,
                    "0" | "false" | "no" | "ok" => false,
                    _ => return None,
                },
                _ => return None,
            };
            Some(if yes { "1" } else { "0" }.into())
        }
        HeadKind::Multiclass => {
            let s = label.as_str()?;
            classes.iter().find(|c| c.as_str() == s).cloned()
        }
    }
}

/// The lines of a feedback file, and how many non-empty lines were not feedback lines (a
/// write cut short by a full disk, say: skipped with a warning, not fatal).
pub fn read_lines(path: &Path) -> Result<(Vec<FeedbackLine>, usize), DataError> {
    let err = |message: String| DataError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let (mut lines, mut broken) = (Vec::new(), 0);
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| err(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<FeedbackLine>(&line) {
            Ok(fb) => lines.push(fb),
            Err(_) => {
                tracing::warn!(line = n + 1, file = %path.display(), "not a feedback line; skipped");
                broken += 1;
            }
        }
    }
    Ok((lines, broken))
}

/// Reads `path`, writes its decisions as `dir/feedback.csv` and appends a `feedback` data set
/// to `config` that trains on it.
pub fn add_feedback(
    config: &mut TrainConfig,
    path: &Path,
    dir: &Path,
) -> Result<FeedbackStats, DataError> {
    let err = |message: String| DataError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let (lines, broken) = read_lines(path)?;
    let mut stats = FeedbackStats {
        lines: lines.len() + broken,
        invalid: broken,
        ..FeedbackStats::default()
    };
    // (text, target) → head → class; BTreeMap keeps the CSV deterministic.
    let mut rows: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for fb in lines {
        let Some(text) = fb.text.filter(|t| !t.trim().is_empty()) else {
            stats.without_text += 1;
            continue;
        };
        let Some(head) = config.heads.iter().find(|h| h.name == fb.head) else {
            stats.invalid += 1;
            continue;
        };
        let Some(class) = class(head.kind, &head.classes, &fb.label) else {
            stats.invalid += 1;
            continue;
        };
        if head.conditioned && fb.target.is_none() {
            stats.invalid += 1;
            continue;
        }
        rows.entry((text, fb.target.unwrap_or_default()))
            .or_default()
            .insert(fb.head, class);
    }
    stats.comments = rows.len();
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            reason: format!(
                "no usable decision ({} lines: {} without text, {} with an unknown head or label)",
                stats.lines, stats.without_text, stats.invalid
            ),
        });
    }
    let heads: Vec<String> = config
        .heads
        .iter()
        .filter(|h| rows.values().any(|r| r.contains_key(&h.name)))
        .map(|h| h.name.clone())
        .collect();
    let csv_path: PathBuf = dir.join("feedback.csv");
    let mut w = csv::Writer::from_path(&csv_path).map_err(|e| err(e.to_string()))?;
    let mut header = vec!["text".to_string(), "target".to_string()];
    header.extend(heads.iter().cloned());
    w.write_record(&header).map_err(|e| err(e.to_string()))?;
    for ((text, target), labels) in &rows {
        let mut record = vec![text.clone(), target.clone()];
        record.extend(
            heads
                .iter()
                .map(|h| labels.get(h).cloned().unwrap_or_default()),
        );
        w.write_record(&record).map_err(|e| err(e.to_string()))?;
    }
    w.flush().map_err(|e| err(e.to_string()))?;
    let labels = heads
        .iter()
        .map(|h| {
            let spec = LabelSpec {
                column: h.clone(),
                positive: vec!["1".into()],
                negative: vec!["0".into()],
                classes: BTreeMap::new(),
            };
            (h.clone(), spec)
        })
        .collect();
    config.datasets.push(DatasetSpec {
        name: "feedback".into(),
        train: Some(csv_path),
        dev: Some(PathBuf::from("none")),
        text: "text".into(),
        target: Some("target".into()),
        labels,
        recover: None,
        augment: false,
    });
    Ok(stats)
}
