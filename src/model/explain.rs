//! Exact explanations: a linear head's score is a sum of one term per hashed feature, so the
//! n-grams behind the largest terms are precisely why a comment was flagged.
//!
//! The terms come from the scoring path itself (`Model::each_part` and
//! `Model::score_counts`, run once per comment by an [`Explainer`]): for a long comment they are those of the sentence chunk whose score
//! won, as the score was pooled, so they sum to the score that was reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HeadKind, Model, Scratch};

/// One feature's share of a head's raw score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contribution {
    /// The n-grams that hash to this feature (character n-grams as is, word n-grams in brackets).
    pub ngrams: Vec<String>,
    /// TF-IDF value times weight: its addition to the head's raw score for the class. For a
    /// long comment these are the terms of the part its score came from (the highest-scoring
    /// sentence chunk, or the whole comment). For a site with its own feature copy, the site
    /// weight divided by the site's Platt slope is added, so the terms are in raw-score units.
    pub contribution: f32,
}

/// Every term of one head's raw score for one comment, as it was scored.
#[derive(Clone, Debug, PartialEq)]
pub struct Terms {
    /// `(bucket, contribution)` for every feature with a term, in bucket order.
    pub terms: Vec<(u32, f32)>,
    /// The head's bias for the class, plus a binary head's calibration bias: `Σ terms + bias`
    /// is the raw score, and for a binary head `platt(Σ terms + bias, platt)` is its score
    /// (except for a site copy whose Platt slope is within 1e-3 of 0: its weights are left
    /// out of the terms).
    pub bias: f32,
    /// A binary head's Platt parameters as scored (the domain's or script's calibration).
    pub platt: (f32, f32),
    /// The sentence chunk the terms come from (`chunks(text, CHUNK_CHARS)[i]`); `None`: the
    /// whole comment.
    pub chunk: Option<usize>,
}

/// One part of a comment as it was scored: a sentence chunk (`Some(i)`) or the whole comment.
struct Part {
    chunk: Option<usize>,
    /// Every column's score of the part (before crossed copies and biases).
    scores: Vec<f32>,
    /// The part's normalized TF-IDF features.
    values: Vec<(u32, f32)>,
}

/// A comment featurized and scored once, part by part, for every head it is explained for.
pub struct Explainer<'a> {
    model: &'a Model,
    text: &'a str,
    /// The parts in scoring order, the whole comment last.
    parts: Vec<Part>,
    /// The whole comment's n-grams with their buckets.
    grams: Vec<(u32, String)>,
}

impl<'a> Explainer<'a> {
    /// Featurizes and scores every part of `text` as `Model::prepare` does.
    pub fn new(model: &'a Model, text: &'a str) -> Self {
        let mut scratch = Scratch::default();
        let mut parts = Vec::new();
        model.each_part(text, &mut scratch, |chunk, s| {
            let mut scores = Vec::new();
            model.score_counts(s, &mut scores);
            parts.push(Part {
                chunk,
                scores,
                values: s.values.clone(),
            });
        });
        let grams = model.featurizer().grams(text);
        Self {
            model,
            text,
            parts,
            grams,
        }
    }

    /// Every term of head `head`'s raw score towards class `class` (0 for a binary head), with
    /// `target` the index of the target of a conditioned head and `domain` the comment's site.
    pub fn terms(
        &self,
        head: usize,
        class: usize,
        target: Option<usize>,
        domain: Option<&str>,
    ) -> Terms {
        let model = self.model;
        let h = &model.heads()[head];
        let binary = h.kind == HeadKind::Binary;
        let col = h.column + if binary { 0 } else { class };
        let table = model.table();
        let featurizer = model.featurizer();
        // The whole comment is the last part: what crossed copies and site weights multiply.
        let Some(whole) = self.parts.last() else {
            return Terms {
                terms: Vec::new(),
                bias: 0.0,
                platt: h.platt,
                chunk: None,
            };
        };
        // The part whose column scored highest, as `Model::prepare` pools a binary head (the
        // first of equal ones: their sums are equal); a multiclass head is scored on the whole.
        let mut part = whole;
        if binary {
            let score = |p: &Part| p.scores.get(col).copied().unwrap_or(0.0);
            part = &self.parts[0];
            for p in &self.parts[1..] {
                if score(p) > score(part) {
                    part = p;
                }
            }
        }
        // Conditioned and set-aware heads score a shared and a crossed copy, each scaled.
        let (key, (shared, own)) = match target {
            Some(t) => (Some(model.target_key(head, t)), h.domain_scales),
            None if !h.domains.is_empty() => (model.domain_key(head, domain), h.domain_scales),
            None => (None, (1.0, 1.0)),
        };
        let mut sum: BTreeMap<u32, f32> = BTreeMap::new();
        for &(b, v) in &part.values {
            *sum.entry(b).or_default() += v * table.get(b, col) * shared;
        }
        if let Some(k) = key {
            for &(b, v) in &whole.values {
                *sum.entry(b).or_default() += v * table.get(featurizer.cross(b, k), col) * own;
            }
        }
        let bias_at = target.unwrap_or(0) * h.outputs();
        let mut bias = h.bias.get(bias_at + class).copied().unwrap_or(0.0);
        let mut platt = h.platt;
        if binary {
            let entry = h.calibration_entry(domain, crate::lang::script(self.text));
            let (cal_bias, (a, b), _) = h.parts(entry);
            bias += cal_bias;
            platt = (a, b);
            // A site's own feature copy (`moderato calibrate`) adds its weights to the Platt
            // intercept; divided by the Platt slope they are in the raw score's units. (A slope
            // near 0 would blow the terms up: such a calibration flags by its weights alone,
            // and they are left out rather than shown at a meaningless scale.)
            let site = entry.map_or(&[][..], |c| c.weights.as_slice());
            if a.abs() > 1e-3 {
                for &(b, v) in &whole.values {
                    if let Ok(i) = site.binary_search_by_key(&b, |s| s.0) {
                        *sum.entry(b).or_default() += v * site[i].1 / a;
                    }
                }
            }
        }
        Terms {
            terms: sum.into_iter().collect(),
            bias,
            platt,
            chunk: part.chunk,
        }
    }

    /// The `top` features that push head `head` hardest towards class `class` (0 for a binary
    /// head), with `target` the index of the target of a conditioned head.
    pub fn explain(
        &self,
        head: usize,
        class: usize,
        target: Option<usize>,
        domain: Option<&str>,
        top: usize,
    ) -> Vec<Contribution> {
        let all = self.terms(head, class, target, domain);
        let mut terms = all.terms;
        // For a binary head a positive raw score means "flag" only through Platt's negative
        // slope; rank by the direction that raises the calibrated probability.
        let binary = self.model.heads()[head].kind == HeadKind::Binary;
        let sign = if binary && all.platt.0 > 0.0 {
            -1.0
        } else {
            1.0
        };
        terms.sort_by(|a, b| (b.1 * sign).total_cmp(&(a.1 * sign)));
        terms.truncate(top);
        // The n-grams of the whole comment (crossed copies and site weights read its
        // features), and of the chunk the terms come from.
        let mut chunk_grams = Vec::new();
        if let Some(i) = all.chunk {
            if let Some(piece) = super::chunks(self.text, super::CHUNK_CHARS).get(i) {
                chunk_grams = self.model.featurizer().grams(piece);
            }
        }
        terms
            .into_iter()
            .map(|(bucket, contribution)| {
                let mut ngrams: Vec<String> = self
                    .grams
                    .iter()
                    .chain(&chunk_grams)
                    .filter(|(b, _)| *b == bucket)
                    .map(|(_, s)| s.clone())
                    .collect();
                ngrams.sort();
                ngrams.dedup();
                Contribution {
                    ngrams,
                    contribution,
                }
            })
            .collect()
    }
}

/// [`Explainer::explain`] for one head of one comment.
pub fn explain(
    model: &Model,
    text: &str,
    head: usize,
    class: usize,
    target: Option<usize>,
    domain: Option<&str>,
    top: usize,
) -> Vec<Contribution> {
    Explainer::new(model, text).explain(head, class, target, domain, top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{file, platt, HeadOutcome, CHUNK_CHARS, LONG_COMMENT};

    /// `ln(p / (1 - p))`, in f64 so a score near 0 or 1 keeps its digits.
    fn logit(p: f32) -> f64 {
        let p = f64::from(p);
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn the_terms_of_a_long_comment_sum_to_the_logit_of_its_reported_score() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.model");
        let model = file::load(&path).expect("the shipped default model");
        // A 2,000-character comment: polite reporting, then one insulting sentence (the chunk
        // that wins the long-comment rule), then more polite text.
        let polite =
            "Thanks for the thorough reporting on the council budget, it was a good read. ";
        let insult = "You are a complete idiot and a disgusting liar, shut up. ";
        let mut text = polite.repeat(12);
        text.push_str(insult);
        while text.chars().count() < 2_000 {
            text.push_str(polite);
        }
        assert!(text.chars().count() >= 2_000 && text.chars().count() > LONG_COMMENT);
        let mut checked = 0;
        // No domain, and two known ones: set-aware heads add their domain's crossed copy and
        // calibration.
        for domain in [None, Some("olid"), Some("mubarak2017_aljazeera")] {
            let outcomes = model.score_in(&text, None, domain, &mut Scratch::default());
            for (hi, outcome) in outcomes.iter().enumerate() {
                let HeadOutcome::Binary { score, .. } = *outcome else {
                    continue;
                };
                let t = Explainer::new(&model, &text).terms(hi, 0, None, domain);
                let raw = t.terms.iter().map(|&(_, c)| c).sum::<f32>() + t.bias;
                let (a, b) = t.platt;
                // platt(x) = 1 / (1 + e^(a·x + b)), so its logit is −(a·x + b).
                let want = logit(score);
                let got = -(f64::from(a) * f64::from(raw) + f64::from(b));
                let head = &model.heads()[hi].name;
                assert!(
                (got - want).abs() < 1e-3 * want.abs().max(1.0),
                "{head} ({domain:?}): terms give logit {got}, the reported score {score} has {want}"
            );
                assert!((platt(raw, t.platt) - score).abs() < 1e-4, "{head}");
                if head == "offensive" && domain.is_none() {
                    let chunk = t.chunk.expect("a chunk, not the whole comment, wins");
                    let chunks = crate::model::chunks(&text, CHUNK_CHARS);
                    assert!(chunks[chunk].contains("idiot"), "{:?}", chunks[chunk]);
                    // The insult's n-grams lead: "idiot" itself or a piece of it (" idi", "diot").
                    let top = explain(&model, &text, hi, 0, None, None, 5);
                    let of_idiot = |g: &str| {
                        let g = g.trim();
                        g.contains("idiot") || (g.chars().count() >= 3 && "idiot".contains(g))
                    };
                    assert!(
                        top.iter().flat_map(|c| &c.ngrams).any(|g| of_idiot(g)),
                        "{top:?}"
                    );
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 9,
            "the default model's binary heads were checked"
        );
    }

    #[test]
    fn the_terms_of_a_stance_head_sum_to_its_raw_score_for_each_class() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.model");
        let model = file::load(&path).expect("the shipped default model");
        let text = "Hillary Clinton will make a great president, she has my vote. ".repeat(10);
        let outcomes = model.score(&text, Some("Hillary Clinton"), &mut Scratch::default());
        let (hi, probs, target) = outcomes
            .iter()
            .enumerate()
            .find_map(|(hi, o)| match o {
                HeadOutcome::Multiclass { probs, target, .. } => Some((hi, probs, *target)),
                _ => None,
            })
            .expect("the stance head scores the Clinton target");
        let head = &model.heads()[hi];
        let raw: Vec<f32> = (0..head.classes.len())
            .map(|k| {
                let t = Explainer::new(&model, &text).terms(hi, k, target, None);
                assert_eq!(t.chunk, None, "stance is scored on the whole comment");
                t.terms.iter().map(|&(_, c)| c).sum::<f32>() + t.bias
            })
            .collect();
        let mut want = Vec::new();
        head.probabilities(&raw, &mut want);
        for (w, p) in want.iter().zip(probs) {
            assert!((w - p).abs() < 1e-4, "{want:?} against {probs:?}");
        }
    }
}
