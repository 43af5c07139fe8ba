//! Exact explanations: a linear head's score is a sum of one term per hashed feature, so the
//! n-grams behind the largest terms are precisely why a comment was flagged.

use serde::{Deserialize, Serialize};

use super::{HeadKind, Model};
use crate::features;

/// One feature's share of a head's raw score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contribution {
    /// The n-grams that hash to this feature (character n-grams as is, word n-grams in brackets).
    pub ngrams: Vec<String>,
    /// TF-IDF value times weight: its addition to the head's raw score for the class (for a
    /// site with its own feature copy, the site weight divided by the site's Platt slope is
    /// added, so the terms are in raw-score units; long comments are scored by their highest
    /// chunk, which these whole-comment terms do not show).
    pub contribution: f32,
}

/// The `top` features that push head `head` hardest towards class `class` (0 for a binary head),
/// with `target` the index of the target of a conditioned head.
pub fn explain(
    model: &Model,
    text: &str,
    head: usize,
    class: usize,
    target: Option<usize>,
    domain: Option<&str>,
    top: usize,
) -> Vec<Contribution> {
    let featurizer = model.featurizer();
    let h = &model.heads()[head];
    let col = h.column
        + match h.kind {
            HeadKind::Binary => 0,
            HeadKind::Multiclass => class,
        };
    let table = model.table();
    let mut scratch = features::Scratch::default();
    featurizer.count(text, &mut scratch);
    let cfg = featurizer.config();
    let mut values = Vec::new();
    features::weigh(
        &scratch.features,
        |b| model.idf(b),
        cfg.sublinear_tf,
        cfg.block_norm,
        &mut values,
    );
    // Conditioned and set-aware heads score a shared and a crossed copy, each scaled.
    let (key, (shared, own)) = match target {
        Some(t) => (Some(model.target_key(head, t)), h.domain_scales),
        None if !h.domains.is_empty() => (model.domain_key(head, domain), h.domain_scales),
        None => (None, (1.0, 1.0)),
    };
    // A site's own feature copy (`moderato calibrate`) adds its weights to the Platt intercept;
    // divided by the Platt slope they are in the raw score's units.
    let script = crate::lang::script(text);
    let (_, (slope, _), _) = h.calibration(domain, script);
    let site = match h.kind {
        // (A slope near 0 would blow the terms up: such a calibration flags by its weights
        // alone, and they are left out rather than shown at a meaningless scale.)
        HeadKind::Binary if slope.abs() > 1e-3 => h.site_weights(domain, script),
        _ => &[],
    };
    let mut terms: Vec<(u32, f32)> = values
        .iter()
        .map(|&(b, v)| {
            let mut w = table.get(b, col) * shared;
            if let Some(k) = key {
                w += table.get(featurizer.cross(b, k), col) * own;
            }
            if let Ok(i) = site.binary_search_by_key(&b, |s| s.0) {
                w += site[i].1 / slope;
            }
            (b, v * w)
        })
        .collect();
    // For a binary head a positive raw score means "flag" only through Platt's negative slope;
    // rank by the direction that raises the calibrated probability.
    let sign = if h.kind == HeadKind::Binary && slope > 0.0 {
        -1.0
    } else {
        1.0
    };
    terms.sort_by(|a, b| (b.1 * sign).total_cmp(&(a.1 * sign)));
    terms.truncate(top);
    let grams = featurizer.grams(text);
    terms
        .into_iter()
        .map(|(bucket, contribution)| {
            let mut ngrams: Vec<String> = grams
                .iter()
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
