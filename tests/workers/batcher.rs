//! A batch worker for tests/batch.rs. Each job's input is `{"n": 3}` (and optionally `"fail":
//! true`, `"panic": true`, `"sleep_ms": 500`); a batch of up to 32 jobs runs in one call of a
//! sync handler (on a blocking thread), which sleeps for the longest `sleep_ms` of the batch,
//! panics if any job asked it to, and otherwise returns per job `{"id", "doubled", "batch"}`
//! or that job's own error.

use serde::{Deserialize, Serialize};
use worker::Job;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    n: i64,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    sleep_ms: u64,
}

#[derive(Serialize)]
struct Doubled {
    /// The job this output was made for, so a test can tell results apart.
    id: String,
    doubled: i64,
    /// How many jobs the call that made it held.
    batch: usize,
}

#[worker::handler(batch = 32, batch_wait = "20ms", concurrency = 1)]
fn double(items: Vec<Item>, jobs: &[Job]) -> Vec<Result<Doubled, String>> {
    assert!(
        !items.iter().any(|item| item.panic),
        "a job asked its batch to panic"
    );
    let sleep = items.iter().map(|item| item.sleep_ms).max().unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(sleep));
    items
        .iter()
        .zip(jobs)
        .map(|(item, job)| {
            if item.fail {
                return Err(format!("job {} asked to fail", job.id()));
            }
            Ok(Doubled {
                id: job.id().to_owned(),
                doubled: item.n * 2,
                batch: items.len(),
            })
        })
        .collect()
}
