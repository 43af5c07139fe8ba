//! `moderato train`: one head from a CSV, or every head of a config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use moderato::csv_file::CsvFile;
use moderato::model::{file, HeadKind};
use moderato::train::config::{
    DatasetSpec, HeadSpec, LabelSpec, Learners, SolverConfig, TrainConfig,
};
use moderato::train::{self, DevScore};

/// Arguments of `moderato train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training config (TOML) describing heads and data sets.
    #[arg(long, conflicts_with_all = ["data", "label"])]
    config: Option<PathBuf>,
    /// Training CSV (one-head mode).
    #[arg(long, requires = "label")]
    data: Option<PathBuf>,
    /// Dev CSV (one-head mode): scored once after training and printed; never used to choose
    /// anything (C, offsets and calibration come from cross-validation on --data).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Label column; the head gets its name and its values as classes.
    #[arg(long)]
    label: Option<String>,
    /// Target column: condition the head on it (stance).
    #[arg(long)]
    target: Option<String>,
    /// Text column.
    #[arg(long, default_value = "text")]
    text_col: String,
    /// Inverse regularization strengths to try by cross-validation (comma-separated; replaces
    /// every head's).
    #[arg(long, value_delimiter = ',')]
    c: Vec<f64>,
    /// Number of hash buckets as a power of two (one-head mode; default 20).
    #[arg(long)]
    hash_bits: Option<u8>,
    /// Shortest character n-gram (one-head mode; default 1).
    #[arg(long)]
    char_min: Option<u8>,
    /// Normalize character and word n-grams as two blocks (`featurizer.block_norm`): `on`,
    /// `off`, `auto` (one-head mode: cross-validate both at the chosen C, keep the better), or
    /// `default` (the config's; in one-head mode `auto` below 10,000 training rows, else off).
    #[arg(long, value_enum, default_value = "default")]
    block_norm: Choice,
    /// NB-weighted one-vs-rest regressions (NBSVM): `on`, `off`, `auto` (one-head mode: plain
    /// and NB-weighted one-vs-rest walk the C grid by cross-validation, the better is refit;
    /// with --target, softmax and plain one-vs-rest), or `default` (the config's).
    #[arg(long, value_enum, default_value = "auto")]
    nb: Choice,
    /// Override the data root of a config (default: the config's, `../shared/data`).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Where to write the model.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Moderator decisions collected by `serve --feedback-topic` (JSONL): trained on as one
    /// more data set, `feedback` (with --config).
    #[arg(long, requires = "config")]
    feedback: Option<PathBuf>,
    /// Leave a data set of the config out (repeatable): how a site the model has never seen
    /// is simulated (`benches/newsite/run.sh`).
    #[arg(long, value_name = "NAME", requires = "config")]
    skip_dataset: Vec<String>,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs `moderato train`.
pub fn run(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let (mut config, out, rows) = match (&a.config, &a.data) {
        (Some(path), _) => {
            let config = TrainConfig::from_file(path)?;
            let out = a
                .out
                .clone()
                .or_else(|| config.out.clone())
                .unwrap_or_else(|| PathBuf::from(format!("models/{}.model", config.name)));
            (config, out, 0)
        }
        (None, Some(data)) => {
            let out = a.out.clone().context("--out is required with --data")?;
            let (config, rows) = one_head_config(&a, data)?;
            (config, out, rows)
        }
        (None, None) => bail!("give --config FILE, or --data TRAIN.csv --label COLUMN --out MODEL"),
    };
    if let Some(root) = &a.data_root {
        config.data_root = root.clone();
    }
    for name in &a.skip_dataset {
        let before = config.datasets.len();
        config.datasets.retain(|d| &d.name != name);
        if config.datasets.len() == before {
            let known: Vec<&str> = config.datasets.iter().map(|d| d.name.as_str()).collect();
            bail!(
                "--skip-dataset {name}: the config has no such data set (it has {})",
                known.join(", ")
            );
        }
    }
    if !a.skip_dataset.is_empty() {
        // A head that only the skipped sets labelled has nothing left to learn from.
        let labelled = |h: &HeadSpec| {
            config
                .datasets
                .iter()
                .any(|d| d.labels.contains_key(&h.name))
        };
        for h in config.heads.iter().filter(|h| !labelled(h)) {
            eprintln!("head {} has no data set left; it is left out", h.name);
        }
        let kept: Vec<HeadSpec> = config
            .heads
            .iter()
            .filter(|h| labelled(h))
            .cloned()
            .collect();
        config.heads = kept;
    }
    if let Some(bits) = a.hash_bits {
        config.featurizer.hash_bits = bits;
    }
    if let Some(min) = a.char_min {
        config.featurizer.char_min = min;
    }
    // Kept alive until training is done: the feedback CSV lives in it.
    let feedback_dir = tempfile_dir()?;
    if let Some(path) = &a.feedback {
        let stats = train::feedback::add_feedback(&mut config, path, feedback_dir.path())?;
        eprintln!(
            "feedback {}: {} decisions → {} comments ({} without text, {} invalid, skipped)",
            path.display(),
            stats.lines,
            stats.comments,
            stats.without_text,
            stats.invalid
        );
    }
    let one_head = a.config.is_none();
    let block_norms = match (a.block_norm, one_head) {
        (Choice::On, _) => vec![true],
        (Choice::Off, _) => vec![false],
        (Choice::Auto, true) => vec![false, true],
        (Choice::Auto, false) => vec![config.featurizer.block_norm],
        // One-head default: cross-validated on small data sets, where it costs a few seconds;
        // a joint norm from 10,000 rows, where a second cross-validation would double the time.
        (Choice::Default, true) if rows < 10_000 => vec![false, true],
        (Choice::Default, _) => vec![config.featurizer.block_norm],
    };
    config.solver.nb = match (a.nb, one_head) {
        (Choice::On, _) => Learners::On,
        (Choice::Off, _) => Learners::Off,
        (Choice::Auto, true) => Learners::Auto,
        (Choice::Auto, false) | (Choice::Default, _) => config.solver.nb,
    };
    if !a.c.is_empty() {
        config.solver.c = a.c.clone();
        config.heads.iter_mut().for_each(|h| h.c = None);
    }
    let started = std::time::Instant::now();
    let trained = best_variant(&config, &block_norms, !a.quiet)?;
    let mut model = trained.model;
    file::save(&mut model, &out)?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "trained {} in {:.1}s → {} ({:.1} MB, sha256 {})",
        config.name,
        started.elapsed().as_secs_f64(),
        out.display(),
        size as f64 / 1e6,
        &model.sha256[..12.min(model.sha256.len())]
    );
    for cv in &trained.cv {
        eprintln!(
            "{}: C={} chosen by {}-fold cross-validation on the training rows (out-of-fold score {:.4})",
            cv.head, cv.c, cv.folds, cv.score
        );
    }
    if trained.dev.is_empty() {
        eprintln!("no dev split given: nothing to evaluate on");
    } else {
        eprintln!("dev (untouched by selection):");
        print!("{}", summary(&trained.dev));
    }
    Ok(ExitCode::SUCCESS)
}

/// A setting that is on, off, or chosen by cross-validation.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Choice {
    /// On.
    On,
    /// Off.
    Off,
    /// Decided by cross-validation (one-head mode), else the config's setting.
    Auto,
    /// The config's setting (for --config, or the built-in one-head default).
    Default,
}

/// Trains every featurizer variant and keeps the best cross-validated one. The first walks
/// the C grid; the others are cross-validated at the C it chose, which keeps training to one
/// grid walk per learner however many variants there are.
fn best_variant(
    base: &TrainConfig,
    block_norms: &[bool],
    progress: bool,
) -> anyhow::Result<train::Trained> {
    let mut best: Option<train::Trained> = None;
    let mut walked: Option<Vec<f64>> = None;
    for &block_norm in block_norms {
        let mut config = base.clone();
        config.featurizer.block_norm = block_norm;
        if let Some(chosen) = &walked {
            config.solver.c = chosen.clone();
            config.heads.iter_mut().for_each(|h| h.c = None);
        }
        let trained = train::train(&config, progress)?;
        let score = trained.cv_score();
        tracing::info!(block_norm, cv = score, "variant cross-validated");
        if walked.is_none() {
            walked = Some(trained.cv.iter().map(|c| c.c).take(1).collect());
        }
        if best.as_ref().is_none_or(|b| score > b.cv_score()) {
            best = Some(trained);
        }
    }
    best.context("no variant was trained")
}

/// Builds the config of a single multiclass head named after the label column, and counts the
/// training rows.
fn one_head_config(a: &TrainArgs, data: &Path) -> anyhow::Result<(TrainConfig, usize)> {
    let label = a.label.clone().context("--label is required with --data")?;
    let table = CsvFile::read(data)?;
    let classes = table.values(table.column(&label)?);
    if classes.len() < 2 {
        bail!(
            "column `{label}` of {} has {} distinct value(s); a head needs two or more",
            data.display(),
            classes.len()
        );
    }
    let name = data
        .parent()
        .and_then(|p| p.file_name())
        .map_or_else(|| label.clone(), |n| n.to_string_lossy().into_owned());
    let config = TrainConfig {
        name,
        version: None,
        data_root: PathBuf::from("."),
        out: None,
        featurizer: Default::default(),
        solver: SolverConfig::default(),
        heads: vec![HeadSpec {
            name: label.clone(),
            kind: HeadKind::Multiclass,
            classes,
            conditioned: a.target.is_some(),
            c: None,
        }],
        datasets: vec![DatasetSpec {
            name: label.clone(),
            train: Some(data.to_path_buf()),
            dev: Some(a.dev.clone().unwrap_or_else(|| PathBuf::from("none"))),
            text: a.text_col.clone(),
            target: a.target.clone(),
            labels: BTreeMap::from([(
                label.clone(),
                LabelSpec {
                    column: label,
                    positive: vec![],
                    negative: vec![],
                    classes: BTreeMap::new(),
                },
            )]),
            recover: None,
            augment: false,
        }],
    };
    Ok((config, table.rows.len()))
}

/// The dev summary table: one line per data set and head.
pub fn summary(dev: &[DevScore]) -> String {
    let mut s = format!(
        "{:<24} {:<22} {:>6} {:>9} {:>7} {:>8}\n",
        "dataset", "head", "n", "macro-F1", "F_avg", "ROC-AUC"
    );
    for d in dev {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
        s += &format!(
            "{:<24} {:<22} {:>6} {:>9.4} {:>7} {:>8}\n",
            d.dataset,
            d.head,
            d.n,
            d.macro_f1,
            opt(d.f_avg),
            opt(d.roc_auc)
        );
    }
    s
}

/// A private temporary directory, removed when dropped.
fn tempfile_dir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!(
        "moderato-train-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(TempDir(path))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
