//! The embed example's model and request contract (`embed::api`) as a benchmark worker, built
//! without the macros so one binary runs every configuration: `BENCH_BATCH=32` gathers up to 32
//! jobs into one model call ([`worker::Batched`], as `#[worker::handler(batch = 32)]` does in
//! `examples/embed`), `BENCH_BATCH=0` (or unset) runs one job per call; `BENCH_CONCURRENCY`
//! calls (or batches) at once. The model is loaded once from `MODEL_DIR`; each model call runs
//! on one thread (`RAYON_NUM_THREADS=1`, as the example sets it).

use std::process::ExitCode;
use std::time::Duration;

use embed::Embedder;
use embed::api::{Request, Response, respond};
use worker::{Batch, BatchHandler, BatchInvocation, Failure, Outcome};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A job's outcome from its own result.
fn outcome(result: anyhow::Result<Response>) -> Outcome {
    match result {
        Ok(response) => Outcome::output(&response),
        Err(e) => Outcome::failed(Failure::from_error("anyhow::Error", e.as_ref())),
    }
}

/// Every job of a batch through one model call, on a blocking thread.
struct EmbedBatch(&'static Embedder);

impl BatchHandler for EmbedBatch {
    type Input = Request;

    fn call(&self, batch: Batch<Request>) -> BatchInvocation {
        let model = self.0;
        let (requests, _jobs) = batch.into_parts();
        BatchInvocation::blocking(move || match respond(model, requests) {
            Ok(results) => Ok(results.into_iter().map(outcome).collect()),
            Err(e) => Err(Failure::from_error("anyhow::Error", e.as_ref())),
        })
    }
}

/// One job per model call, on a blocking thread.
struct EmbedOne(&'static Embedder);

impl worker::Handler for EmbedOne {
    fn call(&self, job: worker::Job) -> worker::Invocation {
        let model = self.0;
        let request: Request = match serde_json::from_value(job.input().clone()) {
            Ok(request) => request,
            Err(e) => {
                return worker::Invocation::ready(Outcome::failed(Failure::new(
                    "InvalidInput",
                    format!("input: {e}"),
                )));
            }
        };
        worker::Invocation::blocking(move || match respond(model, vec![request]) {
            Ok(mut results) => outcome(results.remove(0)),
            Err(e) => Outcome::failed(Failure::from_error("anyhow::Error", e.as_ref())),
        })
    }
}

#[allow(unsafe_code)]
fn main() -> ExitCode {
    // As examples/embed does: one thread per model call (candle's threads cost more than they
    // gain on a model this small), unless the environment says otherwise.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let batch = env_usize("BENCH_BATCH", 0);
    let concurrency = env_usize("BENCH_CONCURRENCY", 1);
    let model: &'static Embedder = match Embedder::load(&embed::model_dir()) {
        Ok(model) => Box::leak(Box::new(model)),
        Err(e) => {
            eprintln!("error: loading the model: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        if batch > 0 {
            let batched =
                worker::Batched::new(EmbedBatch(model), batch).wait(Duration::from_millis(5));
            worker::Worker::new(batched)
                .concurrency(concurrency)
                .run()
                .await
        } else {
            worker::Worker::new(EmbedOne(model))
                .concurrency(concurrency)
                .run()
                .await
        }
    })
}
