//! A labelled CSV file held in memory with its header: what training and `moderato eval` read.

use std::path::{Path, PathBuf};

use crate::error::DataError;

/// A CSV file held in memory with its header.
#[derive(Debug)]
pub struct CsvFile {
    /// Where it came from.
    pub path: PathBuf,
    /// Column names.
    pub headers: Vec<String>,
    /// Records.
    pub rows: Vec<csv::StringRecord>,
}

impl CsvFile {
    /// Reads an RFC 4180 CSV file with a header row.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let err = |message: String| DataError::Csv {
            path: path.to_path_buf(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|e| err(e.to_string()))?;
        let headers = reader
            .headers()
            .map_err(|e| err(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            headers,
            rows,
        })
    }

    /// Index of a column, or an error listing the columns there are.
    pub fn column(&self, name: &str) -> Result<usize, DataError> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.headers.join(", "),
            })
    }

    /// Distinct non-empty values of a column, sorted.
    pub fn values(&self, column: usize) -> Vec<String> {
        let mut v: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r.get(column))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
