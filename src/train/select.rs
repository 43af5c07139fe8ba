//! Model selection by k-fold cross-validation on the training rows alone: for every C of the
//! grid, fit on k − 1 folds and score the held-out fold, then keep the C whose out-of-fold
//! predictions score best on the task's own metric (F_avg for stance, macro-F1 otherwise). The
//! out-of-fold margins of that C are what the decision rule and the calibration are fit on, so
//! no row that chose anything is ever used to report a number. A `--dev` split never gets here.

use rayon::prelude::*;
use serde::Serialize;

use crate::model::HeadKind;
use crate::train::calibrate::{self, Decision};
use crate::train::folds;
use crate::train::learner::{Fit, Learner};
use crate::train::solver::{Lbfgs, Problem, Rows};

/// What cross-validation needs of one head's training rows.
pub(super) struct CvData<'a> {
    /// Design rows (as trained on).
    pub(super) rows: &'a Rows,
    /// The same rows as scored without a domain (set-aware heads), for pooled calibration.
    pub(super) shared: Option<&'a Rows>,
    /// Class of every row.
    pub(super) labels: &'a [u32],
    /// What is fit on the rows of k − 1 folds.
    pub(super) learner: &'a dyn Learner,
    /// Fold of every row.
    pub(super) folds: &'a [usize],
    /// Output columns (1 for binary).
    pub(super) outputs: usize,
    /// Feature columns.
    pub(super) dim: usize,
    /// The rows whose out-of-fold margins are scored (`None`: all). Augmentation rows train
    /// but never choose C: they are not comments of any site.
    pub(super) scored: Option<&'a [usize]>,
}

/// How candidates are scored: the head's kind, its class names, and whether to tune offsets.
pub(super) struct Scoring<'a> {
    /// Binary or multiclass.
    pub(super) kind: HeadKind,
    /// Class names (multiclass; stance names make the score F_avg).
    pub(super) classes: &'a [String],
    /// Tune per-class decision offsets (multiclass).
    pub(super) offsets: bool,
}

/// One C of the grid and its cross-validated score.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Tried {
    /// Inverse regularization strength.
    pub(super) c: f64,
    /// Out-of-fold score (F_avg or macro-F1).
    pub(super) cv: f64,
    /// Most L-BFGS iterations any fold needed.
    pub(super) iterations: usize,
    /// Whether every fold converged.
    pub(super) converged: bool,
}

/// The chosen C with what was learnt about it out of fold.
pub(super) struct Selection {
    /// The chosen C.
    pub(super) c: f64,
    /// Its out-of-fold score.
    pub(super) score: f64,
    /// Out-of-fold raw margins of every row at that C (`outputs` per row).
    pub(super) oof: Vec<f32>,
    /// The same for the shared (domain-free) rows, when given.
    pub(super) oof_shared: Option<Vec<f32>>,
    /// The multiclass decision rule fit on `oof` (temperature, offsets).
    pub(super) decision: Option<Decision>,
    /// Every C tried, in order.
    pub(super) tried: Vec<Tried>,
}

/// Walks the C grid in order (each fold warm-starts from its previous C) and stops once more
/// than `patience` C values in a row fail to improve the out-of-fold score. Folds run in parallel,
/// each solver on one thread, so results do not depend on the machine's core count.
pub(super) fn cross_validate(
    data: &CvData,
    scoring: &Scoring,
    grid: &[f64],
    lbfgs: &Lbfgs,
    patience: usize,
) -> Option<Selection> {
    let fold_rows = folds::split(data.folds);
    if fold_rows.is_empty() {
        return None;
    }
    let one_thread = Lbfgs {
        threads: 1,
        ..lbfgs.clone()
    };
    let mut warm: Vec<Option<Vec<f64>>> = vec![None; fold_rows.len()];
    let mut best: Option<Selection> = None;
    let mut tried = Vec::new();
    let mut worse = 0;
    for &c in grid {
        let solved: Vec<Fit> = fold_rows
            .par_iter()
            .zip(warm.par_iter_mut())
            .map(|((fit, _), init)| data.learner.fit(fit, c, init.take(), &one_thread))
            .collect();
        let oof = out_of_fold(data, data.rows, &fold_rows, &solved);
        let (score, decision) = match data.scored {
            None => score_margins(&oof, data.labels, data.folds, data.outputs, scoring),
            Some(rows) => {
                let k = data.outputs;
                let raw: Vec<f32> = rows
                    .iter()
                    .flat_map(|&i| &oof[i * k..][..k])
                    .copied()
                    .collect();
                let labels: Vec<u32> = rows.iter().map(|&i| data.labels[i]).collect();
                let folds: Vec<usize> = rows.iter().map(|&i| data.folds[i]).collect();
                score_margins(&raw, &labels, &folds, k, scoring)
            }
        };
        let entry = Tried {
            c,
            cv: score,
            iterations: solved
                .iter()
                .map(|f| f.report.iterations)
                .max()
                .unwrap_or(0),
            converged: solved.iter().all(|f| f.report.converged),
        };
        tracing::info!(
            c,
            cv = score,
            iterations = entry.iterations,
            "cross-validated"
        );
        tried.push(entry);
        if best.as_ref().is_none_or(|b| score > b.score) {
            let oof_shared = data
                .shared
                .map(|rows| out_of_fold(data, rows, &fold_rows, &solved));
            best = Some(Selection {
                c,
                score,
                oof,
                oof_shared,
                decision,
                tried: Vec::new(),
            });
            worse = 0;
        } else {
            worse += 1;
        }
        for (slot, fit) in warm.iter_mut().zip(solved) {
            *slot = Some(fit.warm);
        }
        if worse > patience {
            break;
        }
    }
    best.map(|mut b| {
        b.tried = tried;
        b
    })
}

/// Raw margins of every row from the model of the fold that held it out.
fn out_of_fold(
    data: &CvData,
    rows: &Rows,
    fold_rows: &[(Vec<usize>, Vec<usize>)],
    solved: &[Fit],
) -> Vec<f32> {
    let k = data.outputs;
    let mut out = vec![0.0f32; rows.len() * k];
    let scorer = Problem {
        rows,
        labels: data.labels,
        weights: &[],
        outputs: k,
        dim: data.dim,
    };
    let mut z = vec![0.0; k];
    for ((_, held), fit) in fold_rows.iter().zip(solved) {
        for &i in held {
            scorer.margins(&fit.weights, i, &mut z);
            for (o, v) in out[i * k..][..k].iter_mut().zip(&z) {
                *o = *v as f32;
            }
        }
    }
    out
}

/// The score of raw margins with the decision rule the head will use: for binary heads the
/// best threshold; for multiclass heads argmax after temperature scaling, with per-class offsets
/// only when they win out of fold too (fit on the other folds' margins and applied to each
/// fold, so the offsets' own fit cannot flatter them). Returns the multiclass rule, fit on every
/// row's margins, so the chosen C's need not be fit again.
pub(super) fn score_margins(
    raw: &[f32],
    labels: &[u32],
    folds: &[usize],
    outputs: usize,
    scoring: &Scoring,
) -> (f64, Option<Decision>) {
    let truth: Vec<usize> = labels.iter().map(|&y| y as usize).collect();
    match scoring.kind {
        HeadKind::Binary => {
            let yes: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
            let (t, _) = crate::eval::metrics::best_f1_threshold(raw, &yes);
            let pred: Vec<usize> = raw.iter().map(|&f| usize::from(f >= t)).collect();
            let classes = ["no".into(), "yes".into()];
            (
                crate::eval::metrics::classification(&truth, &pred, &classes).macro_f1,
                None,
            )
        }
        HeadKind::Multiclass => {
            let names = scoring.classes;
            let temperature = calibrate::temperature(raw, outputs, &truth);
            let zeros = vec![0.0; outputs];
            let plain = calibrate::decision_score(raw, outputs, temperature, &zeros, &truth, names);
            let plain_rule = Decision {
                temperature,
                offsets: Vec::new(),
                score: plain,
            };
            if !scoring.offsets {
                return (plain, Some(plain_rule));
            }
            let crossfit = cross_fitted_offsets(raw, &truth, folds, outputs, temperature, names);
            if crossfit <= plain {
                return (plain, Some(plain_rule));
            }
            let (offsets, _) = calibrate::class_offsets(raw, outputs, temperature, &truth, names);
            let rule = Decision {
                temperature,
                offsets,
                score: crossfit,
            };
            (crossfit, Some(rule))
        }
    }
}

/// The score of class offsets that were fit on every fold but the one they decide.
fn cross_fitted_offsets(
    raw: &[f32],
    truth: &[usize],
    folds: &[usize],
    outputs: usize,
    temperature: f32,
    names: &[String],
) -> f64 {
    let mut pred = vec![0usize; truth.len()];
    for (fit, held) in folds::split(folds) {
        let fit_raw: Vec<f32> = fit
            .iter()
            .flat_map(|&i| raw[i * outputs..][..outputs].iter().copied())
            .collect();
        let fit_truth: Vec<usize> = fit.iter().map(|&i| truth[i]).collect();
        let (off, _) = calibrate::class_offsets(&fit_raw, outputs, temperature, &fit_truth, names);
        for &i in &held {
            let z: Vec<f32> = raw[i * outputs..][..outputs]
                .iter()
                .zip(&off)
                .map(|(v, o)| v / temperature + o)
                .collect();
            pred[i] = crate::model::argmax(&z);
        }
    }
    crate::eval::metrics::classification(truth, &pred, names).primary()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::design::fixtures::{config, design};
    use crate::train::learner::{Plain, Weighting};

    const BINARY: Scoring = Scoring {
        kind: HeadKind::Binary,
        classes: &[],
        offsets: false,
    };

    /// Cross-validates a binary plain learner on `rows` over `k` folds (seed 3).
    fn run(
        rows: Rows,
        labels: Vec<u32>,
        dim: usize,
        k: usize,
        grid: &[f64],
    ) -> (Vec<usize>, Selection) {
        let strata = labels.iter().map(|&y| u64::from(y)).collect();
        let d = design(rows, labels, strata);
        let folds = folds::stratified(&d.strata, k, 3);
        let config = config();
        let learner = Plain {
            design: &d,
            outputs: 1,
            dim,
            weighting: Weighting {
                config: &config,
                per_target: false,
            },
        };
        let data = CvData {
            rows: &d.rows,
            shared: None,
            labels: &d.labels,
            learner: &learner,
            folds: &folds,
            outputs: 1,
            dim,
            scored: None,
        };
        let selection = cross_validate(&data, &BINARY, grid, &Lbfgs::default(), 5);
        (folds, selection.expect("selection ran"))
    }

    #[test]
    fn cross_validation_is_deterministic_and_keeps_the_best_c() {
        // 60 rows, two classes, separable on columns 0/1 but for every 7th row, which is
        // flipped, and a noisy shared column 2.
        let mut rows = Rows::new();
        let mut labels = Vec::new();
        for i in 0..60u32 {
            let y = i % 2;
            let col = if i % 7 == 0 { 1 - y } else { y };
            rows.push([(col, 1.0), (2, (i % 5) as f32 / 5.0)]);
            labels.push(y);
        }
        let grid = [0.01, 1.0, 100.0];
        let (_, a) = run(rows.clone(), labels.clone(), 3, 5, &grid);
        let (_, b) = run(rows, labels, 3, 5, &grid);
        assert_eq!(a.c, b.c);
        assert_eq!(a.oof, b.oof);
        assert_eq!(a.tried.len(), 3);
        let top = a.tried.iter().map(|t| t.cv).fold(f64::MIN, f64::max);
        assert_eq!(a.score, top);
        assert_eq!(a.oof.len(), 60);
    }

    #[test]
    fn out_of_fold_margins_come_from_models_that_never_saw_the_row() {
        // Every row's label is noise on its own private column: a model that saw the row can
        // fit it, a model that did not has a zero weight there and predicts its bias alone.
        let mut rows = Rows::new();
        let mut labels = Vec::new();
        for i in 0..40u32 {
            rows.push([(i, 1.0)]);
            labels.push(u32::from(i % 3 == 0));
        }
        let (folds, sel) = run(rows, labels, 40, 4, &[100.0]);
        for f in 0..4 {
            let margins: Vec<f32> = (0..40)
                .filter(|&i| folds[i] == f)
                .map(|i| sel.oof[i])
                .collect();
            assert!(
                margins.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6),
                "{margins:?}"
            );
        }
    }

    #[test]
    fn offsets_are_kept_only_when_they_win_out_of_fold() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let scoring = Scoring {
            kind: HeadKind::Multiclass,
            classes: &names,
            offsets: true,
        };
        // Class 2's rows score just under the others: an offset fixes them in every fold.
        let mut raw = Vec::new();
        let mut labels = Vec::new();
        for i in 0..90u32 {
            let y = i % 3;
            let mut z = [0.0f32; 3];
            z[y as usize] = 1.0;
            if y == 2 {
                z[2] = -0.1;
            }
            raw.extend_from_slice(&z);
            labels.push(y);
        }
        let strata: Vec<u64> = labels.iter().map(|&y| u64::from(y)).collect();
        let folds = folds::stratified(&strata, 5, 0);
        let (score, rule) = score_margins(&raw, &labels, &folds, 3, &scoring);
        let rule = rule.expect("a multiclass rule");
        assert!(!rule.offsets.is_empty() && score > 0.99, "{score} {rule:?}");
        // Already right: offsets cannot win, so none are kept.
        let clean: Vec<f32> = labels
            .iter()
            .flat_map(|&y| (0..3).map(move |k| if k == y { 1.0 } else { 0.0 }))
            .collect();
        let (_, rule) = score_margins(&clean, &labels, &folds, 3, &scoring);
        assert!(rule.is_some_and(|r| r.offsets.is_empty()));
    }
}
