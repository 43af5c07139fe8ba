//! Training stage: labelled CSV files → featurized rows → one L2-regularized logistic regression
//! per head (C chosen on dev) → calibration on dev → a [`Model`], evaluated on dev through the
//! very scoring path that serves it.

pub mod calibrate;
pub mod config;
pub mod data;
mod design;
pub mod feedback;
pub mod solver;
mod summary;

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::error::{ConfigError, DataError};
use crate::eval::metrics;
use crate::features::{self, Count, Featurizer};
use crate::model::{Head, HeadKind, Model, ModelInfo};
use config::TrainConfig;
use data::Example;
use design::{design, Columns, Design, Domains, HeadData, UNSET};
use solver::{Lbfgs, Problem};
pub use summary::{evaluate_dev, DevScore};

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A data problem.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A head has no labelled training rows.
    #[error("head `{0}` has no labelled training rows: map a data set's column onto it")]
    NoRows(String),
    /// The trained parts do not assemble into a model (a bug).
    #[error("assembling the model failed: {0}")]
    Assemble(String),
}

/// A trained model with its dev summary.
pub struct Trained {
    /// The model (weights quantized exactly as the file stores them).
    pub model: Model,
    /// Dev scores per data set and head.
    pub dev: Vec<DevScore>,
}

/// Featurized training data shared by all heads.
pub(crate) struct Corpus {
    examples: Vec<Example>,
    counts: Vec<Vec<Count>>,
}

/// Trains every head of `config`; `progress` draws a progress bar on stderr.
pub fn train(config: &TrainConfig, progress: bool) -> Result<Trained, TrainError> {
    config.validate()?;
    let featurizer = Featurizer::new(config.featurizer.clone())?;
    let train_ex = load_dev_or_train(config, false)?;
    let dev_ex = load_dev_or_train(config, true)?;
    tracing::info!(train = train_ex.len(), dev = dev_ex.len(), "loaded data");
    let train = featurize(&featurizer, train_ex);
    let dev = featurize(&featurizer, dev_ex);
    let idf = idf(
        &train.counts,
        featurizer.config().buckets(),
        config.solver.min_df,
    );

    let stride = 1 + config
        .heads
        .iter()
        .map(|h| match h.kind {
            HeadKind::Binary => 1,
            HeadKind::Multiclass => h.classes.len(),
        })
        .sum::<usize>();
    let buckets = featurizer.config().buckets();
    let mut table = vec![0.0f32; buckets * stride];
    for (b, v) in idf.iter().enumerate() {
        table[b * stride] = *v;
    }
    let steps: usize = config
        .heads
        .iter()
        .map(|h| h.c.as_ref().unwrap_or(&config.solver.c).len())
        .sum();
    let bar = if progress {
        ProgressBar::new(steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut heads = Vec::new();
    let mut training = BTreeMap::new();
    let mut column = 1;
    for (hi, spec) in config.heads.iter().enumerate() {
        let fitted = fit_head(config, &featurizer, &idf, &train, &dev, hi, &bar)?;
        let outputs = fitted.outputs;
        for (j, &b) in fitted.columns.iter().enumerate() {
            let row = &mut table[b as usize * stride + column..][..outputs];
            row.copy_from_slice(&fitted.weights[j * outputs..][..outputs]);
        }
        training.insert(spec.name.clone(), fitted.record.clone());
        heads.push(Head {
            name: spec.name.clone(),
            kind: spec.kind,
            classes: match spec.kind {
                HeadKind::Binary => vec!["no".into(), "yes".into()],
                HeadKind::Multiclass => spec.classes.clone(),
            },
            column,
            targets: fitted.targets,
            bias: fitted.bias,
            platt: fitted.platt,
            temperature: fitted.temperature,
            offsets: fitted.offsets,
            threshold: fitted.threshold,
            calibrations: fitted.calibrations,
            domains: fitted.domains,
            domain_scales: fitted.domain_scales,
        });
        column += outputs;
    }
    bar.finish_and_clear();
    // `Model::new` quantizes the table exactly as the file stores it, so the dev scores below
    // are those of the saved model.
    let info = ModelInfo {
        name: config.name.clone(),
        version: config.version.clone().unwrap_or_else(today),
        created: now_rfc3339(),
        datasets: config.datasets.iter().map(|d| d.name.clone()).collect(),
        dev_metrics: serde_json::Value::Null,
        training: serde_json::to_value(&training).unwrap_or_default(),
    };
    let mut model = Model::new(info, featurizer.config().clone(), heads, table)
        .map_err(TrainError::Assemble)?;
    let dev_scores = evaluate_dev(config, &model, &dev.examples);
    model.info.dev_metrics = serde_json::to_value(&dev_scores).unwrap_or_default();
    Ok(Trained {
        model,
        dev: dev_scores,
    })
}

/// Loads the dev (or train) split of every data set of a config.
pub fn load_dev_or_train(config: &TrainConfig, dev: bool) -> Result<Vec<Example>, DataError> {
    let mut out = Vec::new();
    for (d, ds) in config.datasets.iter().enumerate() {
        let path = if dev {
            config.dev_path(ds)
        } else {
            Some(config.train_path(ds))
        };
        if let Some(path) = path {
            out.extend(data::load_split(config, d, &path)?);
        }
    }
    Ok(out)
}

fn featurize(featurizer: &Featurizer, examples: Vec<Example>) -> Corpus {
    let counts = examples
        .par_iter()
        .map_init(features::Scratch::default, |s, ex| {
            featurizer.count(&ex.text, s);
            s.features.clone()
        })
        .collect();
    Corpus { examples, counts }
}

/// Smoothed IDF as scikit-learn computes it, `ln((1+n)/(1+df)) + 1`; 0 for buckets seen in
/// fewer than `min_df` comments, so rare or unseen n-grams neither get a weight nor dilute a
/// comment's norm (like a term outside scikit-learn's vocabulary).
fn idf(counts: &[Vec<Count>], buckets: usize, min_df: u32) -> Vec<f32> {
    let mut df = vec![0u32; buckets];
    for doc in counts {
        for c in doc {
            df[c.bucket as usize] += 1;
        }
    }
    let n = counts.len() as f64;
    df.iter()
        .map(|&d| {
            if d == 0 || d < min_df {
                0.0
            } else {
                (((1.0 + n) / (1.0 + d as f64)).ln() + 1.0) as f32
            }
        })
        .collect()
}

/// What one head's training produced.
struct Fitted {
    /// Bucket of every compact feature column.
    columns: Vec<u32>,
    /// Weights, `columns.len() × outputs`.
    weights: Vec<f32>,
    outputs: usize,
    targets: Vec<String>,
    bias: Vec<f32>,
    platt: (f32, f32),
    temperature: f32,
    threshold: f32,
    offsets: Vec<f32>,
    calibrations: Vec<crate::model::Calibration>,
    domains: Vec<String>,
    domain_scales: (f32, f32),
    record: serde_json::Value,
}

fn fit_head(
    config: &TrainConfig,
    featurizer: &Featurizer,
    idf: &[f32],
    train: &Corpus,
    dev: &Corpus,
    hi: usize,
    bar: &ProgressBar,
) -> Result<Fitted, TrainError> {
    let spec = &config.heads[hi];
    let outputs = match spec.kind {
        HeadKind::Binary => 1,
        HeadKind::Multiclass => spec.classes.len(),
    };
    let classes = outputs.max(2);
    let targets: Vec<String> = if spec.conditioned {
        let mut t: Vec<String> = train
            .examples
            .iter()
            .filter(|e| e.labels.iter().any(|(h, _)| *h == hi))
            .filter_map(|e| e.target.clone())
            .filter(|t| !t.is_empty())
            .collect();
        t.sort();
        t.dedup();
        t
    } else {
        Vec::new()
    };
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
    let labelled = |d: usize| {
        train
            .examples
            .iter()
            .any(|e| e.dataset == d && e.labels.iter().any(|(h, _)| *h == hi))
    };
    let domain_cols: Vec<Option<u32>> = (0..domain_count)
        .map(|d| {
            labelled(d)
                .then(|| columns.of((buckets + targets.len() + d) as u32, true))
                .flatten()
        })
        .collect();
    let domain_keys: Vec<Option<u64>> = (0..domain_count)
        .map(|d| domain_cols[d].map(|_| featurizer.target_key(&config.datasets[d].name)))
        .collect();
    let alpha = config.solver.domain_weight;
    let domain_scales = (
        1.0 / (1.0 + alpha * alpha).sqrt(),
        alpha / (1.0 + alpha * alpha).sqrt(),
    );
    let crossed = if set_aware {
        Domains::Crossed {
            keys: &domain_keys,
            cols: &domain_cols,
            scales: domain_scales,
        }
    } else {
        Domains::Plain
    };
    let hd = HeadData {
        head: hi,
        idf,
        featurizer,
        targets: &targets,
        target_cols: &target_cols,
    };
    let tr = design(train, &hd, &mut columns, true, crossed);
    if tr.rows.is_empty() {
        return Err(TrainError::NoRows(spec.name.clone()));
    }
    // Dev as scored with each row's domain (C selection, per-domain calibration) and, for a
    // set-aware head, without one (pooled and per-script calibration).
    let dv = design(dev, &hd, &mut columns, false, crossed);
    let dv_shared = set_aware.then(|| {
        design(
            dev,
            &hd,
            &mut columns,
            false,
            Domains::Shared {
                scales: domain_scales,
            },
        )
    });
    let weights = row_weights(&tr, classes, config);
    let problem = Problem {
        rows: &tr.rows,
        labels: &tr.labels,
        weights: &weights,
        outputs,
        dim: columns.buckets.len(),
    };
    let grid = spec.c.clone().unwrap_or_else(|| config.solver.c.clone());
    let lbfgs = Lbfgs {
        max_iter: config.solver.max_iter,
        tol: config.solver.tol,
        ..Lbfgs::default()
    };
    let dev_problem = Problem {
        rows: &dv.rows,
        labels: &dv.labels,
        weights: &[],
        outputs,
        dim: columns.buckets.len(),
    };
    let mut best: Option<Candidate> = None;
    let mut warm = None;
    let mut tried = Vec::new();
    let mut worse = 0;
    for &c in &grid {
        bar.set_message(format!("{} C={c}", spec.name));
        let (w, report) = problem.solve(c, warm.take(), &lbfgs);
        let (score, decision) = if dv.rows.is_empty() {
            (0.0, None)
        } else {
            let raw = margins(&dev_problem, &w);
            selection_score(
                &raw,
                &dv.labels,
                outputs,
                spec.kind,
                &spec.classes,
                config.solver.class_offsets,
            )
        };
        tracing::info!(head = %spec.name, c, iterations = report.iterations, converged = report.converged, dev = score, "solved");
        tried.push(serde_json::json!({"c": c, "dev": score, "iterations": report.iterations, "converged": report.converged}));
        if best.as_ref().is_none_or(|b| score > b.score) {
            best = Some(Candidate {
                score,
                c,
                w: w.clone(),
                report,
                decision,
            });
            worse = 0;
        } else {
            worse += 1;
        }
        warm = Some(w);
        bar.inc(1);
        if worse > config.solver.patience || dv.rows.is_empty() {
            bar.inc((grid.len() - tried.len()) as u64);
            break;
        }
    }
    let Some(Candidate {
        c,
        w,
        report,
        decision,
        ..
    }) = best
    else {
        return Err(TrainError::NoRows(spec.name.clone()));
    };
    let dim = columns.buckets.len();
    let (mut platt, mut temperature, mut threshold) = ((-1.0, 0.0), 1.0, 0.5);
    let mut offsets = Vec::new();
    let mut calibrations = Vec::new();
    if !dv.rows.is_empty() {
        let raw = margins(&dev_problem, &w);
        match spec.kind {
            HeadKind::Binary => {
                let truth: Vec<bool> = dv.labels.iter().map(|&y| y == 1).collect();
                let all: Vec<usize> = (0..dv.labels.len()).collect();
                let shared_raw = match &dv_shared {
                    Some(shared) => {
                        let p = Problem {
                            rows: &shared.rows,
                            ..dev_problem
                        };
                        margins(&p, &w)
                    }
                    None => raw.clone(),
                };
                (platt, threshold) =
                    match calibrate::pooled_slice("", &all, &shared_raw, &truth, &dv.datasets) {
                        Some(c) => (c.platt, c.threshold),
                        None => calibrate::binary(&shared_raw, &truth, 0.0),
                    };
                for (d, col) in domain_cols.iter().enumerate() {
                    let Some(col) = col else { continue };
                    let rows: Vec<usize> = (0..dv.labels.len())
                        .filter(|&i| dv.datasets[i] == d)
                        .collect();
                    // `raw` already includes the domain's bias; record it for scoring.
                    if let Some(mut c) =
                        calibrate::slice(&config.datasets[d].name, &rows, &raw, &truth, 0.0)
                    {
                        c.bias = w[*col as usize] as f32;
                        calibrations.push(c);
                    }
                }
                for script in [crate::lang::Script::Arabic, crate::lang::Script::Latin] {
                    let rows: Vec<usize> = (0..dv.labels.len())
                        .filter(|&i| dv.scripts[i] == script)
                        .collect();
                    let name = script.calibration_name();
                    if let Some(c) =
                        calibrate::pooled_slice(&name, &rows, &shared_raw, &truth, &dv.datasets)
                    {
                        calibrations.push(c);
                    }
                }
            }
            // Fit on dev when C was selected, with the same weights.
            HeadKind::Multiclass => {
                if let Some(d) = decision {
                    (temperature, offsets) = (d.temperature, d.offsets);
                }
            }
        }
    }
    let global_bias = &w[dim * outputs..];
    let w = &w;
    let bias = if targets.is_empty() {
        global_bias.iter().map(|&b| b as f32).collect()
    } else {
        target_cols
            .iter()
            .flat_map(|&tc| {
                (0..outputs).map(move |k| (global_bias[k] + w[tc as usize * outputs + k]) as f32)
            })
            .collect()
    };
    // Drop the target and domain bias columns from the feature weights: they are folded into
    // `bias` and the calibrations.
    let feature_cols: Vec<(usize, u32)> = columns
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, &b)| (b as usize) < buckets)
        .map(|(j, &b)| (j, b))
        .collect();
    let mut weights_out = Vec::with_capacity(feature_cols.len() * outputs);
    for &(j, _) in &feature_cols {
        weights_out.extend(w[j * outputs..][..outputs].iter().map(|&x| x as f32));
    }
    Ok(Fitted {
        columns: feature_cols.iter().map(|&(_, b)| b).collect(),
        weights: weights_out,
        outputs,
        targets,
        bias,
        platt,
        temperature,
        threshold,
        offsets,
        calibrations,
        domains: (0..domain_count)
            .filter(|&d| domain_keys[d].is_some())
            .map(|d| config.datasets[d].name.clone())
            .collect(),
        domain_scales,
        record: serde_json::json!({
            "c": c, "grid": tried, "train_rows": tr.rows.len(), "dev_rows": dv.rows.len(),
            "features": dim, "iterations": report.iterations, "converged": report.converged,
        }),
    })
}

/// Sample weights: inverse class frequency ("balanced") and, optionally, equal data set mass.
fn row_weights(d: &Design, classes: usize, config: &TrainConfig) -> Vec<f32> {
    let n = d.labels.len() as f64;
    let mut per_class = vec![0usize; classes];
    for &y in &d.labels {
        per_class[y as usize] += 1;
    }
    let mut per_set: BTreeMap<usize, usize> = BTreeMap::new();
    for &s in &d.datasets {
        *per_set.entry(s).or_default() += 1;
    }
    d.labels
        .iter()
        .zip(&d.datasets)
        .map(|(&y, s)| {
            let mut w = 1.0;
            if config.solver.balanced {
                w *= n / (classes as f64 * per_class[y as usize].max(1) as f64);
            }
            if config.solver.balance_datasets {
                w *= n / (per_set.len() as f64 * per_set[s] as f64);
            }
            w as f32
        })
        .collect()
}

/// Raw scores of every row (`outputs` per row).
fn margins(p: &Problem, w: &[f64]) -> Vec<f32> {
    let mut out = Vec::with_capacity(p.rows.len() * p.outputs);
    let mut z = vec![0.0; p.outputs];
    for i in 0..p.rows.len() {
        p.margins(w, i, &mut z);
        out.extend(z.iter().map(|&v| v as f32));
    }
    out
}

/// The best C so far: its dev score, weights, solver report and multiclass decision rule.
struct Candidate {
    score: f64,
    c: f64,
    w: Vec<f64>,
    report: solver::SolveReport,
    decision: Option<calibrate::Decision>,
}

/// The dev score that picks C, with the decision rule the head will use: the best threshold for
/// binary heads; for multiclass heads the fitted temperature and class offsets (returned, so
/// the chosen C's need not be fit again), scored by F_avg or macro-F1.
fn selection_score(
    raw: &[f32],
    labels: &[u32],
    outputs: usize,
    kind: HeadKind,
    classes: &[String],
    offsets: bool,
) -> (f64, Option<calibrate::Decision>) {
    match kind {
        HeadKind::Binary => {
            let truth: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
            let (t, _) = metrics::best_f1_threshold(raw, &truth);
            let pred: Vec<usize> = raw.iter().map(|&f| usize::from(f >= t)).collect();
            let truth: Vec<usize> = labels.iter().map(|&y| y as usize).collect();
            let classes = ["no".into(), "yes".into()];
            (
                metrics::classification(&truth, &pred, &classes).macro_f1,
                None,
            )
        }
        HeadKind::Multiclass => {
            let truth: Vec<usize> = labels.iter().map(|&y| y as usize).collect();
            let d = calibrate::multiclass(raw, outputs, &truth, classes, offsets);
            (d.score, Some(d))
        }
    }
}

fn today() -> String {
    now_rfc3339()[..10].replace('-', ".")
}

/// Current UTC time as RFC 3339 (civil-from-days, no time-zone database needed).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
