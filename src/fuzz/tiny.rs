//! A tiny model (2^8 buckets, a binary head and a target-conditioned stance head) built in code:
//! what the message harness classifies with, and what the model-file seeds are made of.

use crate::features::FeaturizerConfig;
use crate::model::{Head, HeadKind, Model, ModelInfo};

/// Targets of the tiny model's stance head.
pub const TARGETS: [&str; 2] = ["cats", "dogs"];

/// Builds the tiny model; its weights are a fixed pseudo-random sequence.
pub fn model() -> Model {
    let featurizer = FeaturizerConfig {
        hash_bits: 8,
        ..FeaturizerConfig::default()
    };
    let head =
        |name: &str, kind, classes: &[&str], column, targets: &[&str], bias: Vec<f32>| Head {
            name: name.into(),
            kind,
            classes: classes.iter().map(|c| c.to_string()).collect(),
            column,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            bias,
            platt: (-1.5, 0.2),
            temperature: 0.8,
            threshold: 0.5,
            prior: None,
            calibrations: Vec::new(),
            domains: Vec::new(),
            offsets: Vec::new(),
            domain_scales: (
                std::f32::consts::FRAC_1_SQRT_2,
                std::f32::consts::FRAC_1_SQRT_2,
            ),
            target_scripts: Vec::new(),
        };
    let heads = vec![
        head(
            "toxic",
            HeadKind::Binary,
            &["clean", "toxic"],
            1,
            &[],
            vec![-0.3],
        ),
        head(
            "stance",
            HeadKind::Multiclass,
            &["FAVOR", "AGAINST", "NONE"],
            2,
            &TARGETS,
            vec![0.1, -0.2, 0.3, 0.0, 0.2, -0.1],
        ),
    ];
    let stride = 5;
    let rows = featurizer.buckets();
    let mut state: u32 = 0x9e37_79b9;
    let table = (0..rows * stride)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let unit = (state % 2001) as f32 / 1000.0 - 1.0;
            if i % stride == 0 {
                1.0 + unit.abs()
            } else {
                unit
            }
        })
        .collect();
    let info = ModelInfo {
        name: "tiny".into(),
        version: "fuzz-1".into(),
        created: "2026-12-01T00:00:00Z".into(),
        ..ModelInfo::default()
    };
    // The parts above fit together by construction; a mismatch is a bug in this file.
    Model::new(info, featurizer, heads, table).expect("the tiny model's parts fit")
}
