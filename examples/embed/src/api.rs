//! The embed example's job contract: the request (`{"text": …}` or `{"texts": […]}`), its checks,
//! and the response, plus [`respond`], which embeds the requests of a whole batch of jobs in one
//! model call. The example's handler and the benchmark's worker both use it.

use serde::{Deserialize, Serialize};

use crate::{DIMENSIONS, Embedder, Embedding, NAME};

/// The most texts one job may carry.
pub const MAX_TEXTS: usize = 256;

/// A job's input: one text (`text`) or a list of them (`texts`, at most 256).
///
/// `garde::Validate`: the worker checks the list's length before the job joins a batch (and
/// the schema shows it); `texts()` checks what a rule cannot say (one of the two fields).
#[derive(Debug, Deserialize, schemars::JsonSchema, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// One text to embed.
    #[serde(default)]
    #[garde(skip)]
    text: Option<String>,
    /// Several texts to embed, in order.
    #[serde(default)]
    #[garde(length(min = 1, max = MAX_TEXTS))]
    texts: Option<Vec<String>>,
}

/// A job's output: `embedding` for `text`, `embeddings` for `texts`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Response {
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
    pub fn texts(self) -> anyhow::Result<(Vec<String>, bool)> {
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

/// Embed the requests of a batch of jobs: every text of every valid request in one model call
/// (sorted by length inside), then each job's vectors, or its own error for a bad request. A
/// model error is the whole batch's.
pub fn respond(
    model: &Embedder,
    requests: Vec<Request>,
) -> anyhow::Result<Vec<anyhow::Result<Response>>> {
    let checked: Vec<anyhow::Result<(Vec<String>, bool)>> =
        requests.into_iter().map(Request::texts).collect();
    let all: Vec<String> = checked
        .iter()
        .flatten()
        .flat_map(|(texts, _)| texts.iter().cloned())
        .collect();
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
