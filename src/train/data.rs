//! Labelled CSV files → training examples, with each data set's labels mapped onto heads.

use std::path::Path;

use crate::csv_file::CsvFile;
use crate::error::DataError;
use crate::model::HeadKind;
use crate::train::config::{DatasetSpec, HeadSpec, TrainConfig};

/// One comment with the labels it carries.
#[derive(Clone, Debug)]
pub struct Example {
    /// Comment text.
    pub text: String,
    /// Target, for conditioned heads.
    pub target: Option<String>,
    /// (head index, class index) pairs; a binary head's classes are 0 = no, 1 = yes.
    pub labels: Vec<(usize, usize)>,
    /// Raw value of the data set's `recover` column, for the model card.
    pub raw: Option<String>,
    /// Index of the data set.
    pub dataset: usize,
}

/// Reads one split of a data set and maps its labels onto the heads.
pub fn load_split(
    config: &TrainConfig,
    dataset: usize,
    path: &Path,
) -> Result<Vec<Example>, DataError> {
    let ds: &DatasetSpec = &config.datasets[dataset];
    let table = CsvFile::read(path)?;
    let text_col = table.column(&ds.text)?;
    let target_col = ds.target.as_deref().map(|t| table.column(t)).transpose()?;
    let raw_col = ds
        .recover
        .as_ref()
        .map(|r| table.column(&r.column))
        .transpose()?;
    let mut mappings = Vec::new();
    for (head_name, spec) in &ds.labels {
        let Some(head) = config.heads.iter().position(|h| &h.name == head_name) else {
            continue;
        };
        mappings.push((head, table.column(&spec.column)?, spec));
    }
    let mut out = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let text = row.get(text_col).unwrap_or("").to_string();
        if text.trim().is_empty() {
            continue;
        }
        let labels: Vec<(usize, usize)> = mappings
            .iter()
            .filter_map(|&(head, col, spec)| {
                let value = row.get(col)?.trim();
                class_of(&config.heads[head], spec, value).map(|c| (head, c))
            })
            .collect();
        if labels.is_empty() {
            continue;
        }
        out.push(Example {
            text,
            target: target_col
                .and_then(|c| row.get(c))
                .map(|t| t.trim().to_string()),
            labels,
            raw: raw_col
                .and_then(|c| row.get(c))
                .map(|v| v.trim().to_string()),
            dataset,
        });
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            reason: "no row has a non-empty text and a label this config maps".into(),
        });
    }
    Ok(out)
}

/// The class index a raw label value means for a head, or `None` when it does not label it.
fn class_of(head: &HeadSpec, spec: &super::config::LabelSpec, value: &str) -> Option<usize> {
    match head.kind {
        HeadKind::Binary => {
            if spec.positive.iter().any(|p| p == value) {
                Some(1)
            } else if spec.negative.is_empty() || spec.negative.iter().any(|n| n == value) {
                (!value.is_empty()).then_some(0)
            } else {
                None
            }
        }
        HeadKind::Multiclass => {
            let class = spec.classes.get(value).map(String::as_str).unwrap_or(value);
            head.classes.iter().position(|c| c == class)
        }
    }
}
