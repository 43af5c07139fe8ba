//! Featurized comments → the sparse rows one head is trained and calibrated on: compact
//! columns, target crossings for conditioned heads and data-set crossings for set-aware heads.

use crate::features::{self, Featurizer};
use crate::train::data::Example;
use crate::train::solver::Rows;
use crate::train::Corpus;

/// Sparse rows of one head, over compact columns.
pub(super) struct Design {
    pub(super) rows: Rows,
    pub(super) labels: Vec<u32>,
    pub(super) datasets: Vec<usize>,
    pub(super) scripts: Vec<crate::lang::Script>,
    /// Cross-validation stratum of every row: data set, target and class.
    pub(super) strata: Vec<u64>,
}

impl Design {
    /// Appends one row of `ex`, labelled `class`, with what stratifies and calibrates it.
    fn push(&mut self, row: &[(u32, f32)], ex: &Example, class: u32, target: Option<usize>) {
        self.rows.push(row.iter().copied());
        self.labels.push(class);
        self.datasets.push(ex.dataset);
        self.scripts.push(crate::lang::script(&ex.text));
        self.strata
            .push(crate::train::folds::stratum(ex.dataset, target, class));
    }
}

/// Maps buckets (and per-target bias columns) to compact solver columns.
pub(super) struct Columns {
    pub(super) index: Vec<u32>,
    pub(super) buckets: Vec<u32>,
}

pub(super) const UNSET: u32 = u32::MAX;

impl Columns {
    /// The compact column of a bucket; `grow` adds unseen ones (training), else they are dropped.
    pub(super) fn of(&mut self, bucket: u32, grow: bool) -> Option<u32> {
        let slot = &mut self.index[bucket as usize];
        if *slot == UNSET && grow {
            *slot = self.buckets.len() as u32;
            self.buckets.push(bucket);
        }
        (*slot != UNSET).then_some(*slot)
    }
}

/// How a set-aware binary head sees the data sets (EasyAdapt, Daumé III 2007): every feature
/// once shared and once crossed with its data set (scaled as `scales`), plus a data set bias.
/// Without a known domain only the shared half is scored.
#[derive(Clone, Copy)]
pub(super) enum Domains<'a> {
    /// Not set-aware: features as they are.
    Plain,
    /// Only the shared half (scoring without a domain), with the (shared, own) scales.
    Shared { scales: (f32, f32) },
    /// Shared and crossed halves plus the bias column, per data set.
    Crossed {
        keys: &'a [Option<u64>],
        cols: &'a [Option<u32>],
        scales: (f32, f32),
    },
}

/// What every design of one head shares: the head, the weighting and the target columns.
pub(super) struct HeadData<'a> {
    pub(super) head: usize,
    pub(super) idf: &'a [f32],
    pub(super) featurizer: &'a Featurizer,
    pub(super) targets: &'a [String],
    pub(super) target_cols: &'a [u32],
    /// Scales of the shared and the target's own copy of a conditioned head's features.
    pub(super) target_scales: (f32, f32),
}

/// The sparse rows of `corpus` labelled for the head; `grow` adds unseen columns (training).
pub(super) fn design(
    corpus: &Corpus,
    hd: &HeadData,
    columns: &mut Columns,
    grow: bool,
    domains: Domains,
) -> Design {
    let HeadData {
        head,
        idf,
        featurizer,
        targets,
        target_cols,
        ..
    } = *hd;
    let sublinear = featurizer.config().sublinear_tf;
    let block_norm = featurizer.config().block_norm;
    let mut d = Design {
        rows: Rows::new(),
        labels: Vec::new(),
        datasets: Vec::new(),
        scripts: Vec::new(),
        strata: Vec::new(),
    };
    let mut values = Vec::new();
    let mut row: Vec<(u32, f32)> = Vec::new();
    for (ex, counts) in corpus.examples.iter().zip(&corpus.counts) {
        let Some(&(_, class)) = ex.labels.iter().find(|(h, _)| *h == head) else {
            continue;
        };
        let target = if targets.is_empty() {
            None
        } else {
            match ex
                .target
                .as_deref()
                .and_then(|t| targets.iter().position(|x| x == t))
            {
                Some(t) => Some(t),
                None => continue,
            }
        };
        features::weigh(
            counts,
            |b| idf[b as usize],
            sublinear,
            block_norm,
            &mut values,
        );
        values.retain(|&(_, v)| v != 0.0);
        row.clear();
        if let Domains::Shared { scales: (s, _) } | Domains::Crossed { scales: (s, _), .. } =
            domains
        {
            for &(b, v) in &values {
                if let Some(c) = columns.of(b, grow) {
                    row.push((c, v * s));
                }
            }
            if let Domains::Crossed {
                keys,
                cols,
                scales: (_, s),
            } = domains
            {
                let d = ex.dataset;
                if let (Some(key), Some(col)) = (keys[d], cols[d]) {
                    for &(b, v) in &values {
                        if let Some(c) = columns.of(featurizer.cross(b, key), grow) {
                            row.push((c, v * s));
                        }
                    }
                    row.push((col, 1.0));
                }
            }
            d.push(&row, ex, class as u32, target);
            continue;
        }
        match target {
            None => row.extend(
                values
                    .iter()
                    .filter_map(|&(b, v)| columns.of(b, grow).map(|c| (c, v))),
            ),
            Some(t) => {
                let key = featurizer.target_key(&targets[t]);
                let (shared, own) = hd.target_scales;
                for &(b, v) in &values {
                    if shared != 0.0 {
                        if let Some(c) = columns.of(b, grow) {
                            row.push((c, v * shared));
                        }
                    }
                    if let Some(c) = columns.of(featurizer.cross(b, key), grow) {
                        row.push((c, v * own));
                    }
                }
                row.push((target_cols[t], 1.0));
            }
        }
        d.push(&row, ex, class as u32, target);
    }
    d
}

/// Small designs and configs for the training modules' unit tests.
#[cfg(test)]
pub(super) mod fixtures {
    use super::Design;
    use crate::train::config::TrainConfig;
    use crate::train::solver::Rows;

    /// A design of `rows` in one data set, stratified by `strata`.
    pub(in crate::train) fn design(rows: Rows, labels: Vec<u32>, strata: Vec<u64>) -> Design {
        let n = labels.len();
        Design {
            rows,
            labels,
            datasets: vec![0; n],
            scripts: vec![crate::lang::Script::Latin; n],
            strata,
        }
    }

    /// A config with every solver setting at its default.
    pub(in crate::train) fn config() -> TrainConfig {
        toml::from_str("name = \"t\"\nheads = []\ndatasets = []\n").expect("config parses")
    }
}
