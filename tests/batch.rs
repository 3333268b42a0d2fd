//! Dynamic batching end to end: the batch fixture worker (`batch = 32`, one batch at a time)
//! takes 200 jobs from the emulator, with bad inputs, failing jobs, a panicking batch and a
//! cancelled job mixed in; every job ends with its own result, exactly once.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Platform, WorkerProcess};

fn batch_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_batch-fixture"))
}

/// The `error_message` of a FAILED job's status.
fn error_message(status: &Value) -> String {
    assert_eq!(status["status"], "FAILED", "{status}");
    let report: Value = serde_json::from_str(status["error"].as_str().unwrap()).unwrap();
    report["error_message"].as_str().unwrap().to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Good,
    BadInput,
    Fails,
    Panics,
    Cancelled,
}

async fn wait_status(platform: &Platform, id: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = platform.status(id).await;
        if status["status"] == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not {want} after {timeout:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_in_batches_each_with_its_own_result() {
    let platform = Platform::start().await;
    let mut env = platform.env();
    // Its debug log says which jobs each batch holds.
    env.push(("RUNPOD_DEBUG_LEVEL".into(), "DEBUG".into()));
    let worker = WorkerProcess::spawn(&batch_fixture(), &env, &[]);

    // A slow first batch: the jobs submitted while it runs are taken and wait in the worker
    // for the next batch, where one of them is cancelled.
    let slow = platform
        .submit(json!({"input": {"n": 0, "sleep_ms": 4000}}))
        .await;
    let started = format!("batch of 1 job(s): {slow}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !worker.stdout().contains(&started) {
        assert!(
            Instant::now() < deadline,
            "no `{started}` in the worker's log:\n{}",
            worker.stdout()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut jobs: Vec<(String, Kind, i64)> = Vec::new();
    for n in 0..200 {
        let (kind, input) = match n {
            7 | 77 | 150 => (Kind::BadInput, json!({"n": "not a number"})),
            13 | 99 => (Kind::Fails, json!({"n": n, "fail": true})),
            120 => (Kind::Panics, json!({"n": n, "panic": true})),
            3 => (Kind::Cancelled, json!({"n": n})),
            _ => (Kind::Good, json!({"n": n})),
        };
        let id = platform.submit(json!({ "input": input })).await;
        jobs.push((id, kind, n));
    }
    let cancelled = jobs[3].0.clone();
    // Taken by the worker (waiting for the slow batch to end), then cancelled.
    wait_status(
        &platform,
        &cancelled,
        "IN_PROGRESS",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(platform.cancel(&cancelled).await["status"], "CANCELLED");
    assert_eq!(
        platform.status(&slow).await["status"],
        "IN_PROGRESS",
        "the slow batch ended before the cancel: the test proves nothing (machine too slow?)"
    );

    let slow_status = platform.finished(&slow, Duration::from_secs(30)).await;
    assert_eq!(
        slow_status["output"],
        json!({"id": slow, "doubled": 0, "batch": 1})
    );

    let mut batch_sizes = Vec::new();
    let mut failed_with_the_panic = Vec::new();
    for (id, kind, n) in &jobs {
        let status = platform.finished(id, Duration::from_secs(60)).await;
        match kind {
            Kind::Cancelled => assert_eq!(status["status"], "CANCELLED", "{status}"),
            Kind::BadInput => assert!(
                error_message(&status).starts_with("input.n: invalid type: string"),
                "{status}"
            ),
            Kind::Fails => {
                let message = error_message(&status);
                if message == "a job asked its batch to panic" {
                    failed_with_the_panic.push(*n);
                } else {
                    assert_eq!(message, format!("job {id} asked to fail"), "{status}");
                }
            }
            Kind::Panics => {
                assert_eq!(error_message(&status), "a job asked its batch to panic");
                failed_with_the_panic.push(*n);
            }
            Kind::Good if status["status"] == "FAILED" => {
                // It shared the panicking job's batch.
                assert_eq!(error_message(&status), "a job asked its batch to panic");
                failed_with_the_panic.push(*n);
            }
            Kind::Good => {
                assert_eq!(status["status"], "COMPLETED", "{status}");
                let output = &status["output"];
                assert_eq!(
                    output["id"], *id,
                    "a job got another job's output: {output}"
                );
                assert_eq!(output["doubled"], n * 2, "{output}");
                batch_sizes.push(output["batch"].as_u64().unwrap());
            }
        }
    }
    // The panic failed its own batch and no other: at most 32 jobs.
    assert!(
        (1..=32).contains(&failed_with_the_panic.len()),
        "{failed_with_the_panic:?}"
    );
    // Jobs queued together were gathered into full batches.
    assert_eq!(batch_sizes.iter().max(), Some(&32), "{batch_sizes:?}");

    // Exactly one final result per job; none for the cancelled one.
    let mut results: HashMap<String, usize> = HashMap::new();
    for request in platform.requests() {
        if request.is_final_done() {
            *results
                .entry(request.last_segment().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(
        results.get(&cancelled),
        None,
        "the cancelled job got a result"
    );
    let log = worker.stdout();
    assert!(
        !log.lines()
            .any(|l| l.contains("batch of ") && l.contains(&cancelled)),
        "the cancelled job was put in a batch:\n{log}"
    );
    for (id, kind, _) in &jobs {
        if *kind != Kind::Cancelled {
            assert_eq!(results.get(id), Some(&1), "job {id} ({kind:?})");
        }
    }
    assert!(
        !worker.stdout().contains("job loop stopped unexpectedly"),
        "{}",
        worker.stdout()
    );
}

#[test]
fn a_list_of_test_jobs_runs_as_one_batch() {
    let input = json!([
        {"input": {"n": 1}},
        {"input": {"n": "x"}},
        {"id": "mine", "input": {"n": 4}},
    ]);
    let (code, stdout, stderr) = support::run_local(
        &batch_fixture(),
        &[],
        &["--test_input", &input.to_string()],
        &[],
    );
    assert_eq!(code, 1, "a job failed, so the exit code says so\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0],
        json!({"output": {"id": "local_test_1", "doubled": 2, "batch": 2}})
    );
    let report: Value = serde_json::from_str(lines[1]["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "InvalidInput");
    assert_eq!(
        lines[2],
        json!({"output": {"id": "mine", "doubled": 8, "batch": 2}})
    );
    assert!(
        stderr.contains("running the 3 jobs from --test_input at once"),
        "{stderr}"
    );
}
