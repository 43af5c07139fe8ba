//! `moderato calibrate`: a site's own calibration from its moderators' decisions (see
//! `moderato::train::site`), written into a copy of the model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use moderato::model::file;
use moderato::train::feedback::read_lines;
use moderato::train::site::{self, Rule};

/// Arguments of `moderato calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The model to calibrate [default: the shipped default model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Decisions: the JSONL of `serve --feedback-topic` or of `comments:suggestscore`
    /// (`{"id", "text", "head", "label", "domain"?}`). Lines of another domain are skipped.
    #[arg(long)]
    feedback: PathBuf,
    /// The site's domain: requests naming it (`"domain"`, `--domain`, a `communityId`) use
    /// the new calibration.
    #[arg(long)]
    domain: String,
    /// Where the calibrated model is written.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the cross-validation folds.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `moderato calibrate`.
pub fn run(a: CalibrateArgs) -> anyhow::Result<ExitCode> {
    if a.domain.trim().is_empty() {
        anyhow::bail!("--domain must name the site, e.g. --domain Coral:https://news.example");
    }
    if a.domain.starts_with("lang:") {
        anyhow::bail!(
            "--domain {}: `lang:` names are the model's script calibrations, not sites; name the site",
            a.domain
        );
    }
    let mut model = super::load_model(a.model.as_deref())?;
    let (lines, broken) = read_lines(&a.feedback)
        .with_context(|| format!("cannot read --feedback {}", a.feedback.display()))?;
    let reports = site::calibrate(&mut model, &lines, &a.domain, a.seed);
    if reports.is_empty() {
        anyhow::bail!(
            "{} has no usable decision for domain {:?} ({} lines, {broken} not feedback lines): \
             each needs a text, a binary head of the model and a true/false label",
            a.feedback.display(),
            a.domain,
            lines.len()
        );
    }
    println!("head       decisions  positives  pooled  threshold  platt   chosen");
    for r in &reports {
        let f1 = |rule: Rule| {
            r.cv_macro_f1
                .iter()
                .find(|(k, _)| *k == rule)
                .map_or("   -  ".to_string(), |(_, f)| format!("{f:.3} "))
        };
        println!(
            "{:<10} {:>9}  {:>9}  {}  {}     {}  {:?}",
            r.head,
            r.decisions,
            r.positives,
            f1(Rule::Pooled),
            f1(Rule::Threshold),
            f1(Rule::Platt),
            r.chosen
        );
    }
    println!("(out-of-fold macro-F1 on the decisions; too few decisions keep the pooled rule)");
    let changed = reports.iter().filter(|r| r.calibration.is_some()).count();
    let mut training = model.info.training.clone();
    if !training.is_object() {
        training = serde_json::json!({});
    }
    training["site_calibrations"][&a.domain] = serde_json::to_value(&reports)?;
    model.info.training = training;
    if changed > 0 {
        model.info.version = format!("{}+{}", model.info.version, version_tag(&a.domain));
    }
    file::save(&mut model, &a.out)
        .with_context(|| format!("cannot write --out {}", a.out.display()))?;
    println!(
        "{changed} head(s) calibrated for {:?}; wrote {} (version {}, sha256 {})",
        a.domain,
        a.out.display(),
        model.info.version,
        model.sha256
    );
    Ok(ExitCode::SUCCESS)
}

/// A short, header-safe tag for the domain in the model version.
fn version_tag(domain: &str) -> String {
    let tag: String = domain
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    format!("site.{}", tag.trim_matches('-'))
}
