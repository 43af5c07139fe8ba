//! One line of the feedback file: a moderator's decision joined with its comment's text.
//! `serve --feedback-topic` and the Perspective API's `suggestscore` write it; `train --feedback`
//! and `calibrate --feedback` read it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of the feedback file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FeedbackLine {
    /// Comment id, as text.
    pub id: String,
    /// The comment's text (`None`: not found; training skips the line).
    pub text: Option<String>,
    /// Target, for stance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Head.
    pub head: String,
    /// Label as sent.
    pub label: Value,
    /// The site or community the decision comes from (Perspective's `communityId`), which
    /// `moderato calibrate --domain` can learn a calibration for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Where the text came from: `message`, `recent` or `missing` (absent in a file written
    /// by hand: read as `message`).
    #[serde(default = "from_message")]
    pub joined: String,
    /// When it was written (seconds since the epoch; absent in a file written by hand: 0).
    #[serde(default)]
    pub at: f64,
}

fn from_message() -> String {
    "message".into()
}
