//! One head's training, in named steps: lay out its columns → design its rows → cross-validate
//! C on stratified folds of the training rows → fit the decision rule and calibration on the
//! out-of-fold margins → refit on every row → fold the bias columns into the head.

use indicatif::ProgressBar;

use crate::features::Featurizer;
use crate::model::{Calibration, HeadKind, MIN_COVERED_ROWS};
use crate::train::calibrate;
use crate::train::config::{Learners, TrainConfig};
use crate::train::design::{design, Columns, Design, Domains, HeadData, UNSET};
use crate::train::folds;
use crate::train::learner::{Learner, OneVsRest, Plain, Weighting};
use crate::train::select::{self, CvData, Scoring, Selection};
use crate::train::solver::Lbfgs;
use crate::train::{Corpus, CvScore, TrainError};

/// What one head's training produced.
pub(super) struct Fitted {
    /// Bucket of every compact feature column.
    pub(super) columns: Vec<u32>,
    /// Weights, `columns.len() × outputs`.
    pub(super) weights: Vec<f32>,
    /// Output columns.
    pub(super) outputs: usize,
    /// Targets of a conditioned head.
    pub(super) targets: Vec<String>,
    /// Per target, the scripts of its training rows (see [`Head::target_scripts`]).
    pub(super) target_scripts: Vec<Vec<String>>,
    /// Bias per output (per target and output for a conditioned head).
    pub(super) bias: Vec<f32>,
    /// How the head decides.
    pub(super) rule: Rule,
    /// Data sets with a learned correction (set-aware heads).
    pub(super) domains: Vec<String>,
    /// Scales of the shared and own feature copies.
    pub(super) domain_scales: (f32, f32),
    /// C, the grid and the cross-validation scores, for the model file's `training` record.
    pub(super) record: serde_json::Value,
    /// The chosen C and its out-of-fold score.
    pub(super) cv: CvScore,
}

/// A head's decision rule and calibration, fit on out-of-fold margins.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Rule {
    /// Binary: pooled Platt parameters.
    pub(super) platt: (f32, f32),
    /// Binary: pooled threshold on the calibrated probability.
    pub(super) threshold: f32,
    /// Binary: share of positives among the rows the pooled Platt was fit on.
    pub(super) prior: Option<f32>,
    /// Multiclass: softmax temperature.
    pub(super) temperature: f32,
    /// Multiclass: per-class offsets.
    pub(super) offsets: Vec<f32>,
    /// Binary: per-domain and per-script calibrations.
    pub(super) calibrations: Vec<Calibration>,
}

impl Default for Rule {
    fn default() -> Self {
        Self {
            platt: (-1.0, 0.0),
            threshold: 0.5,
            prior: None,
            temperature: 1.0,
            offsets: Vec::new(),
            calibrations: Vec::new(),
        }
    }
}

/// Where a head's columns live: feature columns, one bias per target, one per data set.
struct Layout {
    outputs: usize,
    targets: Vec<String>,
    target_cols: Vec<u32>,
    /// Bias column and hash key of every data set of a set-aware head (`None`: not labelled).
    domain_cols: Vec<Option<u32>>,
    domain_keys: Vec<Option<u64>>,
    domain_scales: (f32, f32),
    set_aware: bool,
}

impl Layout {
    /// The layout of head `hi`, with its columns so far (the bias columns).
    fn new(
        config: &TrainConfig,
        featurizer: &Featurizer,
        train: &Corpus,
        hi: usize,
    ) -> (Self, Columns) {
        let spec = &config.heads[hi];
        let outputs = spec.outputs();
        let labelled = |e: &&crate::train::data::Example| e.labels.iter().any(|(h, _)| *h == hi);
        let mut targets: Vec<String> = if spec.conditioned {
            train
                .examples
                .iter()
                .filter(labelled)
                .filter_map(|e| e.target.clone())
                .filter(|t| !t.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        targets.sort();
        targets.dedup();
        let buckets = featurizer.config().buckets();
        // Extra columns above the bucket range (never colliding with a feature): one bias per
        // target of a conditioned head, and one per data set of a set-aware binary head.
        let set_aware = config.solver.domains && spec.kind == HeadKind::Binary;
        let domain_count = if set_aware { config.datasets.len() } else { 0 };
        let mut columns = Columns {
            index: vec![UNSET; buckets + targets.len() + domain_count],
            buckets: Vec::new(),
        };
        let target_cols: Vec<u32> = (0..targets.len())
            .filter_map(|t| columns.of((buckets + t) as u32, true))
            .collect();
        let domain_cols: Vec<Option<u32>> = (0..domain_count)
            .map(|d| {
                // Augmentation rows have no domain of their own: they must move the shared half.
                let has_rows = !config.datasets[d].augment
                    && train
                        .examples
                        .iter()
                        .filter(labelled)
                        .any(|e| e.dataset == d);
                has_rows
                    .then(|| columns.of((buckets + targets.len() + d) as u32, true))
                    .flatten()
            })
            .collect();
        let domain_keys = (0..domain_count)
            .map(|d| domain_cols[d].map(|_| featurizer.target_key(&config.datasets[d].name)))
            .collect();
        // Scales of the shared and the own copy: a data set's (set-aware heads, weight α on the
        // own copy) or a target's (conditioned heads, weight β on the shared copy).
        let domain_scales = if spec.conditioned {
            let beta = config.solver.target_shared;
            let norm = (1.0 + beta * beta).sqrt();
            (beta / norm, 1.0 / norm)
        } else {
            let alpha = config.solver.domain_weight;
            let norm = (1.0 + alpha * alpha).sqrt();
            (1.0 / norm, alpha / norm)
        };
        let layout = Self {
            outputs,
            targets,
            target_cols,
            domain_cols,
            domain_keys,
            domain_scales,
            set_aware,
        };
        (layout, columns)
    }

    fn domains(&self) -> Domains<'_> {
        if self.set_aware {
            Domains::Crossed {
                keys: &self.domain_keys,
                cols: &self.domain_cols,
                scales: self.domain_scales,
            }
        } else {
            Domains::Plain
        }
    }
}

/// Trains head `hi` of `config` on `train` (every labelled row; dev is never read here).
pub(super) fn fit_head(
    config: &TrainConfig,
    featurizer: &Featurizer,
    idf: &[f32],
    train: &Corpus,
    hi: usize,
    bar: &ProgressBar,
) -> Result<Fitted, TrainError> {
    let spec = &config.heads[hi];
    let (layout, mut columns) = Layout::new(config, featurizer, train, hi);
    let hd = HeadData {
        head: hi,
        idf,
        featurizer,
        targets: &layout.targets,
        target_cols: &layout.target_cols,
        target_scales: layout.domain_scales,
    };
    let tr = design(train, &hd, &mut columns, true, layout.domains());
    if tr.rows.is_empty() {
        return Err(TrainError::NoRows(spec.name.clone()));
    }
    // The same rows as scored without a domain, for the pooled and per-script calibration.
    let shared = layout.set_aware.then(|| {
        design(
            train,
            &hd,
            &mut columns,
            false,
            Domains::Shared {
                scales: layout.domain_scales,
            },
        )
    });
    let outputs = layout.outputs;
    let dim = columns.buckets.len();
    let k = config.solver.folds_for(tr.labels.len());
    let folds = folds::stratified(&tr.strata, k, config.solver.seed);
    let weighting = Weighting {
        config,
        per_target: spec.conditioned,
    };
    let plain = Plain {
        design: &tr,
        outputs,
        dim,
        weighting,
    };
    // Unconditioned multiclass heads (a data set's own label column) are fit one-vs-rest, as
    // liblinear does: its binary problems converge several times faster than one softmax.
    let ovr = |nb| OneVsRest {
        design: &tr,
        outputs,
        dim,
        weighting,
        nb,
        alpha: 1.0,
    };
    let (ovr_plain, ovr_nb) = (ovr(false), ovr(true));
    // A stance head (conditioned) under `auto` tries its softmax regression and one-vs-rest
    // regressions (the SemEval baselines' liblinear scheme); NB weighting, which loses on stance
    // in the peer benchmark's cross-validation, only for heads without targets.
    let multiclass = spec.kind == HeadKind::Multiclass;
    let learners: Vec<(&str, &dyn Learner)> = match (config.solver.nb, multiclass, spec.conditioned)
    {
        // A binary head: the plain logistic regression, NB-weighted, or both (`auto`). The NB
        // counts of a data set's own feature copy come from that set's rows alone, since only
        // they hold its columns.
        (Learners::Off, false, _) | (Learners::Off, true, true) => vec![("softmax", &plain)],
        (Learners::On, false, _) => vec![("NB", &ovr_nb)],
        (Learners::Auto, false, _) => vec![("softmax", &plain), ("NB", &ovr_nb)],
        (Learners::Off, true, false) => vec![("one-vs-rest", &ovr_plain)],
        (Learners::On, true, _) => vec![("one-vs-rest NB", &ovr_nb)],
        (Learners::Auto, true, true) => vec![("softmax", &plain), ("one-vs-rest", &ovr_plain)],
        (Learners::Auto, true, false) => {
            vec![("one-vs-rest", &ovr_plain), ("one-vs-rest NB", &ovr_nb)]
        }
    };
    // The rows that are some site's comments: only they choose C and fit calibrations.
    let real: Vec<usize> = (0..tr.labels.len())
        .filter(|&i| !config.datasets[tr.datasets[i]].augment)
        .collect();
    let scored = (real.len() < tr.labels.len()).then_some(real.as_slice());
    let grid = spec.c.clone().unwrap_or_else(|| config.solver.c.clone());
    let lbfgs = Lbfgs {
        max_iter: config.solver.max_iter,
        tol: config.solver.tol,
        ..Lbfgs::default()
    };
    let cv_lbfgs = Lbfgs {
        tol: config.solver.cv_tol,
        ..lbfgs.clone()
    };
    let scoring = Scoring {
        kind: spec.kind,
        classes: &spec.classes,
        offsets: config.solver.class_offsets,
    };
    // Every learner walks the C grid on the same folds; the best out-of-fold score wins.
    let mut best: Option<(&str, &dyn Learner, Selection)> = None;
    for (name, learner) in learners {
        bar.set_message(format!("{}: {k}-fold CV, {name}", spec.name));
        let data = CvData {
            rows: &tr.rows,
            shared: shared.as_ref().map(|s| &s.rows),
            labels: &tr.labels,
            learner,
            folds: &folds,
            outputs,
            dim,
            scored,
        };
        let selection =
            select::cross_validate(&data, &scoring, &grid, &cv_lbfgs, config.solver.patience)
                .ok_or_else(|| TrainError::NoRows(spec.name.clone()))?;
        tracing::info!(head = %spec.name, learner = name, c = selection.c, cv = selection.score, "learner cross-validated");
        if best
            .as_ref()
            .is_none_or(|(_, _, b)| selection.score > b.score)
        {
            best = Some((name, learner, selection));
        }
    }
    let Some((chosen, learner, selection)) = best else {
        return Err(TrainError::NoRows(spec.name.clone()));
    };
    bar.inc(1);
    // Refit on every row with the chosen learner and C.
    bar.set_message(format!("{}: refit C={}", spec.name, selection.c));
    let all: Vec<usize> = (0..tr.labels.len()).collect();
    let refit = learner.fit(&all, selection.c, None, &lbfgs);
    let (w, report) = (refit.weights, refit.report);
    bar.inc(1);
    let (rule, cv_no_domain) = match spec.kind {
        HeadKind::Binary => {
            let (rule, score) =
                binary_rule(config, &tr, &selection, &layout.domain_cols, &w, &real);
            (rule, Some(score))
        }
        HeadKind::Multiclass => (multiclass_rule(&selection), None),
    };
    if let Some(score) = cv_no_domain {
        tracing::info!(head = %spec.name, cv_no_domain = score, "scored out of fold without a domain");
    }
    let bias = fold_bias(&w, dim, outputs, &layout.target_cols);
    let (feature_cols, weights_out) =
        feature_weights(&w, &columns.buckets, outputs, featurizer.config().buckets());
    let record = serde_json::json!({
        "c": selection.c, "cv": selection.score, "cv_no_domain": cv_no_domain,
        "folds": k, "learner": chosen,
        "seed": config.solver.seed, "grid": selection.tried, "train_rows": tr.rows.len(),
        "features": dim, "iterations": report.iterations, "converged": report.converged,
    });
    Ok(Fitted {
        columns: feature_cols,
        weights: weights_out,
        outputs,
        bias,
        rule,
        domains: (0..layout.domain_keys.len())
            .filter(|&d| layout.domain_keys[d].is_some())
            .map(|d| config.datasets[d].name.clone())
            .collect(),
        domain_scales: layout.domain_scales,
        target_scripts: target_scripts(train, hi, &layout.targets),
        targets: layout.targets,
        record,
        cv: CvScore {
            head: spec.name.clone(),
            c: selection.c,
            folds: k,
            score: selection.score,
        },
    })
}

/// Per target of head `hi`, the scripts with at least [`MIN_COVERED_ROWS`] of its labelled
/// training rows: what the model may claim to have seen for that target.
fn target_scripts(train: &Corpus, hi: usize, targets: &[String]) -> Vec<Vec<String>> {
    use crate::lang::Script;
    let mut counts = vec![[0usize; 2]; targets.len()];
    for ex in &train.examples {
        if !ex.labels.iter().any(|(h, _)| *h == hi) {
            continue;
        }
        let Some(t) = ex
            .target
            .as_deref()
            .and_then(|t| targets.iter().position(|x| x == t))
        else {
            continue;
        };
        match crate::lang::script(&ex.text) {
            Script::Arabic => counts[t][0] += 1,
            Script::Latin => counts[t][1] += 1,
            Script::Other => {}
        }
    }
    counts
        .iter()
        .map(|[ar, latin]| {
            [(Script::Arabic, *ar), (Script::Latin, *latin)]
                .into_iter()
                .filter(|&(_, n)| n >= MIN_COVERED_ROWS)
                .map(|(s, _)| s.code().to_string())
                .collect()
        })
        .collect()
}

/// A binary head's rule from out-of-fold margins of the `real` rows (augmentation left out):
/// Platt and a threshold pooled over the data sets (scored without a domain), one calibration
/// per data set (with its domain, whose bias `w` holds) and one per script. Also the mean
/// macro-F1 over data sets of those rows scored as a new site is: the shared copy alone, with
/// its script's calibration (fit on the same margins, so a little optimistic, like `cv`). Rows
/// of a script the head has no calibration for, which scoring skips, count with the pooled one.
fn binary_rule(
    config: &TrainConfig,
    tr: &Design,
    selection: &Selection,
    domain_cols: &[Option<u32>],
    w: &[f64],
    real: &[usize],
) -> (Rule, f64) {
    let truth: Vec<bool> = tr.labels.iter().map(|&y| y == 1).collect();
    let raw = &selection.oof;
    let shared_raw = selection.oof_shared.as_ref().unwrap_or(raw);
    let all = real;
    let (platt, threshold) =
        match calibrate::pooled_slice("", all, shared_raw, &truth, &tr.datasets) {
            Some(c) => (c.platt, c.threshold),
            None => {
                let raw: Vec<f32> = all.iter().map(|&i| shared_raw[i]).collect();
                let truth: Vec<bool> = all.iter().map(|&i| truth[i]).collect();
                calibrate::binary(&raw, &truth, 0.0)
            }
        };
    let real_truth: Vec<bool> = all.iter().map(|&i| truth[i]).collect();
    let prior = Some(calibrate::positive_rate(&real_truth));
    let mut calibrations = Vec::new();
    for (d, col) in domain_cols.iter().enumerate() {
        let Some(col) = col else { continue };
        let rows: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| tr.datasets[i] == d)
            .collect();
        // `raw` already includes the domain's bias; record it for scoring.
        if let Some(mut c) = calibrate::slice(&config.datasets[d].name, &rows, raw, &truth, 0.0) {
            c.bias = w[*col as usize] as f32;
            calibrations.push(c);
        }
    }
    for script in [crate::lang::Script::Arabic, crate::lang::Script::Latin] {
        let rows: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| tr.scripts[i] == script)
            .collect();
        let name = script.calibration_name();
        if let Some(c) = calibrate::pooled_slice(&name, &rows, shared_raw, &truth, &tr.datasets) {
            calibrations.push(c);
        }
    }
    let flags: Vec<bool> = all
        .iter()
        .map(|&i| {
            let name = tr.scripts[i].calibration_name();
            let (p, t) = calibrations
                .iter()
                .find(|c| c.name == name)
                .map_or((platt, threshold), |c| (c.platt, c.threshold));
            crate::model::platt(shared_raw[i], p) >= t
        })
        .collect();
    let no_domain = calibrate::mean_macro_f1(all, &flags, &truth, &tr.datasets);
    let rule = Rule {
        platt,
        threshold,
        prior,
        calibrations,
        ..Rule::default()
    };
    (rule, no_domain)
}

/// A multiclass head's rule: the temperature and offsets that cross-validation fit.
fn multiclass_rule(selection: &Selection) -> Rule {
    let mut rule = Rule::default();
    if let Some(d) = &selection.decision {
        rule.temperature = d.temperature;
        rule.offsets = d.offsets.clone();
    }
    rule
}

/// The head's bias per output; a conditioned head's target columns are folded in, one bias
/// vector per target.
fn fold_bias(w: &[f64], dim: usize, outputs: usize, target_cols: &[u32]) -> Vec<f32> {
    let global = &w[dim * outputs..];
    if target_cols.is_empty() {
        return global.iter().map(|&b| b as f32).collect();
    }
    target_cols
        .iter()
        .flat_map(|&tc| {
            (0..outputs).map(move |k| (global[k] + w[tc as usize * outputs + k]) as f32)
        })
        .collect()
}

/// The feature columns (buckets below `buckets`) with their weights; target and domain bias
/// columns are dropped, as they live in the bias and the calibrations.
fn feature_weights(
    w: &[f64],
    cols: &[u32],
    outputs: usize,
    buckets: usize,
) -> (Vec<u32>, Vec<f32>) {
    let mut columns = Vec::new();
    let mut weights = Vec::new();
    for (j, &b) in cols.iter().enumerate() {
        if (b as usize) < buckets {
            columns.push(b);
            weights.extend(w[j * outputs..][..outputs].iter().map(|&x| x as f32));
        }
    }
    (columns, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::Example;

    fn example(target: &str, labels: Vec<(usize, usize)>) -> Example {
        Example {
            text: "a comment".into(),
            target: Some(target.into()),
            labels,
            raw: None,
            dataset: 0,
        }
    }

    #[test]
    fn layout_of_a_conditioned_head_has_one_bias_column_per_target_and_no_shared_copy() {
        let config: TrainConfig = toml::from_str(
            r#"
name = "t"
[featurizer]
hash_bits = 10
[[heads]]
name = "stance"
kind = "multiclass"
classes = ["FAVOR", "AGAINST", "NONE"]
conditioned = true
[[datasets]]
name = "d"
target = "target"
[datasets.labels.stance]
column = "stance"
"#,
        )
        .expect("config parses");
        let featurizer = Featurizer::new(config.featurizer.clone()).expect("featurizer");
        // Targets come from the labelled rows only, sorted and without repeats.
        let corpus = Corpus {
            examples: vec![
                example("Zoos", vec![(0, 1)]),
                example("Atheism", vec![(0, 0)]),
                example("Zoos", vec![(0, 2)]),
                example("Unlabelled", vec![]),
            ],
            counts: vec![Vec::new(); 4],
        };
        let (layout, columns) = Layout::new(&config, &featurizer, &corpus, 0);
        assert_eq!(layout.outputs, 3);
        assert_eq!(layout.targets, vec!["Atheism", "Zoos"]);
        assert_eq!(
            columns.buckets,
            vec![1024, 1025],
            "bias columns above the buckets"
        );
        assert_eq!(layout.target_cols, vec![0, 1]);
        assert_eq!(
            layout.domain_scales,
            (0.0, 1.0),
            "target_shared = 0: per target only"
        );
        assert!(!layout.set_aware);
    }

    #[test]
    fn fold_bias_adds_each_targets_column_to_the_global_bias() {
        // dim 3, outputs 2: weights of columns 0..3, then the global bias (10, 20).
        let w = [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 20.0];
        assert_eq!(fold_bias(&w, 3, 2, &[]), vec![10.0, 20.0]);
        assert_eq!(fold_bias(&w, 3, 2, &[1, 2]), vec![11.0, 22.0, 13.0, 24.0]);
    }

    #[test]
    fn feature_weights_drop_bias_columns_above_the_bucket_range() {
        let w = [1.0, 2.0, 3.0, 0.0];
        let (cols, weights) = feature_weights(&w, &[7, 1024, 9], 1, 1024);
        assert_eq!(cols, vec![7, 9]);
        assert_eq!(weights, vec![1.0, 3.0]);
    }
}
