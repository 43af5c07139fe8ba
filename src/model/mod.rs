//! Model stage: a sparse linear model with several heads over one hashed TF-IDF vector.
//!
//! The weights live in one row-major table with a row per hash bucket: `[idf, w_0, w_1, …]`, one
//! column per head output, so scoring a comment touches one cache line per distinct n-gram for
//! all heads at once. A *binary* head has one column (sigmoid, Platt-calibrated, thresholded);
//! a *multiclass* head has one column per class (softmax with a temperature). A *conditioned*
//! head (stance) also sees every feature crossed with the comment's target, hashed into the same
//! table, plus a bias per target and class: one comment, one target, one prediction.

pub mod explain;
pub mod file;

use serde::{Deserialize, Serialize};

use crate::features::{self, Featurizer, FeaturizerConfig, Scratch as FeatureScratch};

/// How a head turns its column scores into a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// One sigmoid output; the comment is flagged when the calibrated score reaches the threshold.
    Binary,
    /// One softmax output per class; the label is the most probable class.
    Multiclass,
}

/// One head: its place in the weight table and everything learned on dev.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Name in outputs (`offensive`, `stance`, or the label column of a per-data-set model).
    pub name: String,
    /// Binary or multiclass.
    pub kind: HeadKind,
    /// Class names of a multiclass head; `[negative, positive]` names of a binary head.
    pub classes: Vec<String>,
    /// First weight column of this head (column 0 of the table is the IDF).
    pub column: usize,
    /// Targets of a conditioned head; empty for an unconditioned head.
    pub targets: Vec<String>,
    /// Bias per output, or per target and output (`targets.len() × outputs`) when conditioned.
    pub bias: Vec<f32>,
    /// Platt scaling `p = 1 / (1 + exp(a·f + b))` of a binary head (fit with linfa on dev).
    pub platt: (f32, f32),
    /// Softmax temperature of a multiclass head (fit on dev by minimizing log loss).
    pub temperature: f32,
    /// Decision threshold on the calibrated probability of a binary head (F1-optimal on dev).
    pub threshold: f32,
    /// Binary heads: calibrations for a named domain (a data set, e.g. `mpold`) or a script
    /// (`lang:ar`, `lang:latin`), used instead of `platt` / `threshold` when they apply.
    #[serde(default)]
    pub calibrations: Vec<Calibration>,
}

/// A binary head's calibration for one domain or script, fit on that slice of dev.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `mpold`, `olid`, … or `lang:ar`, `lang:latin`.
    pub name: String,
    /// Added to the raw score first (the domain's learned bias; 0 for a script).
    pub bias: f32,
    /// Platt parameters.
    pub platt: (f32, f32),
    /// Decision threshold on the calibrated probability.
    pub threshold: f32,
}

impl Head {
    /// Number of weight columns.
    pub fn outputs(&self) -> usize {
        match self.kind {
            HeadKind::Binary => 1,
            HeadKind::Multiclass => self.classes.len(),
        }
    }

    /// Whether predictions need a target.
    pub fn conditioned(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Index of a target name (exact match first, then case-insensitive).
    pub fn target_index(&self, target: &str) -> Option<usize> {
        self.targets.iter().position(|t| t == target).or_else(|| {
            self.targets
                .iter()
                .position(|t| t.eq_ignore_ascii_case(target.trim()))
        })
    }

    /// The calibration of a binary head for a comment: the domain's if the head has one, else
    /// its script's, else the pooled one.
    pub fn calibration(
        &self,
        domain: Option<&str>,
        script: crate::lang::Script,
    ) -> (f32, (f32, f32), f32) {
        let by_name = |name: &str| self.calibrations.iter().find(|c| c.name == name);
        domain
            .and_then(by_name)
            .or_else(|| by_name(&script.calibration_name()))
            .map_or((0.0, self.platt, self.threshold), |c| {
                (c.bias, c.platt, c.threshold)
            })
    }

    /// Turns raw column scores (already including bias) into probabilities (Platt for binary
    /// heads with the pooled calibration, temperature softmax for multiclass heads).
    pub fn probabilities(&self, raw: &[f32], out: &mut Vec<f32>) {
        out.clear();
        match self.kind {
            HeadKind::Binary => out.push(platt(raw[0], self.platt)),
            HeadKind::Multiclass => {
                let t = self.temperature.max(1e-3);
                let max = raw.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z / t));
                let mut sum = 0.0;
                for &z in raw {
                    let e = (z / t - max).exp();
                    sum += e;
                    out.push(e);
                }
                for p in out.iter_mut() {
                    *p /= sum;
                }
            }
        }
    }
}

/// Platt's sigmoid with linfa's sign convention.
#[inline]
pub fn platt(f: f32, (a, b): (f32, f32)) -> f32 {
    1.0 / (1.0 + (a * f + b).exp())
}

/// Provenance of a model: what it is, when and from what it was trained, how it scored on dev.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name (`default`, or the data set it was trained on).
    pub name: String,
    /// Model version, e.g. `2026.11.24` or a training run id.
    pub version: String,
    /// Training date (RFC 3339, UTC).
    pub created: String,
    /// Data sets the model was trained on.
    pub datasets: Vec<String>,
    /// Dev metrics measured at training time.
    pub dev_metrics: serde_json::Value,
    /// Training settings (C per head, seeds, iterations) for the record.
    pub training: serde_json::Value,
}

/// A loaded model: featurizer, heads and weights.
#[derive(Clone, Debug)]
pub struct Model {
    /// Provenance.
    pub info: ModelInfo,
    /// SHA-256 of the model file (hex), empty for a model that was never saved.
    pub sha256: String,
    featurizer: Featurizer,
    heads: Vec<Head>,
    /// `buckets × stride` row-major: `[idf, weights…]`.
    table: Vec<f32>,
    stride: usize,
    target_keys: Vec<Vec<u64>>,
}

/// Per-thread buffers for scoring; reuse one per worker.
#[derive(Default, Debug)]
pub struct Scratch {
    /// Featurizer buffers.
    pub features: FeatureScratch,
    base: Vec<f32>,
    cross: Vec<f32>,
    probs: Vec<f32>,
}

/// The outcome of one head for one comment.
#[derive(Clone, Debug, PartialEq)]
pub enum HeadOutcome {
    /// A binary head: calibrated score and whether it reaches the threshold.
    Binary {
        /// Calibrated probability of the positive class.
        score: f32,
        /// `score >= threshold`.
        flag: bool,
    },
    /// A multiclass head: the label and every class probability.
    Multiclass {
        /// Index of the chosen class.
        label: usize,
        /// Calibrated probability per class.
        probs: Vec<f32>,
        /// Index of the target, for a conditioned head.
        target: Option<usize>,
    },
    /// A conditioned head left out because the comment's target is missing or unknown.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Model {
    /// Assembles a model from its parts, checking that they fit together.
    pub fn new(
        info: ModelInfo,
        featurizer: FeaturizerConfig,
        heads: Vec<Head>,
        table: Vec<f32>,
    ) -> Result<Self, String> {
        let featurizer = Featurizer::new(featurizer).map_err(|e| e.to_string())?;
        let stride = 1 + heads.iter().map(Head::outputs).sum::<usize>();
        let rows = featurizer.config().buckets();
        if table.len() != rows * stride {
            return Err(format!(
                "weight table has {} values, expected {rows} buckets × {stride} columns",
                table.len()
            ));
        }
        let mut column = 1;
        for h in &heads {
            if h.column != column {
                return Err(format!(
                    "head `{}` starts at column {}, expected {column}",
                    h.name, h.column
                ));
            }
            column += h.outputs();
            let want_bias = h.outputs() * h.targets.len().max(1);
            if h.bias.len() != want_bias {
                return Err(format!(
                    "head `{}` has {} biases, expected {want_bias}",
                    h.name,
                    h.bias.len()
                ));
            }
            let classes_ok = match h.kind {
                HeadKind::Binary => h.classes.len() == 2,
                HeadKind::Multiclass => h.classes.len() >= 2,
            };
            if !classes_ok {
                return Err(format!("head `{}` has {} classes", h.name, h.classes.len()));
            }
            let finite =
                |(b, (p, q), t): (f32, (f32, f32), f32)| [b, p, q, t].iter().all(|v| v.is_finite());
            if !(finite((h.temperature, h.platt, h.threshold))
                && h.calibrations
                    .iter()
                    .all(|c| finite((c.bias, c.platt, c.threshold))))
            {
                return Err(format!(
                    "head `{}` has a non-finite calibration value",
                    h.name
                ));
            }
        }
        if let Some(bad) = table.iter().position(|v| !v.is_finite()) {
            return Err(format!("weight {bad} is not finite"));
        }
        let target_keys = heads
            .iter()
            .map(|h| h.targets.iter().map(|t| featurizer.target_key(t)).collect())
            .collect();
        Ok(Self {
            info,
            sha256: String::new(),
            featurizer,
            heads,
            table,
            stride,
            target_keys,
        })
    }

    /// The featurizer this model was trained with.
    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// The heads, in output order.
    pub fn heads(&self) -> &[Head] {
        &self.heads
    }

    /// Row width of the weight table (1 + all head outputs).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The raw weight table (`buckets × stride`).
    pub fn table(&self) -> &[f32] {
        &self.table
    }

    /// IDF of a bucket.
    #[inline]
    pub fn idf(&self, bucket: u32) -> f32 {
        self.table[bucket as usize * self.stride]
    }

    /// Target hash key of a conditioned head's target.
    pub fn target_key(&self, head: usize, target: usize) -> u64 {
        self.target_keys[head][target]
    }

    /// Scores one comment with every head. `target` feeds conditioned heads.
    pub fn score(
        &self,
        text: &str,
        target: Option<&str>,
        scratch: &mut Scratch,
    ) -> Vec<HeadOutcome> {
        self.score_in(text, target, None, scratch)
    }

    /// Like [`Model::score`], with the comment's domain (the site or data set it comes from),
    /// which selects that domain's calibration where a head has one.
    pub fn score_in(
        &self,
        text: &str,
        target: Option<&str>,
        domain: Option<&str>,
        scratch: &mut Scratch,
    ) -> Vec<HeadOutcome> {
        self.featurizer.count(text, &mut scratch.features);
        let script = crate::lang::script(text);
        let sublinear = self.featurizer.config().sublinear_tf;
        let stride = self.stride;
        let feats = &scratch.features.features;

        // Pass 1: the norm, then every column of every head at once.
        let mut norm = 0.0f32;
        for f in feats {
            let v = features::tf(f.count, sublinear) * self.table[f.bucket as usize * stride];
            norm += v * v;
        }
        let inv_norm = if norm > 0.0 { norm.sqrt().recip() } else { 0.0 };
        scratch.base.clear();
        scratch.base.resize(stride, 0.0);
        for f in feats {
            let row = &self.table[f.bucket as usize * stride..][..stride];
            let v = features::tf(f.count, sublinear) * row[0] * inv_norm;
            for (acc, w) in scratch.base[1..].iter_mut().zip(&row[1..]) {
                *acc += v * w;
            }
        }

        let mut out = Vec::with_capacity(self.heads.len());
        for (hi, head) in self.heads.iter().enumerate() {
            let cols = head.column..head.column + head.outputs();
            let mut raw: Vec<f32> = scratch.base[cols.clone()].to_vec();
            let mut target_index = None;
            if head.conditioned() {
                let Some(t) = target.and_then(|t| head.target_index(t)) else {
                    let reason = match target {
                        None => "no target given".to_string(),
                        Some(t) => {
                            format!("unknown target {t:?} (known: {})", head.targets.join(", "))
                        }
                    };
                    out.push(HeadOutcome::Skipped { reason });
                    continue;
                };
                target_index = Some(t);
                let key = self.target_keys[hi][t];
                scratch.cross.clear();
                scratch.cross.resize(raw.len(), 0.0);
                for f in feats {
                    let v = features::tf(f.count, sublinear)
                        * self.table[f.bucket as usize * stride]
                        * inv_norm;
                    let row = &self.table[self.featurizer.cross(f.bucket, key) as usize * stride..]
                        [cols.clone()];
                    for (acc, w) in scratch.cross.iter_mut().zip(row) {
                        *acc += v * w;
                    }
                }
                for (r, c) in raw.iter_mut().zip(&scratch.cross) {
                    *r = (*r + c) * std::f32::consts::FRAC_1_SQRT_2;
                }
            }
            let bias_at = target_index.unwrap_or(0) * head.outputs();
            for (r, b) in raw.iter_mut().zip(&head.bias[bias_at..]) {
                *r += b;
            }
            out.push(match head.kind {
                HeadKind::Binary => {
                    let (bias, calibration, threshold) = head.calibration(domain, script);
                    let score = platt(raw[0] + bias, calibration);
                    HeadOutcome::Binary {
                        score,
                        flag: score >= threshold,
                    }
                }
                HeadKind::Multiclass => {
                    head.probabilities(&raw, &mut scratch.probs);
                    HeadOutcome::Multiclass {
                        label: argmax(&scratch.probs),
                        probs: scratch.probs.clone(),
                        target: target_index,
                    }
                }
            });
        }
        out
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}
