//! A site's own feature copy, learned from its moderators' decisions: a logistic regression over
//! the model's weighted n-gram features of the site's comments, with the model's own logit as
//! one more feature (in the spirit of Daumé's feature augmentation: the site gets its own copy of
//! the features, the model's opinion stays one input). Where the site's notion of abuse has
//! words the training sets lack, a threshold cannot learn them; this can, from a few hundred
//! decisions.
//!
//! The fit starts from zero and every weight is L2-penalized, the logit's too. The logit enters
//! at a fifth of its scale, so its weight must be 5 to repeat the model: the penalty leans
//! towards the decisions more than at unit scale (a grid found a half and a fifth about equal,
//! a twentieth worse). The scale and
//! `C` are what a grid over both favoured in a prototype on the skip-one models' logits: 300 and
//! 1,000 decisions drawn from the train rows of OLID and of Al Jazeera, scored on 3,000 other
//! train rows of the same set (no dev row read). `benches/newsite` measures the result.
//! The decision threshold is chosen on out-of-fold probabilities of the rows fit, never on the
//! rows it is judged on.
//!
//! linfa is not used for the same reason as in `train::solver`: the features are sparse hashed
//! buckets, which linfa's dense `Array2` cannot hold.

use std::collections::BTreeMap;

use super::calibrate::best_macro_f1_threshold;
use super::folds;
use super::solver::{sigmoid, Lbfgs, Problem, Rows};
use crate::model::Calibration;

/// Scale of the model's logit among the features.
const LOGIT_SCALE: f32 = 0.2;
/// liblinear's `C` of the copy's fit.
const C: f64 = 3.0;
/// Folds the threshold is chosen on (fewer when a class is rarer).
const THRESHOLD_FOLDS: usize = 5;
/// Weights smaller than this are not written to the model file.
const NEGLIGIBLE: f64 = 1e-6;

/// The decisions a copy is fit on: per comment, the model's logit (under the calibration the
/// copy extends), the comment's weighted features, and the moderators' label.
pub struct Decisions<'a> {
    /// The model's logit of every comment.
    pub logits: &'a [f32],
    /// The weighted `(bucket, value)` features of every comment.
    pub features: &'a [Vec<(u32, f32)>],
    /// The label of every comment.
    pub truth: &'a [bool],
}

/// A fitted copy: `z = logit_weight · LOGIT_SCALE · logit + bias + Σ weight[bucket] · value`.
#[derive(Clone, Debug)]
pub struct SiteCopy {
    logit_weight: f64,
    bias: f64,
    weights: BTreeMap<u32, f64>,
    /// Threshold on `sigmoid(z)`.
    pub threshold: f32,
}

impl Decisions<'_> {
    /// The copy fit on rows `picked`, with its threshold chosen on their out-of-fold scores.
    pub fn fit(&self, picked: &[usize], seed: u64) -> SiteCopy {
        let strata: Vec<u64> = picked.iter().map(|&i| u64::from(self.truth[i])).collect();
        let positives = strata.iter().filter(|&&s| s == 1).count();
        let k = THRESHOLD_FOLDS.min(positives.min(picked.len() - positives));
        let mut probs = vec![0.5f32; picked.len()];
        if k >= 2 {
            for (fit, held) in folds::split(&folds::stratified(&strata, k, seed)) {
                let fit: Vec<usize> = fit.iter().map(|&j| picked[j]).collect();
                let copy = self.solve(&fit);
                for j in held {
                    probs[j] = copy.probability(self, picked[j]);
                }
            }
        }
        let truth: Vec<bool> = picked.iter().map(|&i| self.truth[i]).collect();
        SiteCopy {
            threshold: best_macro_f1_threshold(&probs, &truth),
            ..self.solve(picked)
        }
    }

    /// The L2-regularized fit on rows `picked` (threshold 0.5).
    fn solve(&self, picked: &[usize]) -> SiteCopy {
        // Column 0 is the logit; every bucket the rows hold gets the next free column.
        let mut columns: BTreeMap<u32, u32> = BTreeMap::new();
        for &i in picked {
            for &(bucket, _) in &self.features[i] {
                let next = columns.len() as u32 + 1;
                columns.entry(bucket).or_insert(next);
            }
        }
        let mut rows = Rows::new();
        for &i in picked {
            let logit = std::iter::once((0, self.logits[i] * LOGIT_SCALE));
            rows.push(logit.chain(self.features[i].iter().map(|(b, v)| (columns[b], *v))));
        }
        let labels: Vec<u32> = picked.iter().map(|&i| u32::from(self.truth[i])).collect();
        let ones = vec![1.0; picked.len()];
        let dim = columns.len() + 1;
        let problem = Problem {
            rows: &rows,
            labels: &labels,
            weights: &ones,
            outputs: 1,
            dim,
        };
        // A few hundred rows: one loss-and-gradient thread is quicker than spawning more (the
        // solver's sums are in a fixed order either way).
        let (w, _) = problem.solve(
            C,
            None,
            &Lbfgs {
                threads: 1,
                ..Lbfgs::default()
            },
        );
        SiteCopy {
            logit_weight: w[0],
            bias: w[dim],
            weights: columns
                .into_iter()
                .map(|(bucket, col)| (bucket, w[col as usize]))
                .collect(),
            threshold: 0.5,
        }
    }
}

impl SiteCopy {
    /// `sigmoid(z)` of row `i` of `d`.
    pub fn probability(&self, d: &Decisions, i: usize) -> f32 {
        let mut z = self.logit_weight * f64::from(d.logits[i] * LOGIT_SCALE) + self.bias;
        for (bucket, v) in &d.features[i] {
            z += self.weights.get(bucket).copied().unwrap_or(0.0) * f64::from(*v);
        }
        sigmoid(z) as f32
    }

    /// The copy as a model calibration named `name`, extending the calibration `(bias, platt)`
    /// whose logit `−(a·(raw + bias) + b)` it was fit on. The model scores
    /// `1 / (1 + exp(a'·(raw + bias) + b' + Σ w'·value))`, which is `sigmoid(z)` for
    /// `a' = s·a`, `b' = s·b − bias_copy` and `w' = −w`, with `s = logit_weight · LOGIT_SCALE`.
    pub fn calibration(
        &self,
        name: &str,
        (bias, (a, b)): (f32, (f32, f32)),
        prior: Option<f32>,
    ) -> Calibration {
        let s = self.logit_weight * f64::from(LOGIT_SCALE);
        Calibration {
            name: name.to_string(),
            bias,
            platt: (
                (s * f64::from(a)) as f32,
                (s * f64::from(b) - self.bias) as f32,
            ),
            threshold: self.threshold,
            prior,
            weights: self
                .weights
                .iter()
                .filter(|(_, w)| w.abs() >= NEGLIGIBLE)
                .map(|(&bucket, &w)| (bucket, -w as f32))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits, features and labels of a toy site.
    type World = (Vec<f32>, Vec<Vec<(u32, f32)>>, Vec<bool>);

    /// Bucket 7 marks abuse the model misses; the model's logit knows the rest.
    fn world() -> World {
        let (mut logits, mut features, mut truth) = (vec![], vec![], vec![]);
        for i in 0..200u32 {
            let marked = i % 5 == 0;
            let model_says = i % 7 < 2;
            logits.push(if model_says { 2.0 } else { -2.0 });
            let mut f = vec![(100 + i % 13, 0.6)];
            if marked {
                f.push((7, 0.8));
            }
            f.sort_by_key(|x| x.0);
            features.push(f);
            truth.push(marked || model_says);
        }
        (logits, features, truth)
    }

    #[test]
    fn the_copy_learns_a_word_the_model_misses_and_its_calibration_scores_the_same() {
        let (logits, features, truth) = world();
        let d = Decisions {
            logits: &logits,
            features: &features,
            truth: &truth,
        };
        let all: Vec<usize> = (0..truth.len()).collect();
        let copy = d.fit(&all, 1);
        assert!(copy.weights[&7] > 1.0, "{:?}", copy.weights.get(&7));
        assert!(copy.logit_weight > 0.0);
        let right = all
            .iter()
            .filter(|&&i| (copy.probability(&d, i) >= copy.threshold) == truth[i])
            .count();
        assert!(right >= 196, "{right} of 200 right");

        // As a model calibration it scores what it scored here.
        // The model's raw margin and calibration the logits came from: logit = −(a·(raw+bias)+b).
        let (bias, (a, b)) = (0.5f32, (-1.5f32, 0.25f32));
        let c = copy.calibration("site", (bias, (a, b)), Some(0.3));
        assert!(c.weights.windows(2).all(|w| w[0].0 < w[1].0));
        for i in [0, 1, 3, 5, 14] {
            let raw = (-logits[i] - b) / a - bias;
            let site = c.site_term(&features[i]);
            let score = crate::model::platt(raw + bias, (c.platt.0, c.platt.1 + site));
            assert!((score - copy.probability(&d, i)).abs() < 1e-4, "row {i}");
        }
    }
}
