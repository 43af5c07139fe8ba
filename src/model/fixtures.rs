//! A small model for unit tests: `offensive` trained (as its calibrations say) on Latin and
//! Arabic text, `obscene` on Arabic only.

use crate::features::FeaturizerConfig;
use crate::model::{Calibration, Head, HeadKind, Model, ModelInfo};

fn binary(name: &str, column: usize, scripts: &[&str]) -> Head {
    Head {
        name: name.into(),
        kind: HeadKind::Binary,
        classes: vec!["no".into(), "yes".into()],
        column,
        targets: Vec::new(),
        bias: vec![-0.5],
        platt: (-1.0, 0.0),
        temperature: 1.0,
        threshold: 0.5,
        prior: None,
        calibrations: scripts
            .iter()
            .map(|s| Calibration {
                name: format!("lang:{s}"),
                bias: 0.0,
                platt: (-1.0, 0.0),
                threshold: 0.5,
                prior: None,
                weights: Vec::new(),
            })
            .collect(),
        domains: Vec::new(),
        offsets: Vec::new(),
        domain_scales: (1.0, 0.0),
        target_scripts: Vec::new(),
    }
}

/// The model.
pub fn model() -> Model {
    let featurizer = FeaturizerConfig {
        hash_bits: 8,
        ..FeaturizerConfig::default()
    };
    let heads = vec![
        binary("offensive", 1, &["latin", "ar"]),
        binary("obscene", 2, &["ar"]),
    ];
    let stride = 3;
    // IDF 1 everywhere; weights that differ by bucket, so texts score differently.
    let table: Vec<f32> = (0..featurizer.buckets() * stride)
        .map(|i| match i % stride {
            0 => 1.0,
            _ => ((i * 7919) % 13) as f32 / 6.0 - 1.0,
        })
        .collect();
    let info = ModelInfo {
        name: "fixture".into(),
        version: "1".into(),
        ..ModelInfo::default()
    };
    Model::new(info, featurizer, heads, table).expect("the fixture fits together")
}
