//! The model worker's contract: its input and output types. The worker (`main.rs`) and its
//! caller (`examples/call`) both use this file, so the two cannot drift apart; in a project of
//! your own, put such types in a small crate both sides depend on.

use serde::{Deserialize, Serialize};

// `JsonSchema` makes the input and output the endpoint's contract: `--schema` prints them,
// with the doc comments as descriptions. `garde::Validate` declares the constraints, checked
// before the handler runs (a job breaking several fails with all of them) and shown in the
// schema (`minLength`, `maximum`, …).
/// A review to score.
#[derive(Debug, Clone, Serialize, Deserialize, worker::JsonSchema, garde::Validate)]
#[schemars(crate = "worker::schemars")]
pub(crate) struct Review {
    /// The text to score.
    #[garde(length(min = 1, max = 20_000))]
    pub(crate) text: String,
    /// Also list the words that contributed and their weights.
    #[serde(default)]
    #[garde(skip)]
    pub(crate) explain: bool,
    /// Score only the first this many words (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1, max = 10_000))]
    pub(crate) max_words: Option<usize>,
    /// Scores within this distance of 0 are `neutral`.
    #[serde(default = "default_neutral_band")]
    #[garde(range(min = 0.0, max = 5.0))]
    pub(crate) neutral_band: f64,
}

impl Review {
    /// A review of `text` with the defaults (no explanation, every word, band 0.5).
    #[allow(dead_code)] // the caller's; the worker builds reviews from JSON
    pub(crate) fn of(text: impl Into<String>) -> Review {
        Review {
            text: text.into(),
            explain: false,
            max_words: None,
            neutral_band: default_neutral_band(),
        }
    }
}

pub(crate) fn default_neutral_band() -> f64 {
    0.5
}

/// The sentiment of a review.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, worker::JsonSchema)]
#[schemars(crate = "worker::schemars")]
pub(crate) struct Sentiment {
    pub(crate) label: String,
    /// The sum of the weights, normalised by the number of words, in -5 … 5.
    pub(crate) score: f64,
    pub(crate) words_matched: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) explanation: Option<Vec<(String, i32)>>,
}
