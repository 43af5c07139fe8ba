//! What the dashboard reads: `GET /api/state` ([`DashboardState`]) and each event of the live
//! feed ([`FeedRecord`]). The page (`dashboard.html`), the server and the tests all go by these
//! types: the server serializes them, the tests deserialize what the server sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::drift::DriftStatus;

/// Everything the dashboard shows, polled every 2 seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardState {
    /// `serve`, `api` or `monitor`.
    pub mode: String,
    /// This instance's name.
    pub instance: String,
    /// When the process started (Unix seconds).
    pub started_at: f64,
    /// When this state was taken (Unix seconds).
    pub now: f64,
    /// The serving model (`None` in `monitor`, or before it has loaded).
    pub model: Option<ModelState>,
    /// Records seen per model version.
    pub models_seen: BTreeMap<String, u64>,
    /// Binary heads seen, in order of first appearance.
    pub heads: Vec<String>,
    /// Counts since start.
    pub totals: Totals,
    /// Labelled records per second over the last 10 seconds.
    pub throughput: f64,
    /// Dead letters per second over the last minute.
    pub dead_letter_rate: f64,
    /// Dead letters since start, per reason code.
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    /// Consumer lag per `topic/partition`.
    pub lag: BTreeMap<String, i64>,
    /// The sum of the positive lags.
    pub lag_total: i64,
    /// The input partitions this instance holds.
    pub assigned_partitions: Vec<i32>,
    /// Flag rates over the last `1m`, `5m` and `15m`.
    pub windows: BTreeMap<String, Window>,
    /// The last 15 minutes in 10-second buckets, oldest first.
    pub series: Series,
    /// Per language over the last 15 minutes.
    pub languages: BTreeMap<String, LanguageCount>,
    /// Per stance target over the last 15 minutes: label → records.
    pub stance: BTreeMap<String, BTreeMap<String, u64>>,
    /// Each head's drift verdict (heads with too little history are absent).
    pub drift: Vec<DriftStatus>,
    /// Model reloads that failed (the old model kept serving).
    pub reload_failures: u64,
}

/// The serving model, as the dashboard's header shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// When it was loaded (Unix seconds).
    pub loaded_at: f64,
}

/// Counts since the process started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Messages read.
    pub consumed: u64,
    /// Records labelled.
    pub labelled: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Records flagged by at least one head.
    pub flagged: u64,
}

/// Flag rates over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Records in the window.
    pub total: u64,
    /// Per head: flagged / scored by that head.
    pub rates: BTreeMap<String, f64>,
    /// Share of records flagged by any head.
    pub any: f64,
}

/// Per-bucket series, aligned on `t`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Bucket starts (Unix seconds).
    pub t: Vec<i64>,
    /// Records per bucket.
    pub total: Vec<u64>,
    /// Dead letters per bucket.
    pub dead: Vec<u64>,
    /// Per head: flagged records per bucket.
    pub flagged: BTreeMap<String, Vec<u64>>,
}

/// Records of one language.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LanguageCount {
    /// Records.
    pub total: u64,
    /// Records flagged by any head.
    pub flagged: u64,
}

/// One event of the live feed (`GET /events`, `event: comment`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// Comment id.
    pub id: String,
    /// A prefix of the text, when the process saw it (`None` in `monitor`).
    pub text: Option<String>,
    /// Language code.
    pub lang: String,
    /// Flagged heads.
    pub labels: Vec<String>,
    /// Per head: score, rounded to 3 decimals.
    pub scores: BTreeMap<String, f32>,
    /// The stance verdict, if a target was scored.
    pub stance: Option<FeedStance>,
    /// The dead-letter reason, for a dead letter.
    pub dead: Option<String>,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// When it was seen (Unix seconds).
    pub ts: f64,
    /// Model version that labelled it.
    pub model_version: String,
}

/// A stance verdict in the feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedStance {
    /// Stance target.
    pub target: String,
    /// FAVOR, AGAINST or NONE.
    pub label: String,
    /// Its probability.
    pub p: f32,
}
