// The job context by value (`Job`, imported), a `serde_json::Value` input, no return value.
use worker::Job;

#[worker::handler(main = false)]
fn log(job: Job, input: serde_json::Value) {
    worker::tracing::info!("job {} got {input}", job.id());
}

fn main() {
    let _ = worker_main;
    // The handler stays callable from tests.
    log(Job::new("j", serde_json::json!({})), serde_json::json!(1));
}
