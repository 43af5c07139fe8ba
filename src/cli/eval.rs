//! `moderato eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use moderato::eval::report::{self, EvalSpec};
use moderato::train::DevDomain;
use moderato::train::{self, config::TrainConfig};

/// Arguments of `moderato eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file (default: the shipped default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled CSV.
    #[arg(long, required_unless_present = "config")]
    data: Option<PathBuf>,
    /// Label column.
    #[arg(long, required_unless_present = "config")]
    label: Option<String>,
    /// Instead of one CSV: score the dev split of every data set of a training config, per
    /// data set and head, with each set's labels recovered from the heads (the model card).
    #[arg(long, conflicts_with_all = ["data", "label"])]
    config: Option<PathBuf>,
    /// Override the config's data root.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// With --config: score every dev comment as this domain (e.g. a site `moderato calibrate`
    /// calibrated) instead of as its own data set.
    #[arg(long, requires = "config", conflicts_with = "no_domain")]
    as_domain: Option<String>,
    /// With --config: score every dev comment with no domain, as a site the model has never
    /// seen is served.
    #[arg(long, requires = "config")]
    no_domain: bool,
    /// Write the per-data-set scores as JSON to this file (with --config).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Target column for a conditioned head.
    #[arg(long)]
    target: Option<String>,
    /// Text column.
    #[arg(long, default_value = "text")]
    text_col: String,
    /// Head to evaluate (default: the head named like the label column).
    #[arg(long)]
    head: Option<String>,
    /// Label values that mean "yes" for a binary head (comma-separated).
    #[arg(long, value_delimiter = ',')]
    positive: Vec<String>,
    /// Directory for metrics.json, roc.svg and pr.svg.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Runs `moderato eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let model = super::load_model(a.model.as_deref())?;
    if let Some(path) = &a.config {
        let mut config = TrainConfig::from_file(path)?;
        if let Some(root) = a.data_root {
            config.data_root = root;
        }
        let dev = train::load_dev_or_train(&config, true)?;
        let domain = match (&a.as_domain, a.no_domain) {
            (Some(d), _) => DevDomain::As(Some(d.as_str())),
            (None, true) => DevDomain::As(None),
            (None, false) => DevDomain::Own,
        };
        let scores = train::evaluate_dev_as(&config, &model, &dev, domain);
        print!("{}", super::train::summary(&scores));
        if let Some(out) = a.json {
            std::fs::write(&out, serde_json::to_string_pretty(&scores)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(data), Some(label)) = (a.data, a.label) else {
        anyhow::bail!("give --data CSV --label COLUMN, or --config FILE");
    };
    let spec = EvalSpec {
        data,
        label,
        target: a.target,
        text: a.text_col,
        head: a.head,
        positive: a.positive,
    };
    let evaluation = report::evaluate(&model, &spec)?;
    print!("{}", report::render(&evaluation));
    if let Some(dir) = a.report {
        report::write(&evaluation, &dir)?;
        eprintln!("report written to {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
