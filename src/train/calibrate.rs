//! Calibration on out-of-fold margins: Platt scaling for binary heads (linfa's Newton solver), temperature
//! scaling for multiclass heads, and the F1-optimal decision threshold.

use linfa::composing::platt_scaling::{platt_newton_method, PlattParams};
use linfa::ParamGuard;
use ndarray::Array1;

use crate::eval::metrics::classification;
use crate::model::Calibration;

/// Fits Platt's `p = 1 / (1 + exp(a·f + b))` to raw scores and labels with linfa.
/// Falls back to the identity sigmoid `(-1, 0)` when the rows have a single class.
pub fn platt(raw: &[f32], truth: &[bool]) -> (f32, f32) {
    let has_both = truth.iter().any(|&t| t) && truth.iter().any(|&t| !t);
    if !has_both {
        return (-1.0, 0.0);
    }
    // f64: in f32 the line search of a few thousand rows loses the objective's precision.
    let Ok(params) = PlattParams::<f64, ()>::default().maxiter(500).check() else {
        return (-1.0, 0.0);
    };
    let reg: Array1<f64> = raw.iter().map(|&f| f as f64).collect();
    let labels = Array1::from(truth.to_vec());
    match platt_newton_method(reg.view(), labels.view(), &params) {
        Ok((a, b)) if a.is_finite() && b.is_finite() && a < 0.0 => (a as f32, b as f32),
        // A non-negative slope would invert the ranking: keep the raw sigmoid instead.
        other => {
            tracing::warn!(result = ?other.map_err(|e| e.to_string()), "Platt scaling failed; using the raw sigmoid");
            (-1.0, 0.0)
        }
    }
}

/// Platt parameters and the F1-optimal threshold of a binary head on raw scores (+ `bias`).
pub fn binary(raw: &[f32], truth: &[bool], bias: f32) -> ((f32, f32), f32) {
    let shifted: Vec<f32> = raw.iter().map(|&f| f + bias).collect();
    let p = platt(&shifted, truth);
    let probs: Vec<f32> = shifted.iter().map(|&f| crate::model::platt(f, p)).collect();
    (p, crate::eval::metrics::best_f1_threshold(&probs, truth).0)
}

/// Fewest rows (and positives, and negatives) a domain or script calibration is fit on.
pub const MIN_SLICE_ROWS: usize = 30;
/// Fewest rows of each class in a calibration slice.
pub const MIN_SLICE_CLASS: usize = 5;

/// The calibration of one slice of the rows (`rows` index `raw` and `truth`), or `None` when the
/// slice is too small to fit one.
pub fn slice(
    name: &str,
    rows: &[usize],
    raw: &[f32],
    truth: &[bool],
    bias: f32,
) -> Option<Calibration> {
    let pos = rows.iter().filter(|&&i| truth[i]).count();
    if rows.len() < MIN_SLICE_ROWS || pos < MIN_SLICE_CLASS || rows.len() - pos < MIN_SLICE_CLASS {
        return None;
    }
    let r: Vec<f32> = rows.iter().map(|&i| raw[i]).collect();
    let t: Vec<bool> = rows.iter().map(|&i| truth[i]).collect();
    let (platt, threshold) = binary(&r, &t, bias);
    Some(Calibration {
        name: name.to_string(),
        bias,
        platt,
        threshold,
        prior: Some(positive_rate(&t)),
        weights: Vec::new(),
    })
}

/// Share of `true` in `truth` (0 when empty): the base rate a Platt fit on these rows is
/// calibrated to (its intercept makes the mean probability match it).
pub fn positive_rate(truth: &[bool]) -> f32 {
    truth.iter().filter(|&&t| t).count() as f32 / truth.len().max(1) as f32
}

/// The calibration of a slice that pools several data sets (a script): Platt on all its rows,
/// and the threshold that maximizes the *mean* over data sets of their macro-F1, so one large
/// data set with its own notion of "offensive" does not set the threshold for all.
pub fn pooled_slice(
    name: &str,
    rows: &[usize],
    raw: &[f32],
    truth: &[bool],
    datasets: &[usize],
) -> Option<Calibration> {
    let mut c = slice(name, rows, raw, truth, 0.0)?;
    let probs: Vec<f32> = rows
        .iter()
        .map(|&i| crate::model::platt(raw[i], c.platt))
        .collect();
    let mean_f1 = |t: f32| {
        let flags: Vec<bool> = probs.iter().map(|&p| p >= t).collect();
        mean_macro_f1(rows, &flags, truth, datasets)
    };
    let (mut best_t, mut best) = (c.threshold, mean_f1(c.threshold));
    for step in 1..100 {
        let t = step as f32 / 100.0;
        let f = mean_f1(t);
        if f > best {
            (best_t, best) = (t, f);
        }
    }
    c.threshold = best_t;
    Some(c)
}

/// How a multiclass head decides, fit out of fold: its temperature, its class offsets (empty
/// when not used) and the out-of-fold score (F_avg or macro-F1) of that decision rule.
#[derive(Clone, Debug)]
pub struct Decision {
    /// Softmax temperature.
    pub temperature: f32,
    /// Per-class offsets on log-probabilities.
    pub offsets: Vec<f32>,
    /// Dev score of `argmax(log p + offset)`.
    pub score: f64,
}

/// Score (F_avg or macro-F1) of `argmax(raw / t + offset)`, the rule of `Head::decide`.
pub fn decision_score(
    raw: &[f32],
    classes: usize,
    t: f32,
    off: &[f32],
    truth: &[usize],
    names: &[String],
) -> f64 {
    let pred: Vec<usize> = raw
        .chunks_exact(classes)
        .map(|z| {
            let shifted: Vec<f32> = z.iter().zip(off).map(|(v, o)| v / t + o).collect();
            crate::model::argmax(&shifted)
        })
        .collect();
    crate::eval::metrics::classification(truth, &pred, names).primary()
}

/// Per-class offsets on log-probabilities that maximize macro-F1 (F_avg for stance
/// classes), by coordinate ascent over a grid in [-1, 1]; a change is kept only when it gains
/// more than 0.002, so small slices do not buy noise. Returns the offsets and their score.
/// (Log-probabilities differ from `raw / t` by a per-row constant, which no argmax sees.)
pub fn class_offsets(
    raw: &[f32],
    classes: usize,
    temperature: f32,
    truth: &[usize],
    names: &[String],
) -> (Vec<f32>, f64) {
    let score = |off: &[f32]| decision_score(raw, classes, temperature, off, truth, names);
    let mut off = vec![0.0f32; classes];
    let mut best = score(&off);
    for _round in 0..2 {
        for k in 0..classes {
            for step in -10..=10 {
                let mut trial = off.clone();
                trial[k] = step as f32 / 10.0;
                let s = score(&trial);
                if s > best + 0.002 {
                    (best, off) = (s, trial);
                }
            }
        }
    }
    (off, best)
}

/// Finds the softmax temperature that minimizes the log loss (golden-section search on
/// log T in [-3, 3]); `raw` holds `classes` scores per row.
pub fn temperature(raw: &[f32], classes: usize, truth: &[usize]) -> f32 {
    if truth.is_empty() {
        return 1.0;
    }
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp();
        raw.chunks_exact(classes)
            .zip(truth)
            .map(|(z, &y)| {
                let max = z
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
                let sum: f64 = z.iter().map(|&v| (v as f64 / t - max).exp()).sum();
                sum.ln() + max - z[y] as f64 / t
            })
            .sum()
    };
    let (mut lo, mut hi) = (-3.0f64, 3.0f64);
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let a = hi - phi * (hi - lo);
        let b = lo + phi * (hi - lo);
        if nll(a) < nll(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    ((lo + hi) / 2.0).exp() as f32
}

/// The threshold on `probs` that maximizes macro-F1 (the benchmark's measure, and what a
/// site's moderators weigh: both wrong removals and missed abuse), over a grid of 99.
/// (The positive-class F1 optimum of `calibrate::binary` over-flags on a site with few abusive
/// comments, where it loses to the model's own threshold.)
pub fn best_macro_f1_threshold(probs: &[f32], truth: &[bool]) -> f32 {
    let mut best = (0.5, f64::NEG_INFINITY);
    for step in 1..100 {
        let t = step as f32 / 100.0;
        let pred: Vec<bool> = probs.iter().map(|&p| p >= t).collect();
        let f = macro_f1(truth, &pred);
        if f > best.1 {
            best = (t, f);
        }
    }
    best.0
}

/// Macro-F1 of binary predictions.
pub fn macro_f1(truth: &[bool], pred: &[bool]) -> f64 {
    let t: Vec<usize> = truth.iter().map(|&b| usize::from(b)).collect();
    let p: Vec<usize> = pred.iter().map(|&b| usize::from(b)).collect();
    classification(&t, &p, &["no".to_string(), "yes".to_string()]).macro_f1
}

/// The mean over data sets of their macro-F1, for `flags[k]`, the decision on row `rows[k]`:
/// what a pooled threshold is chosen for, so a large data set does not outweigh the others.
pub fn mean_macro_f1(rows: &[usize], flags: &[bool], truth: &[bool], datasets: &[usize]) -> f64 {
    let mut sets: Vec<usize> = rows.iter().map(|&i| datasets[i]).collect();
    sets.sort_unstable();
    sets.dedup();
    let classes = ["no".to_string(), "yes".to_string()];
    let per_set = sets.iter().map(|&d| {
        let (mut truth_d, mut pred_d) = (Vec::new(), Vec::new());
        for (&i, &flag) in rows.iter().zip(flags).filter(|(&i, _)| datasets[i] == d) {
            truth_d.push(usize::from(truth[i]));
            pred_d.push(usize::from(flag));
        }
        crate::eval::metrics::classification(&truth_d, &pred_d, &classes).macro_f1
    });
    per_set.sum::<f64>() / sets.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_is_monotone_increasing() {
        let raw = [-2.0, -1.0, -0.5, 0.2, 0.5, 1.5, 2.0, -0.1];
        let truth = [false, false, true, false, true, true, true, false];
        let (a, b) = platt(&raw, &truth);
        assert!(a < 0.0, "{a} {b}");
        assert!(crate::model::platt(2.0, (a, b)) > crate::model::platt(-2.0, (a, b)));
    }

    #[test]
    fn temperature_grows_for_overconfident_scores() {
        // Scores are huge but only 60 % right: the best temperature softens them.
        let mut raw = Vec::new();
        let mut truth = Vec::new();
        for i in 0..100 {
            raw.extend_from_slice(&[10.0, -10.0]);
            truth.push(if i % 5 < 3 { 0 } else { 1 });
        }
        assert!(temperature(&raw, 2, &truth) > 5.0);
    }
}
