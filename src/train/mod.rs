//! Training stage: labelled CSV files → featurized rows → one L2-regularized logistic regression
//! per head, C and the calibration chosen by stratified k-fold cross-validation on the training
//! rows, refit on all of them → a [`Model`]. A dev split, when given, is only scored (through the
//! very path that serves the model), never used to choose anything.

pub mod calibrate;
pub mod config;
pub mod data;
mod design;
pub mod feedback;
pub mod folds;
mod head;
mod learner;
mod select;
pub mod site;
mod site_copy;
pub mod solver;
mod summary;
pub mod traffic;

use std::collections::BTreeMap;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::error::{ConfigError, DataError};
use crate::features::{self, Count, Featurizer};
use crate::model::{Head, HeadKind, Model, ModelInfo};
use config::{HeadSpec, TrainConfig};
use data::Example;
pub use summary::{evaluate_dev, evaluate_dev_as, DevDomain, DevScore};

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

/// A trained model with its cross-validation and dev summaries.
pub struct Trained {
    /// The model (weights quantized exactly as the file stores them).
    pub model: Model,
    /// The chosen settings' out-of-fold score per head (what selection saw).
    pub cv: Vec<CvScore>,
    /// Dev scores per data set and head (empty without dev; never used to choose anything).
    pub dev: Vec<DevScore>,
}

/// One head's cross-validated score: F_avg for stance, macro-F1 otherwise.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CvScore {
    /// Head.
    pub head: String,
    /// The chosen C.
    pub c: f64,
    /// Folds it was cross-validated on.
    pub folds: usize,
    /// Its out-of-fold score.
    pub score: f64,
}

impl Trained {
    /// Mean out-of-fold score over the heads: what `train` compares featurizer variants by.
    pub fn cv_score(&self) -> f64 {
        self.cv.iter().map(|c| c.score).sum::<f64>() / self.cv.len().max(1) as f64
    }
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
    let idf = idf(
        &train.counts,
        featurizer.config().buckets(),
        config.solver.min_df,
    );

    let stride = 1 + config.heads.iter().map(HeadSpec::outputs).sum::<usize>();
    let buckets = featurizer.config().buckets();
    let mut table = vec![0.0f32; buckets * stride];
    for (b, v) in idf.iter().enumerate() {
        table[b * stride] = *v;
    }
    // Two steps per head: cross-validation, then the refit.
    let steps = 2 * config.heads.len();
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
    let mut cv = Vec::new();
    let mut column = 1;
    for (hi, spec) in config.heads.iter().enumerate() {
        let fitted = head::fit_head(config, &featurizer, &idf, &train, hi, &bar)?;
        let outputs = fitted.outputs;
        for (j, &b) in fitted.columns.iter().enumerate() {
            let row = &mut table[b as usize * stride + column..][..outputs];
            row.copy_from_slice(&fitted.weights[j * outputs..][..outputs]);
        }
        training.insert(spec.name.clone(), fitted.record.clone());
        cv.push(fitted.cv.clone());
        let rule = fitted.rule;
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
            platt: rule.platt,
            temperature: rule.temperature,
            offsets: rule.offsets,
            threshold: rule.threshold,
            prior: rule.prior,
            calibrations: rule.calibrations,
            domains: fitted.domains,
            domain_scales: fitted.domain_scales,
            target_scripts: fitted.target_scripts,
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
    // Dev is scored only now, by the finished model: nothing above read it.
    let dev_scores = evaluate_dev(config, &model, &dev_ex);
    model.info.dev_metrics = serde_json::to_value(&dev_scores).unwrap_or_default();
    Ok(Trained {
        model,
        cv,
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

fn today() -> String {
    now_rfc3339()[..10].replace('-', ".")
}

/// Current UTC time as RFC 3339 (civil-from-days, no time-zone database needed). When
/// `SOURCE_DATE_EPOCH` is set (the reproducible-builds convention), that time instead, so two
/// trainings on the same data give byte-identical model files.
pub fn now_rfc3339() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
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
