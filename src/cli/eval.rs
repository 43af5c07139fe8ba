//! `moderato eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use moderato::eval::report::{self, EvalSpec};

/// Arguments of `moderato eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file (default: the shipped default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled CSV.
    #[arg(long)]
    data: PathBuf,
    /// Label column.
    #[arg(long)]
    label: String,
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
    let spec = EvalSpec {
        data: a.data,
        label: a.label,
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
