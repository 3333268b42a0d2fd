//! Our echo worker for the benchmark: returns its input, after sleeping `input.sleep_ms` (async)
//! when given. Concurrency from `BENCH_CONCURRENCY` (default 1), the runtime's flavor from
//! `BENCH_RUNTIME` (`multi_thread`, the default, or `current_thread`). The runtime is built exactly as
//! a `#[worker::handler]` main builds it; the `echo` example is the same worker with the macro.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let concurrency = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // `flavor = "current_thread"` builds the other kind of runtime; nothing else changes.
    let mut builder = match std::env::var("BENCH_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        let handler = worker::handler_fn(|input: worker::Value, _job: worker::Job| async move {
            if let Some(ms) = input.get("sleep_ms").and_then(worker::Value::as_u64) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok::<_, std::convert::Infallible>(input)
        });
        worker::Worker::new(handler)
            .concurrency(concurrency)
            .run()
            .await
    })
}
