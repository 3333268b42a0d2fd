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
use worker::tracing::info;

/// The "model": word → sentiment weight (-5 … 5).
struct Lexicon {
    weights: HashMap<String, i32>,
}

mod types;
use types::{Review, Sentiment};

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
    fn score(&self, review: &Review) -> Sentiment {
        let mut total = 0i32;
        let mut matched = Vec::new();
        let mut negate = false;
        let words: Vec<String> = review
            .text
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .take(review.max_words.unwrap_or(usize::MAX))
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
        let band = review.neutral_band;
        let label = match score {
            s if s > band => "positive",
            s if s < -band => "negative",
            _ => "neutral",
        };
        let score = (score * 100.0).round() / 100.0;
        Sentiment {
            label: label.to_owned(),
            score,
            words_matched: matched.len(),
            explanation: review.explain.then_some(matched),
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
    Ok(lexicon.score(&review))
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
            review("The food was great and the staff friendly", false),
            &lexicon,
            &job,
        )
        .unwrap();
        assert_eq!(out.label, "positive");
        let out = classify(review("not good, slow and rude", true), &lexicon, &job).unwrap();
        assert_eq!(out.label, "negative");
        assert_eq!(out.explanation.unwrap()[0], ("good".to_string(), -3));
        assert!(classify(review("  ", false), &lexicon, &job).is_err());
        let capped = Review {
            max_words: Some(3),
            ..review("The food was great and the staff friendly", false)
        };
        assert_eq!(classify(capped, &lexicon, &job).unwrap().label, "neutral");
    }

    fn review(text: &str, explain: bool) -> Review {
        Review {
            text: text.into(),
            explain,
            max_words: None,
            neutral_band: types::default_neutral_band(),
        }
    }

    #[test]
    fn the_declared_constraints_hold_every_violation() {
        use garde::Validate as _;
        assert!(review("great", false).validate().is_ok());
        let bad = Review {
            max_words: Some(0),
            neutral_band: 9.0,
            ..review("", false)
        };
        let report = bad.validate().unwrap_err();
        let mut paths: Vec<String> = report.iter().map(|(path, _)| path.to_string()).collect();
        paths.sort();
        assert_eq!(paths, ["max_words", "neutral_band", "text"], "{report}");
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
