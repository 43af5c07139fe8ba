//! The training config (`training/*.toml`): featurizer, solver, heads, and the data sets with the
//! mapping of each one's label columns onto the heads it informs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;
use crate::features::FeaturizerConfig;
use crate::model::HeadKind;

/// A whole training run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name.
    pub name: String,
    /// Model version; defaults to the training date.
    #[serde(default)]
    pub version: Option<String>,
    /// Root that relative data paths start from (default `../shared/data`).
    #[serde(default = "default_data_root")]
    pub data_root: PathBuf,
    /// Where `train --config` writes the model unless `--out` is given.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Featurizer settings.
    #[serde(default)]
    pub featurizer: FeaturizerConfig,
    /// Optimizer settings.
    #[serde(default)]
    pub solver: SolverConfig,
    /// The heads, in output order.
    pub heads: Vec<HeadSpec>,
    /// The data sets.
    pub datasets: Vec<DatasetSpec>,
}

fn default_data_root() -> PathBuf {
    PathBuf::from("../shared/data")
}

/// Optimizer settings shared by every head.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SolverConfig {
    /// Inverse regularization strengths tried by cross-validation, in order (warm-started).
    pub c: Vec<f64>,
    /// L-BFGS iteration cap per C.
    pub max_iter: usize,
    /// Relative gradient-norm tolerance of the final fit.
    pub tol: f64,
    /// The same for the cross-validation fits, which only rank C values and yield out-of-fold
    /// margins: looser, as those need not be converged to the last digit.
    pub cv_tol: f64,
    /// Weight classes inversely to their frequency (scikit-learn's "balanced").
    pub balanced: bool,
    /// Weight each data set of a pooled head equally (rather than by its row count).
    pub balance_datasets: bool,
    /// Set-aware binary heads: a learned bias per data set during training, and a calibration
    /// (Platt + threshold) per data set and per script, fit out of fold, picked by a comment's `domain`.
    pub domains: bool,
    /// Multiclass heads: tune per-class decision offsets (out of fold) for macro-F1 / F_avg.
    pub class_offsets: bool,
    /// Weight α of a data set's own feature copy against the shared copy (scaled 1 and α, then
    /// both by 1/√(1+α²)); a larger α makes set-specific weights cheaper under the L2 penalty,
    /// leaving the shared weights with what the data sets agree on.
    pub domain_weight: f32,
    /// Conditioned heads: weight β of the shared feature copy against each target's own copy
    /// (scaled β and 1, then both by 1/√(1+β²)). 0 trains one model per target in one table,
    /// as the SemEval baselines do; 1 shares half of every weight across targets.
    pub target_shared: f32,
    /// The learners cross-validation tries. `off`: plain logistic regression (a binary head's
    /// sigmoid; one-vs-rest regressions for a multiclass head, one softmax for a stance head).
    /// `on`: NB-weighted (NBSVM's log-count ratios, folded into the weights), one-vs-rest for a
    /// multiclass head. `auto`: plain and NB-weighted both walk the C grid and the better
    /// out-of-fold score is refit (a stance head: softmax against plain one-vs-rest).
    pub nb: Learners,
    /// Drop hash buckets seen in fewer training comments than this (IDF set to 0).
    pub min_df: u32,
    /// C values in a row that may fail to improve the cross-validated score before the walk up
    /// the grid stops (0: stop at the first that fails).
    pub patience: usize,
    /// Folds of the stratified cross-validation that chooses C and fits the calibration; 0:
    /// 5 for a head with fewer than 10,000 training rows, else 3 (a large head's folds are
    /// large enough to score on, and each fold costs a fit).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
}

impl SolverConfig {
    /// The folds of a head with `rows` training rows (see `folds`).
    pub fn folds_for(&self, rows: usize) -> usize {
        match self.folds {
            0 if rows >= 10_000 => 3,
            0 => 5,
            k => k,
        }
    }
}

impl Default for SolverConfig {
    fn default() -> Self {
        Self {
            c: vec![0.3, 1.0, 3.0, 10.0],
            max_iter: 300,
            tol: 1e-4,
            cv_tol: 1e-3,
            balanced: true,
            balance_datasets: false,
            domains: false,
            class_offsets: true,
            domain_weight: 1.0,
            target_shared: 0.0,
            nb: Learners::Off,
            min_df: 2,
            patience: 1,
            folds: 0,
            seed: 0,
        }
    }
}

/// Which learners a head's cross-validation tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Learners {
    /// Plain features only: one-vs-rest regressions (a stance head: one softmax regression).
    Off,
    /// NB-weighted one-vs-rest regressions only.
    On,
    /// Both; the better cross-validated one is kept.
    Auto,
}

/// One output head.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Head name.
    pub name: String,
    /// Binary (sigmoid) or multiclass (softmax).
    pub kind: HeadKind,
    /// Class names of a multiclass head.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Condition on the comment's target (stance).
    #[serde(default)]
    pub conditioned: bool,
    /// Overrides `solver.c` for this head.
    #[serde(default)]
    pub c: Option<Vec<f64>>,
}

impl HeadSpec {
    /// Weight columns of the head: 1 for a binary head, one per class otherwise.
    pub fn outputs(&self) -> usize {
        match self.kind {
            HeadKind::Binary => 1,
            HeadKind::Multiclass => self.classes.len(),
        }
    }
}

/// One labelled data set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Name (also the folder under `data_root` when paths are not given).
    pub name: String,
    /// Training CSV (default `data_root/name/train.csv`).
    #[serde(default)]
    pub train: Option<PathBuf>,
    /// Dev CSV (default `data_root/name/dev.csv`); "none" to train without dev.
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// Text column.
    #[serde(default = "default_text")]
    pub text: String,
    /// Target column, for conditioned heads.
    #[serde(default)]
    pub target: Option<String>,
    /// Head name → how this data set's columns label it.
    pub labels: BTreeMap<String, LabelSpec>,
    /// How to rebuild the data set's own label column from the heads, for the model card.
    #[serde(default)]
    pub recover: Option<RecoverSpec>,
    /// Rows written to correct a known bias (e.g. benign identity-term sentences), not a site's
    /// comments: they train the shared features only (no domain copy, no calibration of their
    /// own) and are left out of the cross-validation score and the pooled and per-script
    /// calibrations.
    #[serde(default)]
    pub augment: bool,
}

fn default_text() -> String {
    "text".into()
}

/// How one column labels one head.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// The label column.
    pub column: String,
    /// Values meaning "yes" for a binary head.
    #[serde(default)]
    pub positive: Vec<String>,
    /// Values meaning "no" for a binary head (other values leave the row unlabelled).
    #[serde(default)]
    pub negative: Vec<String>,
    /// Value → class name for a multiclass head (empty: values are class names).
    #[serde(default)]
    pub classes: BTreeMap<String, String>,
}

/// Rebuilds a data set's label column from binary heads: the first rule whose head flags wins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverSpec {
    /// The data set's column.
    pub column: String,
    /// (head, value) pairs in priority order.
    pub rules: Vec<(String, String)>,
    /// Value when no rule's head flags.
    pub otherwise: String,
}

impl TrainConfig {
    /// Reads and validates a TOML config.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-references: every label names a head, classes exist, C values are positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: String, reason: String| Err(ConfigError::Invalid { field, reason });
        self.featurizer.validate()?;
        if self.heads.is_empty() {
            return bad("heads".into(), "at least one head is needed".into());
        }
        for c in self
            .solver
            .c
            .iter()
            .chain(self.heads.iter().flat_map(|h| h.c.iter().flatten()))
        {
            if !(c.is_finite() && *c > 0.0) {
                return bad("solver.c".into(), format!("{c} is not a positive number"));
            }
        }
        if !(self.solver.domain_weight.is_finite() && self.solver.domain_weight > 0.0) {
            return bad(
                "solver.domain_weight".into(),
                "must be a positive number".into(),
            );
        }
        if !(self.solver.target_shared.is_finite() && self.solver.target_shared >= 0.0) {
            return bad(
                "solver.target_shared".into(),
                "must be a number >= 0".into(),
            );
        }
        if self.solver.c.is_empty() {
            return bad("solver.c".into(), "give at least one C".into());
        }
        if self.solver.folds != 0 && !(2..=20).contains(&self.solver.folds) {
            return bad(
                "solver.folds".into(),
                format!(
                    "{} is outside 2..=20 (or 0 for automatic)",
                    self.solver.folds
                ),
            );
        }
        for (i, h) in self.heads.iter().enumerate() {
            if h.kind == HeadKind::Multiclass && h.classes.len() < 2 {
                return bad(
                    format!("heads[{i}].classes"),
                    "a multiclass head needs two or more classes".into(),
                );
            }
            if self.heads.iter().filter(|o| o.name == h.name).count() > 1 {
                return bad(
                    format!("heads[{i}].name"),
                    format!("`{}` is used twice", h.name),
                );
            }
        }
        for (d, ds) in self.datasets.iter().enumerate() {
            for (head, spec) in &ds.labels {
                let field = format!("datasets[{d}].labels.{head}");
                let Some(h) = self.heads.iter().find(|h| &h.name == head) else {
                    return bad(field, format!("no head named `{head}`"));
                };
                match h.kind {
                    HeadKind::Binary if spec.positive.is_empty() => {
                        return bad(field, "a binary head needs `positive` values".into())
                    }
                    HeadKind::Multiclass => {
                        if let Some(c) = spec.classes.values().find(|c| !h.classes.contains(c)) {
                            return bad(
                                field,
                                format!("class `{c}` is not a class of head `{head}`"),
                            );
                        }
                    }
                    _ => {}
                }
                if h.conditioned && ds.target.is_none() {
                    return bad(
                        format!("datasets[{d}].target"),
                        format!("head `{head}` is conditioned: name the target column"),
                    );
                }
            }
            if let Some(r) = &ds.recover {
                if let Some((head, _)) = r
                    .rules
                    .iter()
                    .find(|(h, _)| !self.heads.iter().any(|x| &x.name == h))
                {
                    return bad(
                        format!("datasets[{d}].recover.rules"),
                        format!("no head named `{head}`"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Training CSV of a data set.
    pub fn train_path(&self, ds: &DatasetSpec) -> PathBuf {
        ds.train
            .clone()
            .unwrap_or_else(|| self.data_root.join(&ds.name).join("train.csv"))
    }

    /// Dev CSV of a data set, if any.
    pub fn dev_path(&self, ds: &DatasetSpec) -> Option<PathBuf> {
        match &ds.dev {
            Some(p) if p.as_os_str() == "none" => None,
            Some(p) => Some(p.clone()),
            None => Some(self.data_root.join(&ds.name).join("dev.csv")),
        }
    }
}
