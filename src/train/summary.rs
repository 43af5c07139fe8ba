//! The dev summary: every head scored per data set through the model itself, and each data
//! set's own label column recovered from the binary heads (the model card's numbers).

use rayon::prelude::*;
use serde::Serialize;

use crate::eval::metrics::{self, Report};
use crate::model::{HeadKind, HeadOutcome, Model, Scratch};
use crate::train::config::TrainConfig;
use crate::train::data::Example;

/// One line of the dev summary.
#[derive(Clone, Debug, Serialize)]
pub struct DevScore {
    /// Data set.
    pub dataset: String,
    /// Head, or `column:NAME` for a label column recovered from the heads.
    pub head: String,
    /// Dev rows scored.
    pub n: usize,
    /// Macro-F1 (binary: over no/yes).
    pub macro_f1: f64,
    /// SemEval F_avg for stance heads.
    pub f_avg: Option<f64>,
    /// ROC AUC for binary heads.
    pub roc_auc: Option<f64>,
}

impl DevScore {
    /// F_avg for stance, macro-F1 otherwise.
    pub fn primary(&self) -> f64 {
        self.f_avg.unwrap_or(self.macro_f1)
    }
}

/// Which domain dev comments are scored as.
#[derive(Clone, Copy, Debug)]
pub enum DevDomain<'a> {
    /// Each row as its own data set (the model card's numbers).
    Own,
    /// Every row as this domain, or as none: how a new site is served.
    As(Option<&'a str>),
}

/// Scores dev through the model itself: per data set and head, plus recovered label columns.
pub fn evaluate_dev(config: &TrainConfig, model: &Model, dev: &[Example]) -> Vec<DevScore> {
    evaluate_dev_as(config, model, dev, DevDomain::Own)
}

/// Like [`evaluate_dev`], with each comment scored as `domain`.
pub fn evaluate_dev_as(
    config: &TrainConfig,
    model: &Model,
    dev: &[Example],
    domain: DevDomain<'_>,
) -> Vec<DevScore> {
    let outcomes: Vec<Vec<HeadOutcome>> = dev
        .par_iter()
        .map_init(Scratch::default, |s, ex| {
            let domain = match domain {
                DevDomain::Own => Some(config.datasets[ex.dataset].name.as_str()),
                DevDomain::As(d) => d,
            };
            model.score_in(&ex.text, ex.target.as_deref(), domain, s)
        })
        .collect();
    let mut out = Vec::new();
    for (d, ds) in config.datasets.iter().enumerate() {
        let rows: Vec<usize> = (0..dev.len()).filter(|&i| dev[i].dataset == d).collect();
        if rows.is_empty() {
            continue;
        }
        for (hi, head) in model.heads().iter().enumerate() {
            let mut truth = Vec::new();
            let mut pred = Vec::new();
            let mut scores = Vec::new();
            for &i in &rows {
                let Some(&(_, y)) = dev[i].labels.iter().find(|(h, _)| *h == hi) else {
                    continue;
                };
                match &outcomes[i][hi] {
                    HeadOutcome::Binary { score, flag } => {
                        truth.push(y);
                        pred.push(usize::from(*flag));
                        scores.push(*score);
                    }
                    HeadOutcome::Multiclass { label, .. } => {
                        truth.push(y);
                        pred.push(*label);
                    }
                    HeadOutcome::Skipped { .. } => {}
                }
            }
            if truth.is_empty() {
                continue;
            }
            let report: Report = metrics::classification(&truth, &pred, &head.classes);
            let roc_auc = (head.kind == HeadKind::Binary)
                .then(|| {
                    let t: Vec<bool> = truth.iter().map(|&y| y == 1).collect();
                    metrics::roc(&scores, &t).map(|(a, _)| a)
                })
                .flatten();
            out.push(DevScore {
                dataset: ds.name.clone(),
                head: head.name.clone(),
                n: truth.len(),
                macro_f1: report.macro_f1,
                f_avg: report.f_avg,
                roc_auc,
            });
        }
        if let Some(rec) = &ds.recover {
            let flagged = |i: usize, name: &str| {
                model
                    .heads()
                    .iter()
                    .position(|h| h.name == name)
                    .is_some_and(|h| {
                        matches!(outcomes[i][h], HeadOutcome::Binary { flag: true, .. })
                    })
            };
            let mut classes: Vec<String> = rec.rules.iter().map(|(_, v)| v.clone()).collect();
            classes.push(rec.otherwise.clone());
            classes.dedup();
            let (mut truth, mut pred) = (Vec::new(), Vec::new());
            for &i in &rows {
                let Some(raw) = dev[i].raw.as_deref() else {
                    continue;
                };
                let Some(t) = classes.iter().position(|c| c == raw) else {
                    continue;
                };
                let value = rec
                    .rules
                    .iter()
                    .find(|(h, _)| flagged(i, h))
                    .map_or(&rec.otherwise, |(_, v)| v);
                truth.push(t);
                pred.push(classes.iter().position(|c| c == value).unwrap_or(0));
            }
            let report = metrics::classification(&truth, &pred, &classes);
            out.push(DevScore {
                dataset: ds.name.clone(),
                head: format!("column:{}", rec.column),
                n: truth.len(),
                macro_f1: report.macro_f1,
                f_avg: None,
                roc_auc: None,
            });
        }
    }
    out
}
