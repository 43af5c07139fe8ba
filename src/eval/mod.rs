//! Evaluation stage: metrics (`metrics`) and the `eval` command's report (`report`).

pub mod metrics;
pub mod report;
