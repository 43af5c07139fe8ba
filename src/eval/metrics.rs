//! Classification metrics, computed with `linfa::metrics` (confusion matrices, ROC curves).

use std::collections::BTreeMap;

use linfa::dataset::Pr;
use linfa::metrics::{BinaryClassification, ToConfusionMatrix};
use ndarray::Array1;
use serde::Serialize;

/// Precision, recall, F1 and support of one class.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// True instances.
    pub support: usize,
}

/// Metrics of one multiclass prediction run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Number of rows.
    pub n: usize,
    /// Fraction predicted exactly.
    pub accuracy: f64,
    /// Mean F1 over the classes.
    pub macro_f1: f64,
    /// SemEval-2016's F_avg (mean F1 of FAVOR and AGAINST) when the classes are stance classes.
    pub f_avg: Option<f64>,
    /// Per-class metrics.
    pub per_class: BTreeMap<String, ClassMetrics>,
}

impl Report {
    /// The headline score: F_avg for stance, macro-F1 otherwise.
    pub fn primary(&self) -> f64 {
        self.f_avg.unwrap_or(self.macro_f1)
    }
}

/// Per-class precision / recall / F1 from a linfa confusion matrix, macro-F1 and F_avg.
/// `classes` lists every class (so a never-predicted class still counts with F1 = 0).
pub fn classification(truth: &[usize], pred: &[usize], classes: &[String]) -> Report {
    let n = truth.len();
    let mut per_class = BTreeMap::new();
    let mut f1_sum = 0.0;
    for (c, name) in classes.iter().enumerate() {
        let t: Array1<bool> = truth.iter().map(|&y| y == c).collect();
        let p: Array1<bool> = pred.iter().map(|&y| y == c).collect();
        let support = t.iter().filter(|&&b| b).count();
        let m = one_vs_rest(&p, &t, support);
        f1_sum += m.f1;
        per_class.insert(name.clone(), m);
    }
    let accuracy = if n == 0 {
        0.0
    } else {
        truth.iter().zip(pred).filter(|(a, b)| a == b).count() as f64 / n as f64
    };
    let find = |want: &str| classes.iter().find(|c| c.eq_ignore_ascii_case(want));
    let f_avg = match (find("favor"), find("against")) {
        (Some(f), Some(a)) => Some((per_class[f].f1 + per_class[a].f1) / 2.0),
        _ => None,
    };
    Report {
        n,
        accuracy,
        macro_f1: f1_sum / classes.len().max(1) as f64,
        f_avg,
        per_class,
    }
}

/// Binary metrics of the `true` class via linfa's confusion matrix.
fn one_vs_rest(pred: &Array1<bool>, truth: &Array1<bool>, support: usize) -> ClassMetrics {
    let seen = |want: bool| pred.iter().chain(truth.iter()).any(|&b| b == want);
    let (precision, recall) = match (seen(true), seen(false)) {
        // linfa orders a boolean 2×2 matrix [true, false], so precision and recall refer to `true`.
        (true, true) => match pred.confusion_matrix(truth) {
            Ok(cm) => (finite(cm.precision()), finite(cm.recall())),
            Err(_) => (0.0, 0.0),
        },
        // Every row is truly and predictedly positive.
        (true, false) => (1.0, 1.0),
        _ => (0.0, 0.0),
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    ClassMetrics {
        precision,
        recall,
        f1,
        support,
    }
}

fn finite(x: f32) -> f64 {
    if x.is_finite() {
        x as f64
    } else {
        0.0
    }
}

/// ROC AUC and the ROC curve (false positive rate, true positive rate) via linfa.
pub fn roc(scores: &[f32], truth: &[bool]) -> Option<(f64, Vec<(f64, f64)>)> {
    let pos = truth.iter().filter(|&&b| b).count();
    if pos == 0 || pos == truth.len() {
        return None;
    }
    let probs: Vec<Pr> = scores.iter().map(|&s| Pr::new(s.clamp(0.0, 1.0))).collect();
    let roc = probs.as_slice().roc(truth).ok()?;
    // linfa sorts ascending and reports (tp, fp) fractions; express as (fpr, tpr) from the top.
    let curve: Vec<(f64, f64)> = roc
        .get_curve()
        .into_iter()
        .map(|(tp, fp)| (1.0 - fp as f64, 1.0 - tp as f64))
        .rev()
        .collect();
    Some((auc(&curve), curve))
}

/// Precision-recall curve (recall, precision) and average precision.
pub fn precision_recall(scores: &[f32], truth: &[bool]) -> Option<(f64, Vec<(f64, f64)>)> {
    let pos = truth.iter().filter(|&&b| b).count();
    if pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut curve = vec![(0.0, 1.0)];
    for (rank, &i) in order.iter().enumerate() {
        if truth[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let tie = order.get(rank + 1).is_some_and(|&j| scores[j] == scores[i]);
        if tie {
            continue;
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        curve.push((recall, precision));
    }
    Some((ap, curve))
}

/// Area under a curve of (x, y) points by the trapezoid rule.
pub fn auc(curve: &[(f64, f64)]) -> f64 {
    curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum()
}

/// The threshold on `scores` that maximizes the F1 of the positive class, and that F1.
pub fn best_f1_threshold(scores: &[f32], truth: &[bool]) -> (f32, f64) {
    let pos = truth.iter().filter(|&&b| b).count();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut best_t, mut best_f1) = (0.5f32, 0.0f64);
    for (rank, &i) in order.iter().enumerate() {
        if truth[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        if order.get(rank + 1).is_some_and(|&j| scores[j] == scores[i]) {
            continue;
        }
        let f1 = 2.0 * tp as f64 / (tp + fp + pos) as f64;
        if f1 > best_f1 {
            best_f1 = f1;
            // Midway to the next lower score, so the threshold generalizes a little.
            let next = order.get(rank + 1).map_or(0.0, |&j| scores[j]);
            best_t = (scores[i] + next) / 2.0;
        }
    }
    (best_t, best_f1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_and_f_avg() {
        let classes: Vec<String> = ["AGAINST", "FAVOR", "NONE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let truth = [0, 0, 1, 1, 2, 2];
        let pred = [0, 1, 1, 1, 2, 0];
        let r = classification(&truth, &pred, &classes);
        // AGAINST: P 1/2 R 1/2 F1 .5; FAVOR: P 2/3 R 1 F1 .8; NONE: P 1 R 1/2 F1 2/3.
        assert!((r.per_class["AGAINST"].f1 - 0.5).abs() < 1e-6);
        assert!((r.per_class["FAVOR"].f1 - 0.8).abs() < 1e-6);
        assert!((r.macro_f1 - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-6);
        assert!((r.f_avg.unwrap_or_default() - 0.65).abs() < 1e-6);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-6);
    }

    #[test]
    fn never_predicted_class_scores_zero() {
        let classes: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let r = classification(&[0, 1], &[0, 0], &classes);
        assert_eq!(r.per_class["b"].f1, 0.0);
        assert_eq!(r.per_class["b"].support, 1);
    }

    #[test]
    fn roc_auc_of_perfect_and_inverted_scores() {
        let truth = [false, false, true, true];
        let (auc_good, _) = roc(&[0.1, 0.2, 0.8, 0.9], &truth).expect("both classes");
        let (auc_bad, _) = roc(&[0.9, 0.8, 0.2, 0.1], &truth).expect("both classes");
        assert!((auc_good - 1.0).abs() < 1e-6, "{auc_good}");
        assert!(auc_bad.abs() < 1e-6, "{auc_bad}");
        let (auc_mid, _) = roc(&[0.1, 0.6, 0.5, 0.9], &truth).expect("both classes");
        assert!((auc_mid - 0.75).abs() < 1e-6, "{auc_mid}");
    }

    #[test]
    fn best_threshold_separates() {
        let (t, f1) = best_f1_threshold(&[0.1, 0.3, 0.7, 0.9], &[false, false, true, true]);
        assert!((f1 - 1.0).abs() < 1e-6);
        assert!(t > 0.3 && t <= 0.7, "{t}");
    }
}
