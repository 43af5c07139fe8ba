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
#[cfg(test)]
pub(crate) mod fixtures;
mod pages;
pub mod source;
pub mod table;

use serde::{Deserialize, Serialize};

use crate::features::{self, Featurizer, FeaturizerConfig, Scratch as FeatureScratch};
use std::f32::consts::FRAC_1_SQRT_2;

use table::Table;

/// How a head turns its column scores into a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// One sigmoid output; the comment is flagged when the calibrated score reaches the threshold.
    Binary,
    /// One softmax output per class; the label is the most probable class.
    Multiclass,
}

/// One head: its place in the weight table and everything learned in training.
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
    /// Platt scaling `p = 1 / (1 + exp(a·f + b))` of a binary head (fit with linfa on out-of-fold margins).
    pub platt: (f32, f32),
    /// Softmax temperature of a multiclass head (fit on out-of-fold margins by minimizing log loss).
    pub temperature: f32,
    /// Decision threshold on the calibrated probability of a binary head (F1-optimal out of fold).
    pub threshold: f32,
    /// Binary heads: share of positives among the rows `platt` was fit on (`None` in files
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<f32>,
    /// Binary heads: calibrations for a named domain (a data set, e.g. `mpold`) or a script
    /// (`lang:ar`, `lang:latin`), used instead of `platt` / `threshold` when they apply.
    #[serde(default)]
    pub calibrations: Vec<Calibration>,
    /// Set-aware binary heads: the data sets whose own feature copies were trained (EasyAdapt).
    /// Such a head scores the shared features, plus the domain's own copy when the comment's
    /// domain is one of these, each scaled as in `domain_scales`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Multiclass heads: per-class offsets added to the log-probabilities before the argmax,
    /// chosen out of fold for macro-F1 (F_avg for stance) — the multiclass analogue of a binary
    /// head's F1-optimal threshold. Empty means no offsets.
    #[serde(default)]
    pub offsets: Vec<f32>,
    /// Scales of the shared and the own feature copy: a set-aware head's domain copy, or a
    /// conditioned head's target copy (a shared scale of 0: the head was trained per target).
    #[serde(default = "equal_halves")]
    pub domain_scales: (f32, f32),
    /// Conditioned heads: per target (in `targets` order), the scripts its training rows were
    /// written in (`ar`, `latin`), each with at least [`MIN_COVERED_ROWS`] rows. Empty: no claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_scripts: Vec<Vec<String>>,
}

/// Fewest training rows in a script for a stance target to count as trained on it.
pub const MIN_COVERED_ROWS: usize = 30;

fn equal_halves() -> (f32, f32) {
    (FRAC_1_SQRT_2, FRAC_1_SQRT_2)
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
    /// Share of positives among the rows this calibration was fit on (its probabilities are
    /// calibrated to that base rate; `calibrate --traffic` moves them to a site's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<f32>,
    /// A site's own feature weights, `(bucket, weight)` sorted by bucket (empty for every
    /// calibration training fits). `calibrate --feedback` learns them from the site's decisions
    /// when cross-validation on those says they help (`train::site_copy`). Their dot product
    /// with the comment's weighted features is added to the Platt intercept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<(u32, f32)>,
}

impl Calibration {
    /// The site weights' term for a comment's weighted features (0 when there are none).
    pub fn site_term(&self, values: &[(u32, f32)]) -> f32 {
        if self.weights.is_empty() {
            return 0.0;
        }
        values
            .iter()
            .filter_map(|&(bucket, v)| {
                let i = self.weights.binary_search_by_key(&bucket, |w| w.0).ok()?;
                Some(v * self.weights[i].1)
            })
            .sum()
    }
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

    /// The class a multiclass head picks from its probabilities: argmax of log p + offset.
    pub fn decide(&self, probs: &[f32]) -> usize {
        if self.offsets.len() != probs.len() {
            return argmax(probs);
        }
        let shifted: Vec<f32> = probs
            .iter()
            .zip(&self.offsets)
            .map(|(p, o)| p.max(1e-30).ln() + o)
            .collect();
        argmax(&shifted)
    }

    /// The calibration of a binary head for a comment: the domain's if the head has one, else
    /// its script's, else the pooled one.
    pub fn calibration(
        &self,
        domain: Option<&str>,
        script: crate::lang::Script,
    ) -> (f32, (f32, f32), f32) {
        self.parts(self.calibration_entry(domain, script))
    }

    /// (bias, Platt, threshold) of a calibration, or the pooled ones for `None`.
    fn parts(&self, entry: Option<&Calibration>) -> (f32, (f32, f32), f32) {
        entry.map_or((0.0, self.platt, self.threshold), |c| {
            (c.bias, c.platt, c.threshold)
        })
    }

    /// The base rate the calibration [`Head::calibration`] picks is calibrated to.
    pub fn calibration_prior(
        &self,
        domain: Option<&str>,
        script: crate::lang::Script,
    ) -> Option<f32> {
        self.calibration_entry(domain, script)
            .map_or(self.prior, |c| c.prior)
    }

    /// The domain's calibration, else the script's; `None` means the pooled one.
    fn calibration_entry(
        &self,
        domain: Option<&str>,
        script: crate::lang::Script,
    ) -> Option<&Calibration> {
        let by_name = |name: &str| self.calibrations.iter().find(|c| c.name == name);
        // `lang:<code>`, compared without building the string.
        let by_script = || {
            self.calibrations
                .iter()
                .find(|c| c.name.strip_prefix("lang:") == Some(script.code()))
        };
        domain.and_then(by_name).or_else(by_script)
    }

    /// Whether the head has seen text in `script` in training. A binary head tells by its
    /// script calibrations (`lang:ar`, `lang:latin`), which training fits only for a script with
    /// enough labelled rows of both classes; a head without any makes no claim and covers all.
    pub fn covers(&self, script: crate::lang::Script) -> bool {
        let mut seen = self
            .calibrations
            .iter()
            .filter_map(|c| c.name.strip_prefix("lang:"))
            .peekable();
        seen.peek().is_none() || seen.any(|code| code == script.code())
    }

    /// Why a binary head gives no score to a comment in `script`, or `None` when it covers it.
    /// Text without letters (`has_letters` false: emoji, digits, punctuation) is covered by
    /// every head: those n-grams occur in every training set.
    pub fn uncovered(&self, script: crate::lang::Script, has_letters: bool) -> Option<String> {
        if self.kind != HeadKind::Binary || !has_letters || self.covers(script) {
            return None;
        }
        Some(format!(
            "not trained on {} text (trained on: {})",
            script_name(script),
            self.scripts().join(", ")
        ))
    }

    /// Why a conditioned head gives no score for target `t` to a comment in `script`, or
    /// `None` when the target was trained on that script (or makes no claim, or the text has
    /// no letters).
    pub fn target_uncovered(
        &self,
        t: usize,
        script: crate::lang::Script,
        has_letters: bool,
    ) -> Option<String> {
        let seen = self.target_scripts.get(t).filter(|s| !s.is_empty())?;
        if !has_letters || seen.iter().any(|s| s == script.code()) {
            return None;
        }
        Some(format!(
            "target `{}` was not trained on {} text (trained on: {})",
            self.targets[t],
            script_name(script),
            seen.join(", ")
        ))
    }

    /// The scripts a head has seen in training (empty: it makes no claim).
    pub fn scripts(&self) -> Vec<&str> {
        self.calibrations
            .iter()
            .filter_map(|c| c.name.strip_prefix("lang:"))
            .collect()
    }

    /// Turns a multiclass head's raw scores (bias included) into probabilities: softmax at the
    /// head's temperature. (Binary heads go through [`Head::calibration`] and [`platt`].)
    pub fn probabilities(&self, raw: &[f32], out: &mut Vec<f32>) {
        out.clear();
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

/// How a reason names a script: `Arabic-script`, `Latin-script`, `other-script`.
fn script_name(script: crate::lang::Script) -> &'static str {
    match script {
        crate::lang::Script::Arabic => "Arabic-script",
        crate::lang::Script::Latin => "Latin-script",
        crate::lang::Script::Other => "other-script",
    }
}

/// Platt's sigmoid with linfa's sign convention.
#[inline]
pub fn platt(f: f32, (a, b): (f32, f32)) -> f32 {
    1.0 / (1.0 + (a * f + b).exp())
}

/// Provenance of a model: what it is, when and from what it was trained, how it scored on an untouched dev split.
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

/// The largest bias or domain scale a model may hold: no trained value comes near it, and a
/// larger one overflows a score to infinity (then NaN).
pub const MAX_MAGNITUDE: f32 = 1e6;

/// Longest model name or version, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// Whether a model name or version is fit for a header and a metric label: 1 to
/// [`MAX_LABEL_LEN`] visible ASCII characters (no spaces, no control characters).
pub fn label_safe(value: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
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
    /// `buckets × stride` row-major: `[idf, weights…]`, quantized.
    table: Table,
    stride: usize,
    target_keys: Vec<Vec<u64>>,
    domain_keys: Vec<Vec<u64>>,
}

/// Per-thread buffers for scoring; reuse one per worker.
#[derive(Default, Debug)]
pub struct Scratch {
    /// Featurizer buffers.
    pub features: FeatureScratch,
    base: Vec<f32>,
    /// Normalized TF-IDF (bucket, value) of every feature of the last comment.
    values: Vec<(u32, f32)>,
    cross: Vec<f32>,
    probs: Vec<f32>,
    raw: Vec<f32>,
}

impl Scratch {
    /// The whole comment's normalized TF-IDF `(bucket, value)` features, as the last
    /// [`Model::margins_in`] or [`Model::score_in`] computed them (what site weights multiply).
    pub fn comment_features(&self) -> &[(u32, f32)] {
        &self.values
    }
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
    /// Assembles a model from its parts, quantizing an `f32` weight table.
    pub fn new(
        info: ModelInfo,
        featurizer: FeaturizerConfig,
        heads: Vec<Head>,
        table: Vec<f32>,
    ) -> Result<Self, String> {
        if let Some(bad) = table.iter().position(|v| !v.is_finite()) {
            return Err(format!("weight {bad} is not finite"));
        }
        let stride = 1 + heads.iter().map(Head::outputs).sum::<usize>();
        Self::from_table(info, featurizer, heads, Table::quantize(&table, stride))
    }

    /// Assembles a model from its parts, checking that they fit together.
    pub fn from_table(
        info: ModelInfo,
        featurizer: FeaturizerConfig,
        heads: Vec<Head>,
        table: Table,
    ) -> Result<Self, String> {
        let featurizer = Featurizer::new(featurizer).map_err(|e| e.to_string())?;
        let stride = 1 + heads.iter().map(Head::outputs).sum::<usize>();
        let rows = featurizer.config().buckets();
        if table.rows() != rows || table.stride() != stride {
            return Err(format!(
                "weight table has {} buckets × {} columns, expected {rows} × {stride}",
                table.rows(),
                table.stride()
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
            if !(h.offsets.is_empty() || h.offsets.len() == h.outputs()) {
                return Err(format!(
                    "head `{}` has {} class offsets",
                    h.name,
                    h.offsets.len()
                ));
            }
            let sane = |v: &f32| v.is_finite() && v.abs() <= MAX_MAGNITUDE;
            if !h.bias.iter().all(sane) {
                return Err(format!(
                    "head `{}` has a bias that is not a finite number within ±{MAX_MAGNITUDE:e} \
                     (its scores would be NaN or saturated); retrain it",
                    h.name
                ));
            }
            let (shared, own) = h.domain_scales;
            if !(sane(&shared) && sane(&own)) {
                return Err(format!(
                    "head `{}` has a domain scale that is not a finite number within \
                     ±{MAX_MAGNITUDE:e}; retrain it",
                    h.name
                ));
            }
            if !(finite((h.temperature, h.platt, h.threshold))
                && h.offsets.iter().all(|o| o.is_finite())
                && h.calibrations
                    .iter()
                    .all(|c| finite((c.bias, c.platt, c.threshold))))
            {
                return Err(format!(
                    "head `{}` has a non-finite calibration value",
                    h.name
                ));
            }
            for c in &h.calibrations {
                let sorted = c.weights.windows(2).all(|w| w[0].0 < w[1].0);
                let fits = c
                    .weights
                    .iter()
                    .all(|&(b, w)| (b as usize) < table.rows() && sane(&w));
                if !(sorted && fits) {
                    return Err(format!(
                        "head `{}`'s calibration `{}` has site weights that are not sorted \
                         unique buckets of this table with finite values; run \
                         `moderato calibrate` again",
                        h.name, c.name
                    ));
                }
            }
        }
        for (field, value) in [("name", &info.name), ("version", &info.version)] {
            if !label_safe(value) {
                return Err(format!(
                    "model {field} {:?} is not 1 to {MAX_LABEL_LEN} visible ASCII characters \
                     (it goes into a Kafka header of every record and a metric label); \
                     set `{field}` in the training config to such a value and retrain",
                    value.chars().take(MAX_LABEL_LEN).collect::<String>()
                ));
            }
        }
        let target_keys = heads
            .iter()
            .map(|h| h.targets.iter().map(|t| featurizer.target_key(t)).collect())
            .collect();
        let domain_keys = heads
            .iter()
            .map(|h| h.domains.iter().map(|d| featurizer.target_key(d)).collect())
            .collect();
        Ok(Self {
            info,
            sha256: String::new(),
            featurizer,
            heads,
            table,
            stride,
            target_keys,
            domain_keys,
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

    /// The quantized weight table (`buckets × stride`).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// IDF of a bucket.
    #[inline]
    pub fn idf(&self, bucket: u32) -> f32 {
        self.table.get(bucket, 0)
    }

    /// Target hash key of a conditioned head's target.
    pub fn target_key(&self, head: usize, target: usize) -> u64 {
        self.target_keys[head][target]
    }

    /// Hash key of a set-aware head's domain, if the head knows that domain.
    pub fn domain_key(&self, head: usize, domain: Option<&str>) -> Option<u64> {
        let h = &self.heads[head];
        let d = h.domains.iter().position(|x| Some(x.as_str()) == domain)?;
        Some(self.domain_keys[head][d])
    }

    /// Adds `scale × Σ value·weight` over the crossed copies (`key`) of the last comment's
    /// features to `acc`, for the columns `cols`.
    fn add_crossed(
        &self,
        key: u64,
        cols: std::ops::Range<usize>,
        scratch: &mut Scratch,
        acc: &mut [f32],
        scale: f32,
    ) {
        scratch.cross.clear();
        scratch.cross.resize(cols.len(), 0.0);
        for &(bucket, v) in &scratch.values {
            let row = &self.table.row(self.featurizer.cross(bucket, key))[cols.clone()];
            for (a, w) in scratch.cross.iter_mut().zip(row) {
                *a += v * *w as f32;
            }
        }
        let scales = &self.table.scales()[cols];
        for ((r, c), s) in acc.iter_mut().zip(&scratch.cross).zip(scales) {
            *r += c * s * scale;
        }
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
        self.score_scripted(text, crate::lang::script(text), target, domain, scratch)
    }

    /// Like [`Model::score_in`], for a text whose [`crate::lang::script`] the caller already
    /// has (the record writes it too, and it reads every character).
    pub fn score_scripted(
        &self,
        text: &str,
        script: crate::lang::Script,
        target: Option<&str>,
        domain: Option<&str>,
        scratch: &mut Scratch,
    ) -> Vec<HeadOutcome> {
        let has_letters = crate::lang::has_letters(text, script);
        let chunk_max = self.prepare(text, scratch);
        let mut out = Vec::with_capacity(self.heads.len());
        for (hi, head) in self.heads.iter().enumerate() {
            // A head never trained on the comment's script gives no made-up score.
            if let Some(reason) = head.uncovered(script, has_letters) {
                out.push(HeadOutcome::Skipped { reason });
                continue;
            }
            let mut raw = std::mem::take(&mut scratch.raw);
            let target_index =
                match self.head_raw(hi, &chunk_max, target, domain, scratch, &mut raw) {
                    Ok(t) => t,
                    Err(reason) => {
                        out.push(HeadOutcome::Skipped { reason });
                        scratch.raw = raw;
                        continue;
                    }
                };
            out.push(match head.kind {
                HeadKind::Binary => {
                    let entry = head.calibration_entry(domain, script);
                    let (bias, (a, b), threshold) = head.parts(entry);
                    let site = entry.map_or(0.0, |c| c.site_term(&scratch.values));
                    let score = platt(raw[0] + bias, (a, b + site));
                    HeadOutcome::Binary {
                        score,
                        flag: score >= threshold,
                    }
                }
                HeadKind::Multiclass => {
                    // A target trained in another script gives no made-up stance either.
                    if let Some(reason) =
                        target_index.and_then(|t| head.target_uncovered(t, script, has_letters))
                    {
                        out.push(HeadOutcome::Skipped { reason });
                        scratch.raw = raw;
                        continue;
                    }
                    head.probabilities(&raw, &mut scratch.probs);
                    HeadOutcome::Multiclass {
                        label: head.decide(&scratch.probs),
                        probs: scratch.probs.clone(),
                        target: target_index,
                    }
                }
            });
            scratch.raw = raw;
        }
        out
    }

    /// Adds a binary head's calibration for one domain, replacing one of the same name.
    pub fn set_calibration(&mut self, head: usize, calibration: Calibration) -> Result<(), String> {
        let h = self
            .heads
            .get_mut(head)
            .ok_or_else(|| format!("no head {head}"))?;
        if h.kind != HeadKind::Binary {
            return Err(format!("head `{}` is not binary", h.name));
        }
        h.calibrations.retain(|c| c.name != calibration.name);
        h.calibrations.push(calibration);
        Ok(())
    }

    /// Drops a head's calibration named `name`, if it has one.
    pub fn remove_calibration(&mut self, head: usize, name: &str) {
        if let Some(h) = self.heads.get_mut(head) {
            h.calibrations.retain(|c| c.name != name);
        }
    }

    /// Every binary head's raw margin for a comment of `domain` (its bias included, before any
    /// calibration): what a site's own calibration is fit on. `None` for other heads.
    pub fn margins_in(
        &self,
        text: &str,
        domain: Option<&str>,
        scratch: &mut Scratch,
    ) -> Vec<Option<f32>> {
        let chunk_max = self.prepare(text, scratch);
        let mut raw = std::mem::take(&mut scratch.raw);
        let out = (0..self.heads.len())
            .map(|hi| {
                let binary = self.heads[hi].kind == HeadKind::Binary;
                let ok = self.head_raw(hi, &chunk_max, None, domain, scratch, &mut raw);
                (binary && ok.is_ok()).then(|| raw[0])
            })
            .collect();
        scratch.raw = raw;
        out
    }

    /// Featurizes a comment into `scratch.base` (the whole comment), and returns the maximum
    /// over its sentence chunks per column when it is long (empty otherwise).
    fn prepare(&self, text: &str, scratch: &mut Scratch) -> Vec<f32> {
        let mut chunk_max: Vec<f32> = Vec::new();
        let mut scores = std::mem::take(&mut scratch.base);
        self.each_part(text, scratch, |part, scratch| {
            self.score_counts(scratch, &mut scores);
            if part.is_some() && chunk_max.is_empty() {
                chunk_max = scores.clone();
            }
            for (m, c) in chunk_max.iter_mut().zip(&scores) {
                *m = m.max(*c);
            }
        });
        // The whole comment is the last part, so `scores` holds its columns.
        scratch.base = scores;
        chunk_max
    }

    /// Counts every part of `text` a binary head is scored by into `scratch.features`, and calls
    /// `visit` after each: the sentence chunks of a long comment (`Some(i)`), then the whole
    /// comment (`None`, always last, so the scratch ends up holding its features for the
    /// crossed copies). [`Model::prepare`] scores them; `explain` finds the one a head's score
    /// came from.
    fn each_part(
        &self,
        text: &str,
        scratch: &mut Scratch,
        mut visit: impl FnMut(Option<usize>, &mut Scratch),
    ) {
        // Long comments (a paragraph, not a tweet): a binary head also scores every
        // sentence-sized chunk and keeps the highest score, so one hateful sentence in a long
        // prayer is not averaged away by L2 normalization. (Crossed copies — a target's or a
        // known domain's — are added for the whole comment only.)
        if text.chars().count() > LONG_COMMENT {
            let pieces = chunks(text, CHUNK_CHARS);
            // Normally the text is normalized and hashed once, and each chunk counts its slice
            // of the text's n-grams (the same counts as featurizing it alone, in the same
            // order, so the same scores to the bit): this halved the featurizing of a long
            // comment. Text whose chunks could normalize differently alone takes them one by one.
            let hashed = self
                .featurizer
                .hash_pieces(text, &pieces, &mut scratch.features);
            for (i, chunk) in pieces.iter().enumerate() {
                if hashed {
                    self.featurizer.count_piece(i, &mut scratch.features);
                } else {
                    self.featurizer.count(chunk, &mut scratch.features);
                }
                visit(Some(i), scratch);
            }
            if hashed {
                self.featurizer.count_hashed(&mut scratch.features);
            } else {
                self.featurizer.count(text, &mut scratch.features);
            }
        } else {
            self.featurizer.count(text, &mut scratch.features);
        }
        visit(None, scratch);
    }

    /// Head `hi`'s raw scores (bias included) into `raw`, after [`Model::prepare`]; the target
    /// index of a conditioned head, or why the head is skipped.
    fn head_raw(
        &self,
        hi: usize,
        chunk_max: &[f32],
        target: Option<&str>,
        domain: Option<&str>,
        scratch: &mut Scratch,
        raw: &mut Vec<f32>,
    ) -> Result<Option<usize>, String> {
        let head = &self.heads[hi];
        let cols = head.column..head.column + head.outputs();
        let pooled = head.kind == HeadKind::Binary && !chunk_max.is_empty();
        let source = if pooled { chunk_max } else { &scratch.base };
        raw.clear();
        raw.extend_from_slice(&source[cols.clone()]);
        let mut target_index = None;
        if head.conditioned() {
            let Some(t) = target.and_then(|t| head.target_index(t)) else {
                return Err(match target {
                    None => "no target given".to_string(),
                    Some(t) => format!("unknown target {t:?} (known: {})", head.targets.join(", ")),
                });
            };
            target_index = Some(t);
            // The shared copy (0 for a head trained per target) and the target's own.
            let (shared, own) = head.domain_scales;
            raw.iter_mut().for_each(|r| *r *= shared);
            self.add_crossed(self.target_keys[hi][t], cols.clone(), scratch, raw, own);
        } else if !head.domains.is_empty() {
            // Set-aware: shared half always, the domain's own half when it is known.
            let (shared, own) = head.domain_scales;
            raw.iter_mut().for_each(|r| *r *= shared);
            if let Some(key) = self.domain_key(hi, domain) {
                self.add_crossed(key, cols.clone(), scratch, raw, own);
            }
        }
        let bias_at = target_index.unwrap_or(0) * head.outputs();
        for (r, b) in raw.iter_mut().zip(&head.bias[bias_at..]) {
            *r += b;
        }
        Ok(target_index)
    }

    /// Featurizes `text` and writes the normalized TF-IDF dot product of every column into
    /// `out` (index 0 unused, so columns index it directly).
    #[cfg(test)]
    fn accumulate(&self, text: &str, scratch: &mut Scratch, out: &mut Vec<f32>) {
        self.featurizer.count(text, &mut scratch.features);
        self.score_counts(scratch, out);
    }

    /// Writes the normalized TF-IDF dot product of every column with the counts in
    /// `scratch.features` into `out` (index 0 unused, so columns index it directly).
    fn score_counts(&self, scratch: &mut Scratch, out: &mut Vec<f32>) {
        let cfg = self.featurizer.config();
        let counts = &scratch.features.features;
        // Rows are scattered over a table larger than L2, and the IDF lookup is the first touch
        // of each: ask for a row a few features ahead so its cache miss overlaps with the work
        // on the current one. The dot products below then find every row in cache.
        const AHEAD: usize = 8;
        for c in counts.iter().take(AHEAD) {
            self.table.prefetch(c.bucket);
        }
        let mut next = AHEAD;
        features::weigh(
            counts,
            |b| {
                if let Some(c) = counts.get(next) {
                    self.table.prefetch(c.bucket);
                }
                next += 1;
                self.idf(b)
            },
            cfg.sublinear_tf,
            cfg.block_norm,
            &mut scratch.values,
        );
        out.clear();
        out.resize(self.stride, 0.0);
        match self.stride {
            8 => self.dot_rows::<8>(&scratch.values, out),
            4 => self.dot_rows::<4>(&scratch.values, out),
            2 => self.dot_rows::<2>(&scratch.values, out),
            _ => {
                for &(bucket, v) in &scratch.values {
                    let row = self.table.row(bucket);
                    for (acc, w) in out[1..].iter_mut().zip(&row[1..]) {
                        *acc += v * *w as f32;
                    }
                }
            }
        }
        for (acc, s) in out[1..].iter_mut().zip(&self.table.scales()[1..]) {
            *acc *= s;
        }
    }

    /// `out[1..N] += Σ value · row[1..N]` for a table of stride `N` (a fixed width the compiler
    /// vectorizes; column 0, the IDF, is computed alongside and dropped).
    #[inline]
    fn dot_rows<const N: usize>(&self, values: &[(u32, f32)], out: &mut [f32]) {
        let mut acc = [0.0f32; N];
        for &(bucket, v) in values {
            let Ok(row) = <&[i16; N]>::try_from(self.table.row(bucket)) else {
                continue;
            };
            for (a, w) in acc.iter_mut().zip(row) {
                *a += v * *w as f32;
            }
        }
        for (o, a) in out.iter_mut().zip(&acc).skip(1) {
            *o = *a;
        }
    }
}

/// Comments longer than this many characters are also scored chunk by chunk.
pub const LONG_COMMENT: usize = 300;
/// Target size of a chunk, in characters (about a tweet).
pub const CHUNK_CHARS: usize = 140;

/// Splits text at sentence ends (`.!?؟،,;…` and line breaks) into pieces, merging neighbours
/// until each has at least `min_chars` characters (the last may be shorter).
pub fn chunks(text: &str, min_chars: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut chars) = (0, 0);
    for (i, c) in text.char_indices() {
        chars += 1;
        if matches!(
            c,
            '.' | '!' | '?' | '؟' | '،' | ',' | ';' | '؛' | '…' | '\n'
        ) && chars >= min_chars
        {
            let end = i + c.len_utf8();
            out.push(&text[start..end]);
            (start, chars) = (end, 0);
        }
    }
    if start < text.len() {
        let rest = &text[start..];
        match out.last_mut() {
            // Fold a short tail into the previous chunk.
            Some(last) if chars < min_chars / 2 => {
                *last = &text[text.len() - last.len() - rest.len()..]
            }
            _ => out.push(rest),
        }
    }
    out.retain(|c| !c.trim().is_empty());
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::Script;

    fn stance(target_scripts: Vec<Vec<String>>) -> Head {
        Head {
            name: "stance".into(),
            kind: HeadKind::Multiclass,
            classes: vec!["FAVOR".into(), "AGAINST".into(), "NONE".into()],
            column: 1,
            targets: vec!["Covid Vaccine".into(), "Atheism".into(), "Tiny".into()],
            bias: vec![0.0; 9],
            platt: (-1.0, 0.0),
            temperature: 1.0,
            threshold: 0.5,
            prior: None,
            calibrations: Vec::new(),
            domains: Vec::new(),
            offsets: Vec::new(),
            domain_scales: equal_halves(),
            target_scripts,
        }
    }

    /// The long-comment rule as first written: every chunk featurized on its own, then the
    /// whole comment; what [`Model::prepare`] must give to the bit.
    fn prepare_reference(model: &Model, text: &str, scratch: &mut Scratch) -> (Vec<f32>, Vec<f32>) {
        let mut chunk_max = Vec::new();
        if text.chars().count() > LONG_COMMENT {
            let mut chunk_scores = Vec::new();
            for chunk in chunks(text, CHUNK_CHARS) {
                model.accumulate(chunk, scratch, &mut chunk_scores);
                if chunk_max.is_empty() {
                    chunk_max = chunk_scores.clone();
                }
                for (m, c) in chunk_max.iter_mut().zip(&chunk_scores) {
                    *m = m.max(*c);
                }
            }
        }
        let mut base = Vec::new();
        model.accumulate(text, scratch, &mut base);
        for (m, b) in chunk_max.iter_mut().zip(&base) {
            *m = m.max(*b);
        }
        (chunk_max, base)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn long_comments_score_as_their_chunks_featurized_one_by_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.model");
        let model = file::load(&path).expect("the shipped default model");
        let en = "You are a complete IDIOT, and everyone reading your garbage opinions knows it! \
                  Thanks for the thorough reporting @editor; see https://example.com/x?y=1 now. ";
        let ar = "اللهم لا يردّ أمرك، ولا يهزم جندك، سبحانك وبحمدك. اللهم منزل الكتاب، ومجري \
                  السحاب، هازم الأحزاب،اهزم التحالف ؟ مقال ممتاز، لكن الكاتب نسي أن أسعار الخبز ";
        let texts = [
            en.repeat(5),
            ar.repeat(5),
            format!("{}{}", en.repeat(2), ar.repeat(3)),
            // Chunks that meet inside a word, emoji and text that needs NFKC: the slow path.
            "word,".repeat(200),
            format!("{} 😂😂😂👊🇺🇸 ", en).repeat(4),
            format!("{} ＦＵＬＬ ﺑﺴﻢ İ ", ar).repeat(4),
            format!("  {}\n\n{}  \t ", en.repeat(3), "coooool!!!! ".repeat(30)),
            "a. ".repeat(150),
            "ـــ، ".repeat(120),
            en.to_string(),
            "short".to_string(),
        ];
        let (mut fresh, mut reused) = (Scratch::default(), Scratch::default());
        for text in &texts {
            let (want_max, want_base) = prepare_reference(&model, text, &mut fresh);
            let want_values = fresh.values.clone();
            let got_max = model.prepare(text, &mut reused);
            assert_eq!(bits(&got_max), bits(&want_max), "chunk maxima of {text:?}");
            assert_eq!(bits(&reused.base), bits(&want_base), "whole of {text:?}");
            assert_eq!(reused.values, want_values, "features of {text:?}");
            assert_eq!(
                model.score(text, Some("Covid Vaccine"), &mut reused),
                model.score(text, Some("Covid Vaccine"), &mut Scratch::default()),
            );
        }
    }

    #[test]
    fn a_target_trained_in_one_script_skips_the_others_and_says_why() {
        let head = stance(vec![vec!["ar".into()], vec!["latin".into()], vec![]]);
        let why = head
            .target_uncovered(0, Script::Latin, true)
            .expect("an English comment on an Arabic-only target is uncovered");
        assert!(
            why.contains("`Covid Vaccine`") && why.contains("Latin-script") && why.contains("ar"),
            "{why}"
        );
        assert_eq!(head.target_uncovered(0, Script::Arabic, true), None);
        assert_eq!(head.target_uncovered(1, Script::Latin, true), None);
        assert!(head.target_uncovered(1, Script::Arabic, true).is_some());
        // No letters (emoji, digits), or a target too small to claim a script: scored.
        assert_eq!(head.target_uncovered(0, Script::Other, false), None);
        assert_eq!(head.target_uncovered(2, Script::Latin, true), None);
        // A model trained before per-target coverage makes no claim.
        assert_eq!(
            stance(Vec::new()).target_uncovered(0, Script::Latin, true),
            None
        );
    }
}
