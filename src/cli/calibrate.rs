//! `moderato calibrate`: a site's own calibration, written into a copy of the model: from its
//! moderators' decisions (`--feedback`, see `moderato::train::site`), or from its unlabelled
//! comments alone (`--traffic`, see `moderato::train::traffic`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use moderato::model::{file, Calibration};
use moderato::train::feedback::read_lines;
use moderato::train::site::{self, Rule, MIN_COPY_DECISIONS};
use moderato::train::traffic;

/// Arguments of `moderato calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The model to calibrate [default: the shipped default model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Decisions: the JSONL of `serve --feedback-topic` or of `comments:suggestscore`
    /// (`{"id", "text", "head", "label", "domain"?}`). Lines of another domain are skipped.
    /// Per binary head, cross-validation on them picks the model's own calibration, a new
    /// threshold, a new Platt scale, or (from 100 decisions) the site's own n-gram weights.
    #[arg(long, required_unless_present = "traffic")]
    feedback: Option<PathBuf>,
    /// The site's comments as JSON lines with a `"text"` (the input of `classify`): each binary
    /// head moves to the site's base rate, estimated from them. With --feedback too, that is one
    /// more rule the decisions judge, and a head without decisions keeps its calibration.
    #[arg(long)]
    traffic: Option<PathBuf>,
    /// With --traffic: fewest comments a head must cover to be calibrated.
    #[arg(long, default_value_t = traffic::MIN_TRAFFIC)]
    min_comments: usize,
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
    let (changed, reports) = match (&a.feedback, &a.traffic) {
        (Some(feedback), traffic) => {
            // The traffic's calibrations, fit on a copy, become a rule the decisions judge.
            // Heads without decisions keep the model's calibration, as with --feedback alone.
            let mut candidates = BTreeMap::new();
            if let Some(path) = traffic {
                let mut copy = model.clone();
                from_traffic(&mut copy, path, &a)?;
                for (head, h) in copy.heads().iter().enumerate() {
                    if let Some(c) = h.calibrations.iter().find(|c| c.name == a.domain) {
                        candidates.insert(head, c.clone());
                    }
                }
            }
            from_decisions(&mut model, feedback, &a, &candidates)?
        }
        (None, Some(traffic)) => from_traffic(&mut model, traffic, &a)?,
        (None, None) => {
            anyhow::bail!("give --feedback FILE (decisions) or --traffic FILE (comments)")
        }
    };
    let mut training = model.info.training.clone();
    if !training.is_object() {
        training = serde_json::json!({});
    }
    // Indexing a JSON value that is not an object panics: the file's own value is replaced.
    if !training["site_calibrations"].is_object() {
        training["site_calibrations"] = serde_json::json!({});
    }
    training["site_calibrations"][&a.domain] = reports;
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

/// `--feedback`: prints the rules compared per head; returns how many heads changed and the
/// reports for the model card.
fn from_decisions(
    model: &mut moderato::model::Model,
    path: &std::path::Path,
    a: &CalibrateArgs,
    traffic: &BTreeMap<usize, Calibration>,
) -> anyhow::Result<(usize, serde_json::Value)> {
    let (lines, broken) =
        read_lines(path).with_context(|| format!("cannot read --feedback {}", path.display()))?;
    let reports = site::calibrate(model, &lines, &a.domain, a.seed, traffic);
    if reports.is_empty() {
        anyhow::bail!(
            "{} has no usable decision for domain {:?} ({} lines, {broken} not feedback lines): \
             each needs a text, a binary head of the model and a true/false label",
            path.display(),
            a.domain,
            lines.len()
        );
    }
    println!("head       decisions  positives  pooled  traffic  threshold  platt   copy    chosen");
    for r in &reports {
        let f1 = |rule: Rule| {
            r.cv_macro_f1
                .iter()
                .find(|(k, _)| *k == rule)
                .map_or("   -  ".to_string(), |(_, f)| format!("{f:.3} "))
        };
        println!(
            "{:<10} {:>9}  {:>9}  {}  {}   {}     {}  {}  {:?}",
            r.head,
            r.decisions,
            r.positives,
            f1(Rule::Pooled),
            f1(Rule::Traffic),
            f1(Rule::Threshold),
            f1(Rule::Platt),
            f1(Rule::Copy),
            r.chosen
        );
    }
    println!(
        "(out-of-fold macro-F1 on the decisions; too few decisions keep the pooled rule; \
         copy, the site's own n-gram weights, is tried from {MIN_COPY_DECISIONS} decisions)"
    );
    let changed = reports.iter().filter(|r| r.calibration.is_some()).count();
    Ok((changed, serde_json::to_value(&reports)?))
}

/// `--traffic`: prints each head's base rate, trained and estimated; returns how many heads
/// changed and the reports for the model card.
fn from_traffic(
    model: &mut moderato::model::Model,
    path: &std::path::Path,
    a: &CalibrateArgs,
) -> anyhow::Result<(usize, serde_json::Value)> {
    let t = traffic::read_texts(path, &a.domain)
        .with_context(|| format!("cannot read --traffic {}", path.display()))?;
    if t.texts.len() < a.min_comments.max(1) {
        anyhow::bail!(
            "{} has {} comments with a text for domain {:?} ({} of another domain, {} not \
             comments): at least {} are needed to estimate a base rate (--min-comments)",
            path.display(),
            t.texts.len(),
            a.domain,
            t.other_domain,
            t.not_comments,
            a.min_comments.max(1)
        );
    }
    let texts = t.texts;
    let reports = traffic::calibrate(model, &texts, &a.domain, a.min_comments);
    let pct = |v: Option<f32>| v.map_or("    -".to_string(), |v| format!("{:>4.1}%", v * 100.0));
    println!("head       comments  trained rate  site rate  flagged before  after  threshold");
    for r in &reports {
        println!(
            "{:<10} {:>8}  {:>12}  {:>9}  {:>14}  {:>5}  {}",
            r.head,
            r.comments,
            pct(r.training_rate),
            pct(r.site_rate),
            pct(Some(r.flagged_before)),
            pct(r.flagged_after),
            r.calibration.as_ref().map_or_else(
                || format!("kept: {}", r.kept_because.as_deref().unwrap_or("-")),
                |c| format!("{:.2}", c.threshold)
            ),
        );
    }
    println!("(site rate: EM over the model's probabilities on these comments; no labels read)");
    let changed = reports.iter().filter(|r| r.calibration.is_some()).count();
    Ok((changed, serde_json::to_value(&reports)?))
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
