//! The same echo worker on crates.io `runpod-sdk` 0.8.0 (`serverless` feature): returns its
//! input, after sleeping `input.sleep_ms` when given. Concurrency from
//! `RUNPOD_WORKER_CONCURRENCY`, which the SDK reads itself. Generated and built by worker-bench.

use std::time::Duration;

use runpod_sdk::serverless::{ServerlessWorker, WorkerJob};

#[tokio::main]
async fn main() {
    let worker = ServerlessWorker::from_env().expect("runpod-sdk worker configuration");
    worker
        .run(|job: WorkerJob| async move {
            if let Some(ms) = job.input.get("sleep_ms").and_then(|v| v.as_u64()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(job.input)
        })
        .await
        .expect("runpod-sdk worker");
}
