//! RunPod's "Hello World" worker, ported: it works for `SLEEP_TIME` seconds (default 3), saying
//! so every second (in the log, and as a progress update the client sees in `/status`), and
//! returns "Hello World".
//!
//! ```text
//! cargo run --example hello                       # local test mode, built-in test input
//! SLEEP_TIME=1 cargo run --example hello -- --test_input '{"input": {"name": "you"}}'
//! ```
//!
//! The handler is a plain (sync) function: the worker runs it on a blocking thread, so sleeping
//! here does not hold up the heartbeat or other jobs.

use std::time::Duration;

use worker::tracing::info;

/// How long the worker pretends to work: `SLEEP_TIME` seconds, 3 by default.
fn sleep_time() -> u64 {
    std::env::var("SLEEP_TIME")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(3)
}

#[worker::handler(test_input = "examples/hello/test_input.json")]
fn hello(_input: worker::Value, job: &worker::Job) -> &'static str {
    let seconds = sleep_time();
    for done in 0..seconds {
        info!("working, I promise");
        job.progress(&worker::json!({ "seconds_done": done, "seconds_total": seconds }));
        std::thread::sleep(Duration::from_secs(1));
    }
    "Hello World"
}
