//! `moderato eval`: score a labelled CSV with a model's head and report precision, recall, F1,
//! macro-F1, SemEval's F_avg, ROC AUC, and ROC / precision-recall plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::metrics::{self, Report};
use crate::csv_file::CsvFile;
use crate::error::DataError;
use crate::model::{HeadKind, HeadOutcome, Model, Scratch};
use crate::plot::{line_chart_svg, Curve};

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    /// Labelled CSV.
    pub data: PathBuf,
    /// Label column.
    pub label: String,
    /// Target column, for a conditioned head.
    pub target: Option<String>,
    /// Text column.
    pub text: String,
    /// Head to evaluate (default: the head named like the label column).
    pub head: Option<String>,
    /// Column values that mean "yes" for a binary head.
    pub positive: Vec<String>,
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model has no such head.
    #[error("the model has no head `{wanted}` (heads: {heads}); pick one with --head")]
    NoHead {
        /// Head asked for.
        wanted: String,
        /// Heads the model has.
        heads: String,
    },
    /// A binary head needs to know which values are positive.
    #[error("head `{0}` is binary: say which values of the label column mean yes with --positive")]
    NoPositive(String),
    /// No row had a usable label.
    #[error("no row of {0} has a label the head knows")]
    NoRows(PathBuf),
}

/// ROC and precision-recall curves of one class.
#[derive(Clone, Debug, Serialize)]
pub struct Curves {
    /// ROC AUC.
    pub roc_auc: f64,
    /// Average precision.
    pub average_precision: f64,
    /// (false positive rate, true positive rate).
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
    /// (recall, precision).
    #[serde(skip)]
    pub pr: Vec<(f64, f64)>,
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Head evaluated.
    pub head: String,
    /// Label column.
    pub label: String,
    /// Data file.
    pub data: PathBuf,
    /// Rows left out (label unknown to the head, or target unknown).
    pub skipped_rows: usize,
    /// Precision / recall / F1 per class, macro-F1, F_avg, accuracy.
    #[serde(flatten)]
    pub report: Report,
    /// One-vs-rest ROC AUC per class.
    pub roc_auc: BTreeMap<String, f64>,
    /// Curves per class (binary heads: the positive class only).
    #[serde(skip)]
    pub curves: BTreeMap<String, Curves>,
    /// The model.
    pub model: crate::classify::ModelRef,
}

/// Scores every row of `spec.data` with one head of `model`.
pub fn evaluate(model: &Model, spec: &EvalSpec) -> Result<Evaluation, EvalError> {
    let wanted = spec.head.clone().unwrap_or_else(|| spec.label.clone());
    let hi = model
        .heads()
        .iter()
        .position(|h| h.name == wanted)
        .ok_or_else(|| EvalError::NoHead {
            wanted: wanted.clone(),
            heads: model
                .heads()
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let head = &model.heads()[hi];
    if head.kind == HeadKind::Binary && spec.positive.is_empty() {
        return Err(EvalError::NoPositive(head.name.clone()));
    }
    let table = CsvFile::read(&spec.data)?;
    let text_col = table.column(&spec.text)?;
    let label_col = table.column(&spec.label)?;
    let target_col = spec
        .target
        .as_deref()
        .map(|t| table.column(t))
        .transpose()?;
    let class_of = |value: &str| -> Option<usize> {
        match head.kind {
            HeadKind::Binary => Some(usize::from(spec.positive.iter().any(|p| p == value))),
            HeadKind::Multiclass => head.classes.iter().position(|c| c == value).or_else(|| {
                head.classes
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(value))
            }),
        }
    };
    let rows: Vec<(usize, &str, Option<&str>)> = table
        .rows
        .iter()
        .filter_map(|r| {
            let y = class_of(r.get(label_col)?.trim())?;
            Some((y, r.get(text_col)?, target_col.and_then(|c| r.get(c))))
        })
        .collect();
    let outcomes: Vec<HeadOutcome> = rows
        .par_iter()
        .map_init(Scratch::default, |s, (_, text, target)| {
            model.score(text, *target, s).swap_remove(hi)
        })
        .collect();
    let (mut truth, mut pred, mut probs) = (Vec::new(), Vec::new(), Vec::new());
    for ((y, _, _), outcome) in rows.iter().zip(outcomes) {
        match outcome {
            HeadOutcome::Binary { score, flag } => {
                pred.push(usize::from(flag));
                probs.push(vec![1.0 - score, score]);
            }
            HeadOutcome::Multiclass {
                label, probs: p, ..
            } => {
                pred.push(label);
                probs.push(p);
            }
            HeadOutcome::Skipped { .. } => continue,
        }
        truth.push(*y);
    }
    if truth.is_empty() {
        return Err(EvalError::NoRows(spec.data.clone()));
    }
    let report = metrics::classification(&truth, &pred, &head.classes);
    let mut roc_auc = BTreeMap::new();
    let mut curves = BTreeMap::new();
    for (c, name) in head.classes.iter().enumerate() {
        if head.kind == HeadKind::Binary && c == 0 {
            continue;
        }
        let scores: Vec<f32> = probs.iter().map(|p| p[c]).collect();
        let t: Vec<bool> = truth.iter().map(|&y| y == c).collect();
        if let (Some((auc, roc)), Some((ap, pr))) = (
            metrics::roc(&scores, &t),
            metrics::precision_recall(&scores, &t),
        ) {
            roc_auc.insert(name.clone(), auc);
            curves.insert(
                name.clone(),
                Curves {
                    roc_auc: auc,
                    average_precision: ap,
                    roc,
                    pr,
                },
            );
        }
    }
    Ok(Evaluation {
        head: head.name.clone(),
        label: spec.label.clone(),
        data: spec.data.clone(),
        skipped_rows: table.rows.len() - truth.len(),
        report,
        roc_auc,
        curves,
        model: crate::classify::ModelRef::of(model),
    })
}

/// A plain-text table of the evaluation for the terminal.
pub fn render(e: &Evaluation) -> String {
    let mut s = format!(
        "head {}  column {}  rows {}  (skipped {})\n{:<16} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
        e.head,
        e.label,
        e.report.n,
        e.skipped_rows,
        "class",
        "precision",
        "recall",
        "f1",
        "support",
        "roc_auc"
    );
    for (name, m) in &e.report.per_class {
        let auc = e
            .roc_auc
            .get(name)
            .map_or("-".to_string(), |a| format!("{a:.4}"));
        s += &format!(
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8} {:>8}\n",
            name, m.precision, m.recall, m.f1, m.support, auc
        );
    }
    s += &format!(
        "accuracy {:.4}  macro-F1 {:.4}",
        e.report.accuracy, e.report.macro_f1
    );
    if let Some(f) = e.report.f_avg {
        s += &format!("  F_avg {f:.4}");
    }
    s.push('\n');
    s
}

/// Writes `metrics.json`, `roc.svg` and `pr.svg` into `dir`.
pub fn write(e: &Evaluation, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(e).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("metrics.json"), json)?;
    let curve = |roc: bool| -> Vec<Curve> {
        e.curves
            .iter()
            .map(|(name, c)| {
                let (points, area, what) = if roc {
                    (&c.roc, c.roc_auc, "AUC")
                } else {
                    (&c.pr, c.average_precision, "AP")
                };
                Curve {
                    name: format!("{name} ({what} {area:.3})"),
                    points: points.clone(),
                }
            })
            .collect()
    };
    // The data set folder and file name: a full path would not fit the chart's title line.
    let parts: Vec<String> = e
        .data
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let short: Vec<&str> = parts.iter().rev().map(String::as_str).collect();
    let title = format!("{} on {}", e.head, short.join("/"));
    let roc = curve(true);
    std::fs::write(
        dir.join("roc.svg"),
        line_chart_svg(
            &format!("ROC: {title}"),
            "false positive rate",
            "true positive rate",
            &roc,
            true,
        ),
    )?;
    let pr = curve(false);
    std::fs::write(
        dir.join("pr.svg"),
        line_chart_svg(
            &format!("Precision-recall: {title}"),
            "recall",
            "precision",
            &pr,
            false,
        ),
    )?;
    Ok(())
}
