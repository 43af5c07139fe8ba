//! A site's calibration from its unlabelled comments (`moderato calibrate --traffic`): zero
//! moderator decisions, only the traffic every site has from its first day.
//!
//! A head's probabilities are calibrated to the base rate of the rows its calibration was fit
//! on (the `prior` the model file records). A site with another base rate (Al Jazeera's
//! deleted comments are 82% offensive or obscene; a pooled Arabic calibration has about 40%) gets
//! probabilities that are too low, and a threshold set for the mixture flags too little.
//! Per binary head, on the comments it covers:
//! 1. the site's base rate is estimated by EM over the model's own probabilities (Saerens,
//!    Latinne and Decaestecker 2002, "Adjusting the outputs of a classifier to new a priori
//!    probabilities");
//! 2. the probabilities move to that base rate: the logit shifts by
//!    `logit(site) − logit(training)`, which is a new Platt intercept;
//! 3. the threshold maximizes the macro-F1 of the counts expected under those probabilities
//!    (each comment counts as positive with its probability), as `calibrate --feedback`
//!    maximizes the observed one.
//!
//! This trusts the model's ranking and its calibration's shape on the new site; only decisions
//! (`--feedback`) can correct those. The new-site benchmark measures what it buys.

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::error::DataError;
use crate::lang::{has_letters, script};
use crate::model::{Calibration, HeadKind, Model, Scratch};

/// Fewest covered comments a head's base rate is estimated from, by default.
pub const MIN_TRAFFIC: usize = 200;
/// Estimated base rates are kept within [`MIN_RATE`, 1 − `MIN_RATE`].
const MIN_RATE: f64 = 0.005;

/// What the traffic said about one head.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficReport {
    /// Head name.
    pub head: String,
    /// Comments the head covers and scored.
    pub comments: usize,
    /// Base rate of the model's calibration (`None`: the model file does not record it).
    pub training_rate: Option<f32>,
    /// The site's estimated base rate.
    pub site_rate: Option<f32>,
    /// Share of the comments the model's own rule flags.
    pub flagged_before: f32,
    /// Share flagged by the new calibration.
    pub flagged_after: Option<f32>,
    /// The calibration written, or why none was.
    pub calibration: Option<Calibration>,
    /// Why the head kept the model's calibration.
    pub kept_because: Option<String>,
}

/// The base rate that makes the adjusted probabilities average to itself (Saerens et al. EM),
/// from probabilities calibrated to `trained`.
pub fn site_rate(probs: &[f64], trained: f64) -> f64 {
    let trained = trained.clamp(MIN_RATE, 1.0 - MIN_RATE);
    let mut rate = trained;
    for _ in 0..1000 {
        let next = probs.iter().map(|&p| adjust(p, trained, rate)).sum::<f64>()
            / probs.len().max(1) as f64;
        let next = next.clamp(MIN_RATE, 1.0 - MIN_RATE);
        let done = (next - rate).abs() < 1e-7;
        rate = next;
        if done {
            break;
        }
    }
    rate
}

/// A probability calibrated to base rate `from`, moved to base rate `to` (Bayes' rule).
pub fn adjust(p: f64, from: f64, to: f64) -> f64 {
    let pos = p * to / from;
    let neg = (1.0 - p) * (1.0 - to) / (1.0 - from);
    if pos + neg > 0.0 {
        pos / (pos + neg)
    } else {
        p
    }
}

/// The threshold on `probs` (a grid of 99) that maximizes the macro-F1 of the expected counts
/// (each comment positive with its probability: an approximation of the expected macro-F1).
pub fn expected_macro_f1_threshold(probs: &[f64]) -> f32 {
    let mut best = (0.5f32, f64::NEG_INFINITY);
    for step in 1..100 {
        let t = f64::from(step) / 100.0;
        let (mut tp, mut fp, mut fneg, mut tn) = (0.0, 0.0, 0.0, 0.0);
        for &p in probs {
            if p >= t {
                tp += p;
                fp += 1.0 - p;
            } else {
                fneg += p;
                tn += 1.0 - p;
            }
        }
        let f1 = |hit: f64, a: f64, b: f64| {
            if hit > 0.0 {
                2.0 * hit / (2.0 * hit + a + b)
            } else {
                0.0
            }
        };
        let macro_f1 = (f1(tp, fp, fneg) + f1(tn, fneg, fp)) / 2.0;
        if macro_f1 > best.1 {
            best = (step as f32 / 100.0, macro_f1);
        }
    }
    best.0
}

/// What [`read_texts`] found in a traffic file.
#[derive(Debug, Default)]
pub struct Traffic {
    /// The comments' texts, of the domain asked for or of none.
    pub texts: Vec<String>,
    /// Lines naming another `"domain"`.
    pub other_domain: usize,
    /// Lines that are not a JSON object with a non-empty `"text"`.
    pub not_comments: usize,
}

/// Reads a site's comments: JSON lines with a `"text"` (the input of `classify` and `serve`;
/// feedback lines do too). A line naming another `"domain"` is counted and skipped, and so is
/// a line that is not a comment (logged with its number, never its text).
pub fn read_texts(path: &Path, domain: &str) -> Result<Traffic, DataError> {
    let err = |message: String| DataError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut out = Traffic::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| err(format!("line {}: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        if v.as_ref()
            .and_then(|v| v.get("domain"))
            .and_then(|d| d.as_str())
            .is_some_and(|d| d != domain)
        {
            out.other_domain += 1;
            continue;
        }
        match v
            .as_ref()
            .and_then(|v| v.get("text"))
            .and_then(|t| t.as_str())
        {
            Some(t) if !t.trim().is_empty() => out.texts.push(t.to_string()),
            _ => {
                tracing::warn!(line = n + 1, file = %path.display(), "not a comment with a text; skipped");
                out.not_comments += 1;
            }
        }
    }
    Ok(out)
}

/// Calibrates every binary head of `model` to the base rate of `texts` (a site's comments of
/// `domain`), writing a calibration named `domain` for each head that covers at least
/// `min_comments` of them; returns what was found per head.
pub fn calibrate(
    model: &mut Model,
    texts: &[String],
    domain: &str,
    min_comments: usize,
) -> Vec<TrafficReport> {
    let mut scratch = Scratch::default();
    let margins: Vec<_> = texts
        .iter()
        .map(|t| model.margins_in(t, Some(domain), &mut scratch))
        .collect();
    let mut reports = Vec::new();
    for head in 0..model.heads().len() {
        if model.heads()[head].kind != HeadKind::Binary {
            continue;
        }
        // A calibration this domain got before is set aside: the model's own is the start.
        model.remove_calibration(head, domain);
        let h = &model.heads()[head];
        let mut rows = Vec::new();
        for (text, m) in texts.iter().zip(&margins) {
            let s = script(text);
            let (Some(m), None) = (m[head], h.uncovered(s, has_letters(text, s))) else {
                continue;
            };
            let (bias, p, threshold) = h.calibration(Some(domain), s);
            rows.push((m, crate::model::platt(m + bias, p) >= threshold, s));
        }
        // One calibration is written for the site: that of its majority script, as for
        // decisions (`site::calibrate`). Only that script's comments estimate it: the others'
        // probabilities were calibrated to another base rate.
        let major = crate::lang::majority(rows.iter().map(|r| r.2));
        let (bias, platt, _) = h.calibration(Some(domain), major);
        let trained = h.calibration_prior(Some(domain), major);
        let flagged = |n: usize| n as f32 / rows.len().max(1) as f32;
        let mut report = TrafficReport {
            head: h.name.clone(),
            comments: rows.len(),
            training_rate: trained,
            site_rate: None,
            flagged_before: flagged(rows.iter().filter(|r| r.1).count()),
            flagged_after: None,
            calibration: None,
            kept_because: None,
        };
        let major_rows: Vec<&(f32, bool, _)> = rows.iter().filter(|r| r.2 == major).collect();
        let least = min_comments.max(1);
        let Some(trained) = trained.filter(|_| major_rows.len() >= least) else {
            report.kept_because = Some(if major_rows.len() < least {
                format!(
                    "{} covered comments in the majority script, fewer than {least}",
                    major_rows.len()
                )
            } else {
                "the model file does not record its training base rate: retrain it with this version".into()
            });
            reports.push(report);
            continue;
        };
        let probs: Vec<f64> = major_rows
            .iter()
            .map(|r| f64::from(crate::model::platt(r.0 + bias, platt)))
            .collect();
        let trained = f64::from(trained).clamp(MIN_RATE, 1.0 - MIN_RATE);
        let rate = site_rate(&probs, trained);
        if rate <= MIN_RATE + 1e-6 || rate >= 1.0 - MIN_RATE - 1e-6 {
            // EM runs to a bound when the probabilities tell the classes apart too little, or
            // the domain shifted more than the base rate: no estimate to trust.
            report.kept_because = Some(format!(
                "the estimate ran to the bound ({:.1}%): the model's probabilities on these comments do not tell a base rate",
                rate * 100.0
            ));
            reports.push(report);
            continue;
        }
        let adjusted: Vec<f64> = probs.iter().map(|&p| adjust(p, trained, rate)).collect();
        let threshold = expected_macro_f1_threshold(&adjusted);
        // p = 1 / (1 + exp(a·f + b)): a logit shift of δ is b − δ.
        let shift = logit(rate) - logit(trained);
        let c = Calibration {
            name: domain.to_string(),
            bias,
            platt: (platt.0, platt.1 - shift as f32),
            threshold,
            prior: Some(rate as f32),
            weights: Vec::new(),
        };
        let after = rows
            .iter()
            .filter(|r| crate::model::platt(r.0 + c.bias, c.platt) >= c.threshold)
            .count();
        if model.set_calibration(head, c.clone()).is_ok() {
            report.site_rate = Some(rate as f32);
            report.flagged_after = Some(flagged(after));
            report.calibration = Some(c);
        }
        reports.push(report);
    }
    reports
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use crate::model::HeadOutcome;

    fn flagged(model: &Model, texts: &[String], domain: &str) -> usize {
        let mut scratch = Scratch::default();
        texts
            .iter()
            .filter(|t| {
                matches!(
                    model.score_in(t, None, Some(domain), &mut scratch)[0],
                    HeadOutcome::Binary { flag: true, .. }
                )
            })
            .count()
    }

    #[test]
    fn traffic_moves_one_domains_calibration_towards_its_base_rate_and_no_other() {
        let mut model = fixtures::model();
        let texts: Vec<String> = (0..300)
            .map(|i| format!("comment number {i} says x{}", i * 37 % 101))
            .collect();
        // The Latin calibration of `offensive`, made steep around these comments' median
        // margin (so its probabilities tell them apart), says its rows were 5% positive:
        // about half of these comments score high, a base rate far above the training one.
        let mut scratch = Scratch::default();
        let mut margins: Vec<f32> = texts
            .iter()
            .map(|t| model.margins_in(t, Some("busy"), &mut scratch)[0].unwrap_or(0.0))
            .collect();
        margins.sort_by(f32::total_cmp);
        let (median, spread) = (margins[150], (margins[225] - margins[75]).max(1e-3));
        let platt = (-8.0 / spread, 8.0 * median / spread);
        let c = Calibration {
            name: "lang:latin".into(),
            bias: 0.0,
            platt,
            threshold: 0.9,
            prior: Some(0.05),
            weights: Vec::new(),
        };
        model.set_calibration(0, c).expect("binary head");
        let before_elsewhere = flagged(&model, &texts, "elsewhere");
        let before = flagged(&model, &texts, "busy");

        let reports = calibrate(&mut model, &texts, "busy", MIN_TRAFFIC);
        let r = reports
            .iter()
            .find(|r| r.head == "offensive")
            .expect("offensive");
        assert_eq!((r.comments, r.training_rate), (300, Some(0.05)));
        let rate = r.site_rate.expect("a base rate");
        assert!(rate > 0.2, "{r:?}");
        let c = r.calibration.as_ref().expect("a calibration");
        assert_eq!((c.name.as_str(), c.prior), ("busy", Some(rate)));
        assert!(rate < 0.8, "{r:?}");
        // The new calibration is the old probability moved to the new base rate (Bayes).
        for &m in &margins {
            let moved = adjust(
                f64::from(crate::model::platt(m, platt)),
                0.05,
                f64::from(rate),
            );
            let new = f64::from(crate::model::platt(m + c.bias, c.platt));
            assert!((moved - new).abs() < 1e-3, "{m}: {moved} against {new}");
        }
        // The site's comments are judged by the new calibration; any other domain as before.
        assert!(flagged(&model, &texts, "busy") > before, "{r:?}");
        assert_eq!(flagged(&model, &texts, "elsewhere"), before_elsewhere);
        // `obscene` covers Arabic only: no comment here is its to judge.
        let o = reports
            .iter()
            .find(|r| r.head == "obscene")
            .expect("obscene");
        assert_eq!(o.comments, 0);
        assert!(o.calibration.is_none() && o.kept_because.is_some());
    }

    #[test]
    fn a_traffic_file_keeps_its_domains_comments_and_counts_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("traffic.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"id\": 1, \"text\": \"mine\", \"domain\": \"site\"}\n",
                "{\"text\": \"no domain is mine too\"}\n",
                "{\"text\": \"theirs\", \"domain\": \"other\"}\n",
                "\n",
                "not json\n",
                "{\"text\": \"  \"}\n",
            ),
        )
        .expect("write");
        let t = read_texts(&path, "site").expect("read");
        assert_eq!(t.texts, ["mine", "no domain is mine too"]);
        assert_eq!((t.other_domain, t.not_comments), (1, 2));
        assert!(read_texts(&dir.path().join("missing"), "site").is_err());
    }

    #[test]
    fn a_model_without_its_training_base_rate_is_left_as_it_is() {
        let mut model = fixtures::model();
        let texts: Vec<String> = (0..250).map(|i| format!("text {i}")).collect();
        let reports = calibrate(&mut model, &texts, "site", MIN_TRAFFIC);
        let r = &reports[0];
        assert!(r.calibration.is_none(), "{r:?}");
        assert!(r
            .kept_because
            .as_deref()
            .is_some_and(|k| k.contains("retrain")));
        assert!(model.heads()[0]
            .calibrations
            .iter()
            .all(|c| c.name != "site"));
    }

    #[test]
    fn em_recovers_a_base_rate_from_calibrated_probabilities() {
        // A two-point world, calibrated at a base rate of 0.5: comments of kind A are 90%
        // abusive there, kind B 10%; so 90% of the abusive ones are A, and 10% of the others.
        // A site with 80% A: 0.8 = 0.9·r + 0.1·(1 − r), a base rate r of 0.875.
        let mut probs = vec![0.9; 800];
        probs.extend(vec![0.1; 200]);
        let rate = site_rate(&probs, 0.5);
        assert!((rate - 0.875).abs() < 1e-3, "{rate}");
        // The same traffic at its training base rate stays there.
        let mut even = vec![0.9; 500];
        even.extend(vec![0.1; 500]);
        assert!((site_rate(&even, 0.5) - 0.5).abs() < 1e-3);
        // Probabilities that tell nothing apart run EM to a bound, which `calibrate` refuses.
        let flat = vec![0.6; 500];
        assert!(site_rate(&flat, 0.05) >= 1.0 - MIN_RATE - 1e-6);
    }

    #[test]
    fn adjusting_to_the_same_rate_changes_nothing_and_a_higher_rate_raises() {
        assert!((adjust(0.3, 0.4, 0.4) - 0.3).abs() < 1e-12);
        assert!(adjust(0.3, 0.4, 0.8) > 0.6);
        assert!(adjust(0.3, 0.4, 0.1) < 0.1);
    }

    #[test]
    fn the_expected_f1_threshold_takes_the_middle_group_in_when_that_pays() {
        // Three groups: 300 at 0.9, 200 at 0.5, 500 at 0.1. Flagging the first two gives
        // expected counts of macro-F1 0.819, the first alone 0.805, all or none far less.
        let mut probs = vec![0.9; 300];
        probs.extend(vec![0.5; 200]);
        probs.extend(vec![0.1; 500]);
        let t = expected_macro_f1_threshold(&probs);
        assert!(t > 0.1 && t <= 0.5, "{t}");
    }
}
