//! A site's own calibration from its moderators' decisions (`moderato calibrate`), in seconds
//! and without retraining, for comments of that site's domain.
//!
//! Per binary head, cross-validation on the decisions picks the rule the data supports (the
//! first four change only how a head's margin becomes a probability and a flag):
//! - `pooled`: keep the model's calibration (too few decisions, or nothing beats it);
//! - `threshold`: the model's probabilities with a new threshold (one parameter: a site whose
//!   base rate or notion of abuse differs);
//! - `platt`: a new Platt scale fit on the site's margins, and its threshold (three);
//! - `copy`, from `MIN_COPY_DECISIONS` decisions on: the site's own feature copy
//!   (`train::site_copy`), a logistic regression over the comments' n-grams beside the model's
//!   logit, which learns the site's own words of abuse;
//! - `traffic`, when the site's unlabelled comments are given too: the calibration
//!   `calibrate --traffic` estimates from them (`train::traffic`), which the decisions only
//!   judge (none).
//!
//! Thresholds maximize macro-F1, the measure the rules are compared by.
//!
//! The winner, fit on all the decisions, becomes the head's calibration named after the domain,
//! which `"domain": NAME`, `classify --domain NAME`, `serve --domain NAME` and a Perspective
//! `communityId` select. The model's weights are never touched: a copy's weights live in that
//! calibration, and only the domain's comments read them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::calibrate::{self, best_macro_f1_threshold, macro_f1, MIN_SLICE_CLASS, MIN_SLICE_ROWS};
use super::folds;
use super::site_copy::Decisions;
use crate::lang::script;
use crate::model::{platt, Calibration, HeadKind, Model, Scratch};
use crate::record::feedback::FeedbackLine;

/// Most folds the rules are compared on.
const MAX_FOLDS: usize = 5;
/// Fewest decisions a site's feature copy is tried on (fewer cannot pay for the n-grams).
pub const MIN_COPY_DECISIONS: usize = 100;

/// The calibration rules compared, simplest first (a tie goes to the simpler).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// The model's own calibration.
    Pooled,
    /// The base rate estimated from the site's unlabelled comments (nothing fit here).
    Traffic,
    /// The model's probabilities, a new threshold.
    Threshold,
    /// A new Platt scale and threshold.
    Platt,
    /// The site's own feature copy, its Platt scale and threshold.
    Copy,
}

/// What calibration found for one head.
#[derive(Clone, Debug, Serialize)]
pub struct HeadReport {
    /// Head name.
    pub head: String,
    /// Decisions used (the latest per comment).
    pub decisions: usize,
    /// Of which positive.
    pub positives: usize,
    /// Out-of-fold macro-F1 of each rule compared (empty: too few decisions to compare).
    pub cv_macro_f1: Vec<(Rule, f64)>,
    /// The rule kept.
    pub chosen: Rule,
    /// The calibration written (`None` for `pooled`), without its site weights (they are in
    /// the head's calibration; the model card keeps only their number).
    pub calibration: Option<Calibration>,
    /// Number of site weights written (the `copy` rule; 0 for the others).
    pub site_weights: usize,
}

/// Decisions by head: (text, label), the latest per text, from lines of `domain` or of none.
fn decisions(
    lines: &[FeedbackLine],
    model: &Model,
    domain: &str,
) -> BTreeMap<usize, Vec<(String, bool)>> {
    let mut latest: BTreeMap<(usize, String), bool> = BTreeMap::new();
    for line in lines {
        if line.domain.as_deref().is_some_and(|d| d != domain) {
            continue;
        }
        let Some(text) = line.text.as_ref().filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        let Some(head) = model
            .heads()
            .iter()
            .position(|h| h.name == line.head && h.kind == HeadKind::Binary && !h.conditioned())
        else {
            continue;
        };
        let h = &model.heads()[head];
        // A comment the head does not score (a script it never saw) calibrates nothing.
        let s = script(text);
        if h.uncovered(s, crate::lang::has_letters(text, s)).is_some() {
            continue;
        }
        let Some(class) = super::feedback::class(h.kind, &h.classes, &line.label) else {
            continue;
        };
        latest.insert((head, text.clone()), class == "1");
    }
    let mut out: BTreeMap<usize, Vec<(String, bool)>> = BTreeMap::new();
    for ((head, text), label) in latest {
        out.entry(head).or_default().push((text, label));
    }
    out
}

/// A new Platt scale on `margins` and its macro-F1-optimal threshold.
fn platt_rule(margins: &[f32], truth: &[bool]) -> ((f32, f32), f32) {
    let p = calibrate::platt(margins, truth);
    let probs: Vec<f32> = margins.iter().map(|&m| platt(m, p)).collect();
    (p, best_macro_f1_threshold(&probs, truth))
}

/// One head's margins, the model's probabilities and flags for them, and the truth.
struct Scored {
    margins: Vec<f32>,
    probs: Vec<f32>,
    flags: Vec<bool>,
    truth: Vec<bool>,
    /// The model's logit under `pooled`, and the comment's weighted features: what a copy fits.
    logits: Vec<f32>,
    features: Vec<Vec<(u32, f32)>>,
    /// The model's (bias, Platt, prior) for the majority script of the decisions.
    pooled: (f32, (f32, f32), Option<f32>),
}

fn score(model: &Model, head: usize, rows: &[(String, bool)], domain: &str) -> Scored {
    let h = &model.heads()[head];
    let mut scratch = Scratch::default();
    let (mut margins, mut flags, mut truth) = (vec![], vec![], vec![]);
    let mut scripts = Vec::with_capacity(rows.len());
    let mut features = Vec::with_capacity(rows.len());
    for (text, label) in rows {
        let m = model.margins_in(text, Some(domain), &mut scratch)[head].unwrap_or(0.0);
        features.push(scratch.comment_features().to_vec());
        let s = script(text);
        scripts.push(s);
        // The model's own rule: each comment by its script's calibration.
        let (bias, p, threshold) = h.calibration(Some(domain), s);
        margins.push(m);
        flags.push(platt(m + bias, p) >= threshold);
        truth.push(*label);
    }
    // One calibration is written for the site: the one of its majority script. The threshold
    // rule is scored with it, so cross-validation judges the rule that is deployed.
    let major = crate::lang::majority(scripts);
    let (bias, p, _) = h.calibration(Some(domain), major);
    let prior = h.calibration_prior(Some(domain), major);
    let probs = margins.iter().map(|&m| platt(m + bias, p)).collect();
    // `platt` is 1 / (1 + exp(a·f + b)): the logit is −(a·f + b).
    let logits = margins.iter().map(|&m| -(p.0 * (m + bias) + p.1)).collect();
    Scored {
        margins,
        probs,
        flags,
        truth,
        logits,
        features,
        pooled: (bias, p, prior),
    }
}

impl Scored {
    /// The decisions as a site copy fits them.
    fn decisions(&self) -> Decisions<'_> {
        Decisions {
            logits: &self.logits,
            features: &self.features,
            truth: &self.truth,
        }
    }
}

/// Fits `rule` on `fit` rows and predicts `held` rows (`traffic`: that rule's calibration).
fn fit_predict(
    s: &Scored,
    rule: Rule,
    fit: &[usize],
    held: &[usize],
    traffic: Option<&Calibration>,
    seed: u64,
) -> Vec<bool> {
    let pick = |v: &[f32], rows: &[usize]| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let truth: Vec<bool> = fit.iter().map(|&i| s.truth[i]).collect();
    match rule {
        Rule::Pooled => held.iter().map(|&i| s.flags[i]).collect(),
        Rule::Threshold => {
            let t = best_macro_f1_threshold(&pick(&s.probs, fit), &truth);
            held.iter().map(|&i| s.probs[i] >= t).collect()
        }
        Rule::Platt => {
            let (p, t) = platt_rule(&pick(&s.margins, fit), &truth);
            held.iter().map(|&i| platt(s.margins[i], p) >= t).collect()
        }
        Rule::Traffic => match traffic {
            Some(c) => held
                .iter()
                .map(|&i| platt(s.margins[i] + c.bias, c.platt) >= c.threshold)
                .collect(),
            None => held.iter().map(|&i| s.flags[i]).collect(),
        },
        Rule::Copy => {
            let d = s.decisions();
            let copy = d.fit(fit, seed);
            held.iter()
                .map(|&i| copy.probability(&d, i) >= copy.threshold)
                .collect()
        }
    }
}

/// Calibrates every binary head with decisions for `domain` and writes the chosen calibrations
/// into `model`; returns what was found per head. `traffic` holds, by head, the calibration
/// estimated from the site's unlabelled comments, a fourth rule to compare.
pub fn calibrate(
    model: &mut Model,
    lines: &[FeedbackLine],
    domain: &str,
    seed: u64,
    traffic: &BTreeMap<usize, Calibration>,
) -> Vec<HeadReport> {
    let mut reports = Vec::new();
    for (head, rows) in decisions(lines, model, domain) {
        // A calibration this domain got before is set aside: the model's own rule is the
        // baseline, and the decisions are not judged by a rule they may have been fit on.
        model.remove_calibration(head, domain);
        let s = score(model, head, &rows, domain);
        let positives = s.truth.iter().filter(|&&t| t).count();
        let negatives = rows.len() - positives;
        let mut report = HeadReport {
            head: model.heads()[head].name.clone(),
            decisions: rows.len(),
            positives,
            cv_macro_f1: Vec::new(),
            chosen: Rule::Pooled,
            calibration: None,
            site_weights: 0,
        };
        if rows.len() < MIN_SLICE_ROWS || positives.min(negatives) < MIN_SLICE_CLASS {
            reports.push(report);
            continue;
        }
        let strata: Vec<u64> = s.truth.iter().map(|&t| u64::from(t)).collect();
        let k = MAX_FOLDS.min(positives.min(negatives));
        let splits = folds::split(&folds::stratified(&strata, k, seed));
        let mut best = (Rule::Pooled, f64::NEG_INFINITY);
        let from_traffic = traffic.get(&head);
        // Simplest first (a tie goes to the simpler): the traffic rule fits nothing here.
        let rules = [
            Rule::Pooled,
            Rule::Traffic,
            Rule::Threshold,
            Rule::Platt,
            Rule::Copy,
        ];
        let tried = |r: &Rule| match r {
            Rule::Traffic => from_traffic.is_some(),
            Rule::Copy => rows.len() >= MIN_COPY_DECISIONS,
            _ => true,
        };
        for rule in rules.into_iter().filter(tried) {
            let mut pred = vec![false; rows.len()];
            for (fit, held) in &splits {
                for (&i, p) in held
                    .iter()
                    .zip(fit_predict(&s, rule, fit, held, from_traffic, seed))
                {
                    pred[i] = p;
                }
            }
            let f1 = macro_f1(&s.truth, &pred);
            report.cv_macro_f1.push((rule, f1));
            if f1 > best.1 + 1e-9 {
                best = (rule, f1);
            }
        }
        report.chosen = best.0;
        let (bias, pooled_platt, pooled_prior) = s.pooled;
        let prior = Some(calibrate::positive_rate(&s.truth));
        let calibration = |bias, platt, threshold, prior| Calibration {
            name: domain.to_string(),
            bias,
            platt,
            threshold,
            prior,
            weights: Vec::new(),
        };
        let fitted = match best.0 {
            Rule::Pooled => None,
            Rule::Threshold => Some(calibration(
                bias,
                pooled_platt,
                best_macro_f1_threshold(&s.probs, &s.truth),
                pooled_prior,
            )),
            Rule::Platt => {
                let (p, t) = platt_rule(&s.margins, &s.truth);
                Some(calibration(0.0, p, t, prior))
            }
            Rule::Traffic => from_traffic.map(|c| Calibration {
                name: domain.to_string(),
                ..c.clone()
            }),
            Rule::Copy => {
                let all: Vec<usize> = (0..rows.len()).collect();
                let copy = s.decisions().fit(&all, seed);
                Some(copy.calibration(domain, (bias, pooled_platt), prior))
            }
        };
        if let Some(mut c) = fitted {
            let weights = c.weights.len();
            if model.set_calibration(head, c.clone()).is_ok() {
                c.weights.clear();
                report.calibration = Some(c);
                report.site_weights = weights;
            }
        }
        reports.push(report);
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use serde_json::Value;

    fn line(text: &str, label: bool, domain: Option<&str>) -> FeedbackLine {
        FeedbackLine {
            id: String::new(),
            text: Some(text.into()),
            target: None,
            head: "offensive".into(),
            label: Value::Bool(label),
            domain: domain.map(String::from),
            joined: "message".into(),
            at: 0.0,
        }
    }

    #[test]
    fn a_sites_decisions_move_its_threshold_and_no_other_domains() {
        let mut model = fixtures::model();
        let head = 0;
        // A strict site: only the top fifth of the comments by the model's score is abuse, so
        // the model's own threshold (0.5) flags far too much there.
        let mut scratch = Scratch::default();
        let texts: Vec<String> = (0..150)
            .map(|i| format!("comment number {i} says x{}", i * 37 % 101))
            .collect();
        let mut scored: Vec<(f32, &String)> = texts
            .iter()
            .map(|t| {
                (
                    model.margins_in(t, Some("strict"), &mut scratch)[head].unwrap_or(0.0),
                    t,
                )
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let cut = scored[30].0;
        let lines: Vec<FeedbackLine> = scored
            .iter()
            .map(|(m, t)| line(t, *m > cut, Some("strict")))
            .chain(std::iter::once(line(
                "from another site",
                true,
                Some("other"),
            )))
            .collect();
        let before = model.score_in(&texts[0], None, Some("elsewhere"), &mut scratch);

        let reports = calibrate(&mut model, &lines, "strict", 7, &BTreeMap::new());
        let r = &reports[0];
        assert_eq!(
            (r.head.as_str(), r.decisions, r.positives),
            ("offensive", 150, 30)
        );
        assert_ne!(r.chosen, Rule::Pooled, "{r:?}");
        let pooled = r.cv_macro_f1[0].1;
        assert!(r.cv_macro_f1.iter().any(|(_, f)| *f > pooled), "{r:?}");
        let c = r.calibration.as_ref().expect("a calibration was written");
        assert_eq!(c.name, "strict");
        assert!(model.heads()[head]
            .calibrations
            .iter()
            .any(|k| k.name == "strict"));
        // The site's comments are judged by the new rule: about a fifth flagged.
        let flagged = texts
            .iter()
            .filter(|t| {
                matches!(
                    model.score_in(t, None, Some("strict"), &mut scratch)[head],
                    crate::model::HeadOutcome::Binary { flag: true, .. }
                )
            })
            .count();
        assert!((15..=45).contains(&flagged), "{flagged} of 150 flagged");
        // Any other domain scores as before.
        assert_eq!(
            model.score_in(&texts[0], None, Some("elsewhere"), &mut scratch),
            before
        );
    }

    #[test]
    fn a_word_only_the_sites_moderators_know_is_learned_by_its_feature_copy() {
        let mut model = fixtures::model();
        let mut scratch = Scratch::default();
        // The site's abuse is one word the model has never seen: no threshold can find it.
        let text = |i: usize| {
            let word = if i % 4 == 0 { "zorblax" } else { "weather" };
            format!("reader {i} writes {word} today")
        };
        let lines: Vec<FeedbackLine> = (0..160)
            .map(|i| line(&text(i), i % 4 == 0, Some("zsite")))
            .collect();
        let unseen = "another reader writes zorblax today";
        let elsewhere = model.score_in(unseen, None, Some("elsewhere"), &mut scratch);
        let reports = calibrate(&mut model, &lines, "zsite", 5, &BTreeMap::new());
        let r = &reports[0];
        assert_eq!(r.chosen, Rule::Copy, "{r:?}");
        let copy = r.cv_macro_f1.iter().find(|(k, _)| *k == Rule::Copy);
        assert!(copy.is_some_and(|(_, f)| *f > 0.95), "{r:?}");
        assert!(r.calibration.is_some() && r.site_weights > 0, "{r:?}");
        let c = model.heads()[0]
            .calibrations
            .iter()
            .find(|c| c.name == "zsite")
            .cloned()
            .expect("the site's calibration");
        assert_eq!(c.weights.len(), r.site_weights);
        // A new comment with the word is flagged on the site, and only there.
        let flag = |m: &Model, domain: &str, scratch: &mut Scratch| {
            matches!(
                m.score_in(unseen, None, Some(domain), scratch)[0],
                crate::model::HeadOutcome::Binary { flag: true, .. }
            )
        };
        assert!(flag(&model, "zsite", &mut scratch));
        let benign = "another reader writes weather today";
        assert!(!matches!(
            model.score_in(benign, None, Some("zsite"), &mut scratch)[0],
            crate::model::HeadOutcome::Binary { flag: true, .. }
        ));
        assert_eq!(
            model.score_in(unseen, None, Some("elsewhere"), &mut scratch),
            elsewhere
        );
        // `--explain` names the site's word as what flagged it.
        let top = crate::model::explain::explain(&model, unseen, 0, 0, None, Some("zsite"), 3);
        assert!(
            top.iter()
                .any(|c| c.ngrams.iter().any(|g| g.contains("orb"))),
            "{top:?}"
        );
        // The weights survive the model file.
        let (bytes, _) = crate::model::file::to_bytes(&model);
        let back = crate::model::file::from_bytes(&bytes, std::path::Path::new("site.model"))
            .expect("the file loads");
        // Format version 2, which builds older than site weights refuse; a plain model stays 1.
        assert_eq!(bytes[8..12], 2u32.to_le_bytes());
        let (plain, _) = crate::model::file::to_bytes(&fixtures::model());
        assert_eq!(plain[8..12], 1u32.to_le_bytes());
        assert!(flag(&back, "zsite", &mut scratch));
        // A file whose site weights are out of order is refused, with what to do.
        let mut reversed = c.clone();
        reversed.weights.reverse();
        model.set_calibration(0, reversed).expect("binary head");
        let (bytes, _) = crate::model::file::to_bytes(&model);
        let refused = crate::model::file::from_bytes(&bytes, std::path::Path::new("bad.model"));
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("site weights"), "{message}");
    }

    #[test]
    fn too_few_decisions_keep_the_pooled_calibration() {
        let mut model = fixtures::model();
        let lines: Vec<FeedbackLine> = (0..10)
            .map(|i| line(&format!("text {i}"), i % 2 == 0, None))
            .collect();
        let reports = calibrate(&mut model, &lines, "tiny", 1, &BTreeMap::new());
        assert_eq!(reports[0].chosen, Rule::Pooled);
        assert!(reports[0].cv_macro_f1.is_empty());
        assert!(model.heads()[0]
            .calibrations
            .iter()
            .all(|c| c.name != "tiny"));
    }

    #[test]
    fn a_traffic_calibration_the_decisions_confirm_is_the_one_kept() {
        let mut model = fixtures::model();
        let mut scratch = Scratch::default();
        let texts: Vec<String> = (0..150)
            .map(|i| format!("comment number {i} says x{}", i * 37 % 101))
            .collect();
        let mut margins: Vec<f32> = texts
            .iter()
            .map(|t| model.margins_in(t, Some("busy"), &mut scratch)[0].unwrap_or(0.0))
            .collect();
        let sorted = {
            margins.sort_by(|a, b| b.total_cmp(a));
            margins.clone()
        };
        // The decisions: the top 40 by score are abuse. The traffic rule (as if estimated from
        // the site's comments) puts its threshold exactly there; it fits nothing on the
        // decisions, so it wins the tie with a fitted threshold.
        let cut = (sorted[39] + sorted[40]) / 2.0;
        let lines: Vec<FeedbackLine> = texts
            .iter()
            .map(|t| {
                let m = model.margins_in(t, Some("busy"), &mut scratch)[0].unwrap_or(0.0);
                line(t, m > cut, Some("busy"))
            })
            .collect();
        let (bias, p, _) = model.heads()[0].calibration(Some("busy"), crate::lang::Script::Latin);
        let candidate = Calibration {
            name: "busy".into(),
            bias,
            platt: p,
            threshold: platt(cut + bias, p),
            prior: Some(40.0 / 150.0),
            weights: Vec::new(),
        };
        let traffic = BTreeMap::from([(0, candidate.clone())]);
        let reports = calibrate(&mut model, &lines, "busy", 3, &traffic);
        let r = &reports[0];
        assert!(
            r.cv_macro_f1.iter().any(|(k, _)| *k == Rule::Traffic),
            "{r:?}"
        );
        assert_eq!(r.chosen, Rule::Traffic, "{r:?}");
        assert_eq!(r.calibration.as_ref(), Some(&candidate));
        // Without the traffic rule it is not among those compared.
        let mut again = fixtures::model();
        let plain = calibrate(&mut again, &lines, "busy", 3, &BTreeMap::new());
        assert!(plain[0]
            .cv_macro_f1
            .iter()
            .all(|(k, _)| *k != Rule::Traffic));
    }

    #[test]
    fn decisions_in_a_script_the_head_never_saw_calibrate_nothing() {
        // `obscene` covers Arabic only: English decisions on it are not its to learn from.
        let mut model = fixtures::model();
        let lines: Vec<FeedbackLine> = (0..60)
            .map(|i| FeedbackLine {
                head: "obscene".into(),
                ..line(
                    &format!("plain english comment {i}"),
                    i % 3 == 0,
                    Some("en-site"),
                )
            })
            .collect();
        let reports = calibrate(&mut model, &lines, "en-site", 1, &BTreeMap::new());
        assert!(reports.iter().all(|r| r.head != "obscene"), "{reports:?}");
    }
}
