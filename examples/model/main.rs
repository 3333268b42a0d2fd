//! A worker with a model: `#[worker::init]` loads a sentiment lexicon from a file once, before
//! the first job, and every job scores a text with it. Shows a typed input and output, state
//! shared by reference, the job context, and `anyhow::Result` errors that fail only their job.
//!
//! ```text
//! cargo run --example model                                          # built-in test input
//! cargo run --example model -- --test_input '{"input": {"text": "not bad at all", "explain": true}}'
//! cargo run --example model -- --schema                              # the input/output contract
//! LEXICON_PATH=/models/lexicon.tsv ./model                           # in an image
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use worker::tracing::info;

/// The "model": word → sentiment weight (-5 … 5).
struct Lexicon {
    weights: HashMap<String, i32>,
}

// `JsonSchema` makes the input and output the endpoint's contract: `--schema` prints them,
// with the doc comments as descriptions.
/// A review to score.
#[derive(Debug, Deserialize, worker::JsonSchema)]
#[schemars(crate = "worker::schemars")]
struct Review {
    /// The text to score.
    text: String,
    /// Also list the words that contributed and their weights.
    #[serde(default)]
    explain: bool,
}

/// The sentiment of a review.
#[derive(Debug, Serialize, PartialEq, worker::JsonSchema)]
#[schemars(crate = "worker::schemars")]
struct Sentiment {
    label: &'static str,
    /// The sum of the weights, normalised by the number of words, in -5 … 5.
    score: f64,
    words_matched: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Vec<(String, i32)>>,
}

/// Where the lexicon lives: `LEXICON_PATH`, else the file shipped beside this example.
fn lexicon_path() -> PathBuf {
    std::env::var_os("LEXICON_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/model/lexicon.tsv").into()
        })
}

impl Lexicon {
    /// Parse `word<TAB>weight` lines; `#` starts a comment.
    fn parse(text: &str) -> anyhow::Result<Lexicon> {
        let mut weights = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (word, weight) = line.split_once('\t').with_context(|| {
                format!(
                    "line {}: expected `word<TAB>weight`, got {line:?}",
                    number + 1
                )
            })?;
            let weight: i32 = weight.trim().parse().with_context(|| {
                format!(
                    "line {}: weight {weight:?} is not a whole number",
                    number + 1
                )
            })?;
            weights.insert(word.trim().to_lowercase(), weight);
        }
        if weights.is_empty() {
            bail!("the lexicon has no entries");
        }
        Ok(Lexicon { weights })
    }

    /// Score a text: sum the weights of known words, flipping the word after a negation.
    fn score(&self, text: &str, explain: bool) -> Sentiment {
        let mut total = 0i32;
        let mut matched = Vec::new();
        let mut negate = false;
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        for word in &words {
            if matches!(
                word.as_str(),
                "not" | "no" | "never" | "isn't" | "wasn't" | "don't"
            ) {
                negate = true;
                continue;
            }
            if let Some(&weight) = self.weights.get(word) {
                let weight = if negate { -weight } else { weight };
                total += weight;
                matched.push((word.clone(), weight));
            }
            negate = false;
        }
        let score = if words.is_empty() {
            0.0
        } else {
            (f64::from(total) / (words.len() as f64).sqrt()).clamp(-5.0, 5.0)
        };
        let label = match score {
            s if s > 0.5 => "positive",
            s if s < -0.5 => "negative",
            _ => "neutral",
        };
        let score = (score * 100.0).round() / 100.0;
        Sentiment {
            label,
            score,
            words_matched: matched.len(),
            explanation: explain.then_some(matched),
        }
    }
}

/// Runs once, before the first job. If it fails, the worker logs why and exits non-zero.
#[worker::init]
fn load() -> anyhow::Result<Lexicon> {
    let path = lexicon_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read the lexicon at {}", path.display()))?;
    let lexicon = Lexicon::parse(&text)
        .with_context(|| format!("the lexicon at {} is malformed", path.display()))?;
    info!(
        "loaded {} lexicon entries from {}",
        lexicon.weights.len(),
        path.display()
    );
    Ok(lexicon)
}

/// Runs for every job, with the lexicon `load` built.
#[worker::handler(test_input = "examples/model/test_input.json")]
fn classify(review: Review, lexicon: &Lexicon, job: &worker::Job) -> anyhow::Result<Sentiment> {
    if review.text.trim().is_empty() {
        bail!(
            "`text` is empty: send the text to score, e.g. {{\"input\": {{\"text\": \"great service\"}}}}"
        );
    }
    info!(
        "scoring {} characters for job {}",
        review.text.len(),
        job.id()
    );
    Ok(lexicon.score(&review.text, review.explain))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The annotated functions are still plain functions: call them directly.
    #[test]
    fn scores_with_the_shipped_lexicon() {
        let lexicon = load().unwrap();
        let job = worker::Job::new("t1", worker::json!({"text": "great"}));
        let out = classify(
            Review {
                text: "The food was great and the staff friendly".into(),
                explain: false,
            },
            &lexicon,
            &job,
        )
        .unwrap();
        assert_eq!(out.label, "positive");
        let out = classify(
            Review {
                text: "not good, slow and rude".into(),
                explain: true,
            },
            &lexicon,
            &job,
        )
        .unwrap();
        assert_eq!(out.label, "negative");
        assert_eq!(out.explanation.unwrap()[0], ("good".to_string(), -3));
        assert!(
            classify(
                Review {
                    text: "  ".into(),
                    explain: false
                },
                &lexicon,
                &job
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_lexicons_are_reported_with_the_line() {
        let err = Lexicon::parse("good\t3\nbad three\n").err().unwrap();
        assert_eq!(
            err.to_string(),
            "line 2: expected `word<TAB>weight`, got \"bad three\""
        );
    }
}
