//! What is fit on a set of design rows at one C: one logistic regression over all outputs
//! (softmax, or sigmoid for a binary head), or one binary logistic regression per class
//! (one-vs-rest), optionally on NB-weighted features (NBSVM's log-count ratios, Wang & Manning
//! 2012). All hand back weights in one layout, `dim × outputs` then `outputs` biases, which is
//! what the model's table stores: the NB ratios are multiplied into the weights, so NB weighting
//! costs nothing at scoring time.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::train::config::TrainConfig;
use crate::train::design::Design;
use crate::train::solver::{Lbfgs, Problem, Rows, SolveReport};

/// One fit: weights in the table's layout, the state the next C warm-starts from, and how the
/// solver ended.
pub(super) struct Fit {
    /// `dim × outputs` weights, then `outputs` biases.
    pub(super) weights: Vec<f64>,
    /// Warm start for the next C on the same rows.
    pub(super) warm: Vec<f64>,
    /// The (slowest) solve's report.
    pub(super) report: SolveReport,
}

/// Fits the rows `picked` of a design at one C.
pub(super) trait Learner: Sync {
    /// Fits `picked`, warm-started from a previous fit's `warm` on the same rows.
    fn fit(&self, picked: &[usize], c: f64, warm: Option<Vec<f64>>, lbfgs: &Lbfgs) -> Fit;
}

/// Class weighting of a learner's rows.
#[derive(Clone, Copy)]
pub(super) struct Weighting<'a> {
    /// Balancing on and the data set mass option.
    pub(super) config: &'a TrainConfig,
    /// Balance classes within each target (conditioned heads).
    pub(super) per_target: bool,
}

/// One L2-regularized logistic regression over all outputs.
pub(super) struct Plain<'a> {
    /// The rows.
    pub(super) design: &'a Design,
    /// Output columns (1: sigmoid; more: softmax).
    pub(super) outputs: usize,
    /// Feature columns.
    pub(super) dim: usize,
    /// Row weights.
    pub(super) weighting: Weighting<'a>,
}

impl Learner for Plain<'_> {
    fn fit(&self, picked: &[usize], c: f64, warm: Option<Vec<f64>>, lbfgs: &Lbfgs) -> Fit {
        let d = self.design;
        let rows = d.rows.subset(picked);
        let labels: Vec<u32> = picked.iter().map(|&i| d.labels[i]).collect();
        let classes = self.outputs.max(2);
        let weights = row_weights(d, picked, &labels, classes, self.weighting);
        let problem = Problem {
            rows: &rows,
            labels: &labels,
            weights: &weights,
            outputs: self.outputs,
            dim: self.dim,
        };
        let (w, report) = problem.solve(c, warm, lbfgs);
        Fit {
            weights: w.clone(),
            warm: w,
            report,
        }
    }
}

/// One binary logistic regression per class. With `nb`, feature `j` of class `k`'s problem is
/// scaled by `r_k[j] = ln(p_j/‖p‖₁) − ln(q_j/‖q‖₁)`, with `p` (`q`) the smoothed count of rows
/// of (not of) class `k` that hold the feature. A two-class head fits only the second class;
/// the first keeps weight 0, so the softmax of its two outputs is that sigmoid. A binary head
/// (one sigmoid output) is the one problem of its positive class. Binary problems converge in
/// far fewer L-BFGS iterations than one softmax problem over all classes.
pub(super) struct OneVsRest<'a> {
    /// The rows.
    pub(super) design: &'a Design,
    /// Output columns: one per class, or 1 for a binary head.
    pub(super) outputs: usize,
    /// Feature columns.
    pub(super) dim: usize,
    /// Row weights.
    pub(super) weighting: Weighting<'a>,
    /// Scale features by NB log-count ratios.
    pub(super) nb: bool,
    /// Additive smoothing of the counts (1 in NBSVM).
    pub(super) alpha: f64,
}

impl OneVsRest<'_> {
    /// The classes that get a problem of their own.
    fn fitted(&self) -> std::ops::Range<usize> {
        if self.outputs == 2 {
            1..2
        } else {
            0..self.outputs
        }
    }

    /// The label of the rows that are positive in output `class`'s problem: the class itself,
    /// or 1 for a binary head, whose one sigmoid output is its positive class.
    fn positive(&self, class: usize) -> u32 {
        if self.outputs == 1 {
            1
        } else {
            class as u32
        }
    }
}

impl OneVsRest<'_> {
    /// Fits class `class` against the rest on `picked`: its weights, its NB ratios (`None`
    /// without NB) and the report.
    fn fit_class(
        &self,
        class: usize,
        picked: &[usize],
        c: f64,
        init: Option<Vec<f64>>,
        lbfgs: &Lbfgs,
    ) -> (Vec<f64>, Option<Vec<f64>>, SolveReport) {
        let d = self.design;
        let labels: Vec<u32> = picked
            .iter()
            .map(|&i| u32::from(d.labels[i] == self.positive(class)))
            .collect();
        let ratio = self
            .nb
            .then(|| nb_ratio(&d.rows, picked, &labels, self.dim, self.alpha));
        let rows = match &ratio {
            None => d.rows.subset(picked),
            Some(ratio) => {
                let mut rows = Rows::new();
                for &i in picked {
                    let (idx, val) = d.rows.row(i);
                    rows.push(
                        idx.iter()
                            .zip(val)
                            .map(|(&j, &v)| (j, v * ratio[j as usize] as f32)),
                    );
                }
                rows
            }
        };
        let sample = row_weights(d, picked, &labels, 2, self.weighting);
        let problem = Problem {
            rows: &rows,
            labels: &labels,
            weights: &sample,
            outputs: 1,
            dim: self.dim,
        };
        let (w, report) = problem.solve(c, init, lbfgs);
        (w, ratio, report)
    }
}

impl Learner for OneVsRest<'_> {
    fn fit(&self, picked: &[usize], c: f64, warm: Option<Vec<f64>>, lbfgs: &Lbfgs) -> Fit {
        let (k, dim) = (self.outputs, self.dim);
        let classes: Vec<usize> = self.fitted().collect();
        // The classes' problems are independent: fit them in parallel (each solver keeps its
        // own thread count, so the result does not depend on how they are scheduled).
        let fits: Vec<(Vec<f64>, Option<Vec<f64>>, SolveReport)> = classes
            .par_iter()
            .enumerate()
            .map(|(n, &class)| {
                let init = warm
                    .as_ref()
                    .and_then(|w| w.get(n * (dim + 1)..(n + 1) * (dim + 1)))
                    .map(<[f64]>::to_vec);
                self.fit_class(class, picked, c, init, lbfgs)
            })
            .collect();
        let mut weights = vec![0.0; (dim + 1) * k];
        let mut next_warm = Vec::with_capacity(classes.len() * (dim + 1));
        let mut report = None::<SolveReport>;
        for (&class, (w, ratio, r)) in classes.iter().zip(fits) {
            for j in 0..dim {
                let r = ratio.as_ref().map_or(1.0, |r| r[j]);
                weights[j * k + class] = w[j] * r;
            }
            weights[dim * k + class] = w[dim];
            next_warm.extend_from_slice(&w);
            if report.as_ref().is_none_or(|b| r.iterations > b.iterations) {
                report = Some(r);
            }
        }
        Fit {
            weights,
            warm: next_warm,
            report: report.unwrap_or(SolveReport {
                iterations: 0,
                objective: 0.0,
                relative_gradient: 0.0,
                converged: true,
            }),
        }
    }
}

/// NBSVM's log-count ratio of every column over the rows `picked` with binary `labels`
/// (features binarized: a row counts once for every column it holds).
fn nb_ratio(rows: &Rows, picked: &[usize], labels: &[u32], dim: usize, alpha: f64) -> Vec<f64> {
    let mut p = vec![alpha; dim];
    let mut q = vec![alpha; dim];
    for (&i, &y) in picked.iter().zip(labels) {
        let counts = if y == 1 { &mut p } else { &mut q };
        for &j in rows.row(i).0 {
            counts[j as usize] += 1.0;
        }
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    p.iter()
        .zip(&q)
        .map(|(a, b)| (a / sp).ln() - (b / sq).ln())
        .collect()
}

/// Sample weights of the rows `picked` with classes `labels`: inverse class frequency among
/// them ("balanced": `rows / (classes × rows of the class)`, counted within each target when
/// `per_target`, so every target keeps its own class balance) and, optionally, equal data set
/// mass.
pub(super) fn row_weights(
    d: &Design,
    picked: &[usize],
    labels: &[u32],
    classes: usize,
    weighting: Weighting,
) -> Vec<f32> {
    let Weighting { config, per_target } = weighting;
    // The balancing group of a row: its data set and target (stratum without the class).
    let group = |i: usize| if per_target { d.strata[i] >> 20 } else { 0 };
    let mut per_class: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    let mut per_group: BTreeMap<u64, usize> = BTreeMap::new();
    let mut per_set: BTreeMap<usize, usize> = BTreeMap::new();
    for (&i, &y) in picked.iter().zip(labels) {
        *per_class.entry((group(i), y)).or_default() += 1;
        *per_group.entry(group(i)).or_default() += 1;
        *per_set.entry(d.datasets[i]).or_default() += 1;
    }
    let n = picked.len() as f64;
    picked
        .iter()
        .zip(labels)
        .map(|(&i, &y)| {
            let mut w = 1.0;
            if config.solver.balanced {
                let g = group(i);
                w *= per_group[&g] as f64 / (classes as f64 * per_class[&(g, y)] as f64);
            }
            if config.solver.balance_datasets {
                w *= n / (per_set.len() as f64 * per_set[&d.datasets[i]] as f64);
            }
            w as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::design::fixtures::{config, design};
    use crate::train::folds::stratum;

    #[test]
    fn balanced_weights_are_computed_on_the_rows_given() {
        let d = design(Rows::new(), vec![0, 0, 0, 1, 1, 1], vec![0; 6]);
        let config = config();
        let weighting = Weighting {
            config: &config,
            per_target: false,
        };
        // Three of class 0 and one of class 1: the rare class weighs three times as much.
        let w = row_weights(&d, &[0, 1, 2, 3], &[0, 0, 0, 1], 2, weighting);
        assert_eq!(w, vec![4.0 / 6.0, 4.0 / 6.0, 4.0 / 6.0, 2.0]);
    }

    #[test]
    fn per_target_balance_weighs_classes_within_each_target() {
        // Target 0: classes 0, 0, 1. Target 1: class 1 twice.
        let strata = vec![
            stratum(0, Some(0), 0),
            stratum(0, Some(0), 0),
            stratum(0, Some(0), 1),
            stratum(0, Some(1), 1),
            stratum(0, Some(1), 1),
        ];
        let labels = vec![0, 0, 1, 1, 1];
        let d = design(Rows::new(), labels.clone(), strata);
        let config = config();
        let weighting = Weighting {
            config: &config,
            per_target: true,
        };
        let w = row_weights(&d, &[0, 1, 2, 3, 4], &labels, 2, weighting);
        assert_eq!(w, vec![0.75, 0.75, 1.5, 0.5, 0.5]);
    }

    #[test]
    fn nb_ratio_favours_columns_of_the_positive_class() {
        // Column 0 only in positives, column 1 only in negatives, column 2 in both.
        let mut rows = Rows::new();
        rows.push([(0, 1.0), (2, 1.0)]);
        rows.push([(0, 1.0), (2, 1.0)]);
        rows.push([(1, 1.0), (2, 1.0)]);
        let r = nb_ratio(&rows, &[0, 1, 2], &[1, 1, 0], 3, 1.0);
        assert!(r[0] > 0.0 && r[1] < 0.0, "{r:?}");
        assert!(r[0] > r[2] && r[2] > r[1], "{r:?}");
    }

    /// An NB fit of `outputs` columns on two separable classes: class 0's rows hold column 0,
    /// class 1's column 1, and every row column 2.
    fn separable_nb_fit(outputs: usize) -> Fit {
        let mut rows = Rows::new();
        let mut labels = Vec::new();
        for i in 0..20u32 {
            let y = i % 2;
            rows.push([(y, 1.0), (2, 0.5)]);
            labels.push(y);
        }
        let d = design(rows, labels, vec![0; 20]);
        let config = config();
        let nb = OneVsRest {
            design: &d,
            outputs,
            dim: 3,
            weighting: Weighting {
                config: &config,
                per_target: false,
            },
            nb: true,
            alpha: 1.0,
        };
        let all: Vec<usize> = (0..20).collect();
        nb.fit(&all, 1.0, None, &Lbfgs::default())
    }

    #[test]
    fn nb_weights_fold_the_ratio_into_the_table_layout() {
        // The two-class head leaves output 0 at zero and puts the ratio-scaled weights in
        // output 1, so its margins rank the classes.
        let fit = separable_nb_fit(2);
        assert_eq!(fit.weights.len(), 8);
        assert!(
            fit.weights.iter().step_by(2).all(|&w| w == 0.0),
            "{:?}",
            fit.weights
        );
        assert!(
            fit.weights[3] > 0.0 && fit.weights[1] < 0.0,
            "{:?}",
            fit.weights
        );
    }

    #[test]
    fn a_binary_heads_nb_fit_is_its_positive_class_problem() {
        // One sigmoid output: the problem is label 1 against 0, so the column only positives
        // hold gets a positive weight and the negatives' column a negative one, ratio folded in.
        let fit = separable_nb_fit(1);
        assert_eq!(fit.weights.len(), 4, "3 weights and a bias");
        assert!(
            fit.weights[1] > 0.0 && fit.weights[0] < 0.0,
            "{:?}",
            fit.weights
        );
    }
}
