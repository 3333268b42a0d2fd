//! A streaming worker: a toy language model that streams `max_tokens` words, one at a time.
//! Each word reaches the platform (and a client reading `/stream/{id}`) before the next is made.
//!
//! ```text
//! cargo run --example stream                                    # built-in test input
//! cargo run --example stream -- --test_input '{"input": {"prompt": "the worker", "max_tokens": 5}}'
//! cargo run --example stream -- --rp_serve_api                  # then POST /run and GET /stream/{id}
//! ```
//!
//! The handler takes a `StreamSender<String>`, which makes it a streaming handler. It is a
//! plain function (it sleeps between words), so it sends with `send_blocking`.

use std::time::Duration;

use serde::Deserialize;
use worker::{StreamError, StreamSender};

#[derive(Debug, Deserialize)]
struct Prompt {
    prompt: String,
    #[serde(default = "default_max_tokens")]
    max_tokens: usize,
}

fn default_max_tokens() -> usize {
    16
}

/// The "model": a small text whose word pairs decide what comes next.
const CORPUS: &str = "the worker takes a job from the queue and the handler runs the job \
    and the worker posts the result and the platform returns the result to the client and \
    the client reads the stream while the worker sends each word of the stream to the platform";

/// The word after `word` in the corpus (the first of its successors, rotating with `n` so
/// the text does not loop too soon); the corpus's first word when `word` is unknown.
fn next_word(word: &str, n: usize) -> &'static str {
    let words: Vec<&'static str> = CORPUS.split_whitespace().collect();
    let successors: Vec<&'static str> = words
        .windows(2)
        .filter(|pair| pair[0] == word)
        .map(|pair| pair[1])
        .collect();
    if successors.is_empty() {
        words[0]
    } else {
        successors[n % successors.len()]
    }
}

/// Delay between words: `TOKEN_DELAY_MS`, 50 ms by default.
fn token_delay() -> Duration {
    let ms = std::env::var("TOKEN_DELAY_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(50);
    Duration::from_millis(ms)
}

#[worker::handler(
    test_input = "examples/stream/test_input.json",
    return_aggregate_stream
)]
fn generate(input: Prompt, stream: StreamSender<String>) -> Result<(), StreamError> {
    let mut word = input
        .prompt
        .split_whitespace()
        .last()
        .unwrap_or("the")
        .to_lowercase();
    for n in 0..input.max_tokens {
        let next = next_word(&word, n);
        stream.send_blocking(next.to_owned())?;
        word = next.to_owned();
        std::thread::sleep(token_delay());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_max_tokens_words() {
        let job = worker::Job::new("t", worker::json!({}));
        let stream = StreamSender::new(&job);
        generate(
            Prompt {
                prompt: "the".into(),
                max_tokens: 4,
            },
            stream,
        )
        .unwrap();
        let words = job.streamed();
        assert_eq!(words.len(), 4);
        assert_eq!(words[0], "worker");
    }
}
