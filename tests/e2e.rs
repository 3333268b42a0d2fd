//! End-to-end: real worker binaries (the examples and a fixture worker) run their production
//! loop against a stand-in RunPod platform on loopback; the tests check what went over the wire.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{API_KEY, Platform, WorkerProcess, example, fixture, run_local};

const LONG: Duration = Duration::from_secs(20);

fn env_with(platform: &Platform, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = platform.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The error report inside a failed job's body.
fn error_report(body: &Value) -> Value {
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "a failed job's body has only `error`: {body}"
    );
    serde_json::from_str(body["error"].as_str().expect("`error` is a JSON string")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_posts_the_output_with_the_platforms_headers() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&example("echo"), &platform.env(), &[]);
    platform
        .push(json!({"id": "job-1", "input": {"a": 1, "text": "héllo ✓"}, "webhook": "ignored"}));
    let done = platform.done("job-1").await;

    assert_eq!(
        done.body.as_ref(),
        "{\"output\":{\"a\":1,\"text\":\"héllo ✓\"}}".as_bytes()
    );
    assert_eq!(done.query, "gpu=TEST&isStream=false");
    assert_eq!(
        done.header("authorization"),
        Some(API_KEY),
        "raw key, no Bearer"
    );
    assert_eq!(
        done.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(done.header("x-request-id"), Some("job-1"));
    let take = platform
        .requests()
        .into_iter()
        .find(|r| r.path == "/v2/ep/job-take/w42")
        .unwrap();
    assert_eq!(take.query, "gpu=TEST&job_in_progress=0");
    assert_eq!(take.header("authorization"), Some(API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_error_is_reported_with_its_chain_and_the_worker_keeps_going() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    platform.push(json!({"id": "bad-1", "input": {"fail": {"message": "the GPU is sulking"}}}));
    let body = platform.done("bad-1").await.json();
    let report = error_report(&body);
    // The report's fields come in the Python SDK's order.
    let raw = body["error"].as_str().unwrap();
    let order = [
        "error_type",
        "error_message",
        "error_traceback",
        "hostname",
        "worker_id",
        "runpod_version",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| raw.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{raw}");
    assert_eq!(report["error_type"], "fixture_worker::FixtureError");
    assert_eq!(report["error_message"], "the GPU is sulking");
    assert_eq!(
        report["error_traceback"],
        "fixture_worker::FixtureError: the GPU is sulking\n\nCaused by:\n    0: the cause"
    );
    assert_eq!(report["hostname"], "host-7");
    assert_eq!(report["worker_id"], "w42");
    assert_eq!(report["runpod_version"], env!("CARGO_PKG_VERSION"));

    platform.push(json!({"id": "ok-2", "input": {"echo": {"value": 5}}}));
    assert_eq!(platform.done("ok-2").await.json(), json!({"output": 5}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_only_its_job() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    platform.push(json!({"id": "p-1", "input": {"panic": {"message": "index out of range"}}}));
    let report = error_report(&platform.done("p-1").await.json());
    assert_eq!(report["error_type"], "panic");
    assert_eq!(report["error_message"], "index out of range");
    let traceback = report["error_traceback"].as_str().unwrap();
    assert!(
        traceback.starts_with("panicked at tests/workers/fixture.rs:"),
        "{traceback}"
    );

    platform.push(json!({"id": "after", "input": {"add": {"a": 2, "b": 3}}}));
    assert_eq!(
        platform.done("after").await.json(),
        json!({"output": {"sum": 5, "greeting": "hi", "job": "after"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_the_job_with_the_json_path() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    platform.push(json!({"id": "in-1", "input": {"add": {"a": "two", "b": 3}}}));
    let report = error_report(&platform.done("in-1").await.json());
    assert_eq!(report["error_type"], "InvalidInput");
    assert_eq!(
        report["error_message"],
        "input.add.a: invalid type: string \"two\", expected i64"
    );
    platform.push(json!({"id": "in-2", "input": {"fly": {}}}));
    let report = error_report(&platform.done("in-2").await.json());
    let message = report["error_message"].as_str().unwrap();
    assert!(
        message.starts_with("input: unknown variant `fly`, expected one of"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_in_progress_and_pings_carry_the_running_job() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(
        &fixture(),
        &env_with(&platform, &[("RUNPOD_PING_INTERVAL", "100")]),
        &[],
    );
    // Concurrency 2: two free slots ask for a batch of two.
    let first_take = platform
        .wait_for(LONG, "a batch take", |reqs| {
            reqs.iter()
                .find(|r| r.path == "/v2/ep/job-take-batch/w42")
                .cloned()
        })
        .await;
    assert_eq!(first_take.query, "gpu=TEST&batch_size=2&job_in_progress=0");

    platform.push(json!({"id": "slow-1", "input": {"sleep": {"ms": 800, "value": "done"}}}));
    // While it runs, the one free slot asks with the single-job URL and job_in_progress=1 ...
    let busy_take = platform
        .wait_for(LONG, "a take with job_in_progress=1", |reqs| {
            reqs.iter()
                .find(|r| {
                    r.path == "/v2/ep/job-take/w42"
                        && r.param("job_in_progress").as_deref() == Some("1")
                })
                .cloned()
        })
        .await;
    assert_eq!(busy_take.query, "gpu=TEST&job_in_progress=1");
    // ... and the heartbeat names it.
    let ping = platform
        .wait_for(LONG, "a ping naming slow-1", |reqs| {
            reqs.iter()
                .find(|r| {
                    r.path == "/v2/ep/ping/w42" && r.param("job_id").as_deref() == Some("slow-1")
                })
                .cloned()
        })
        .await;
    assert_eq!(
        ping.query,
        format!(
            "gpu=TEST&job_id=slow-1&runpod_version={}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(ping.header("authorization"), Some(API_KEY));
    assert_eq!(
        platform.done("slow-1").await.json(),
        json!({"output": "done"})
    );
    // Idle again: pings carry no job id.
    platform
        .wait_for(LONG, "an idle ping after the job", |reqs| {
            let done_at = reqs
                .iter()
                .position(|r| r.path.ends_with("/job-done/w42/slow-1"))?;
            reqs[done_at..]
                .iter()
                .find(|r| r.path == "/v2/ep/ping/w42" && r.param("job_id").is_none())
                .cloned()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_run_at_once_with_concurrency_two() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let started = std::time::Instant::now();
    platform.push(json!({"id": "c-1", "input": {"sleep": {"ms": 700, "value": 1}}}));
    platform.push(json!({"id": "c-2", "input": {"sleep": {"ms": 700, "value": 2}}}));
    assert_eq!(platform.done("c-1").await.json(), json!({"output": 1}));
    assert_eq!(platform.done("c-2").await.json(), json!({"output": 2}));
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "sync handlers should run in parallel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_reports_unhealthy_and_exits_nonzero() {
    let platform = Platform::start().await;
    let mut worker = WorkerProcess::spawn(
        &fixture(),
        &env_with(&platform, &[("FIXTURE_INIT_FAIL", "1")]),
        &[],
    );
    let status = worker.exit(LONG).await;
    assert_eq!(status.code(), Some(1));
    let ping = platform
        .requests()
        .into_iter()
        .find(|r| r.path == "/v2/ep/ping/w42")
        .expect("an unhealthy ping");
    assert_eq!(ping.param("status").as_deref(), Some("unhealthy"));
    assert_eq!(ping.param("check").as_deref(), Some("init"));
    assert_eq!(
        ping.param("reason").as_deref(),
        Some("std%3A%3Aio%3A%3Aerror%3A%3AError%3A%20the%20weights%20file%20is%20missing")
    );
    assert!(
        !platform
            .requests()
            .iter()
            .any(|r| r.path.contains("job-take")),
        "no job is taken after a failed init"
    );
    let logs = worker.stdout();
    assert!(
        logs.contains(
            "init function `init` failed: std::io::error::Error: the weights file is missing"
        ),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_panic_exits_nonzero_with_the_message() {
    let platform = Platform::start().await;
    let mut worker = WorkerProcess::spawn(
        &fixture(),
        &env_with(&platform, &[("FIXTURE_INIT_PANIC", "1")]),
        &[],
    );
    assert_eq!(worker.exit(LONG).await.code(), Some(1));
    assert!(
        worker
            .stdout()
            .contains("init function `init` failed: panic: init exploded"),
        "{}",
        worker.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_and_post() {
    let platform = Platform::start().await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    platform.push(json!({"id": "t-1", "input": {"sleep": {"ms": 600, "value": "finished"}}}));
    platform
        .wait_for(LONG, "the job to start", |reqs| {
            reqs.iter()
                .any(|r| r.param("job_in_progress").as_deref() == Some("1"))
                .then_some(())
        })
        .await;
    worker.signal("TERM");
    let status = worker.exit(LONG).await;
    assert_eq!(status.code(), Some(0), "{}", worker.stdout());
    assert_eq!(
        platform.done("t-1").await.json(),
        json!({"output": "finished"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_job_id_and_never_the_api_key() {
    let platform = Platform::start().await;
    let env = env_with(
        &platform,
        &[("RUNPOD_ENDPOINT_ID", "ep"), ("RUNPOD_LOG_LEVEL", "TRACE")],
    );
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    platform.push(
        json!({"id": "log-1", "input": {"log": {"lines": ["from the handler"]}}, "batchId": "b-9"}),
    );
    platform.done("log-1").await;
    worker.signal("TERM");
    worker.exit(LONG).await;
    let stdout = worker.stdout();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["message"] == "[batchId=b-9] from the handler")
        .expect("the handler's line");
    assert_eq!(
        line,
        &json!({"requestId": "log-1", "message": "[batchId=b-9] from the handler", "level": "INFO"})
    );
    assert!(
        lines
            .iter()
            .any(|l| l["requestId"] == "log-1" && l["message"] == "[batchId=b-9] Started.")
    );
    assert!(
        !stdout.contains(API_KEY) && !worker.stderr().contains(API_KEY),
        "the API key leaked into the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_errors_back_off_instead_of_hot_looping() {
    // Point job-take at a route that answers 404: the worker logs and backs off.
    let platform = Platform::start().await;
    let mut env = platform.env();
    for (k, v) in env.iter_mut() {
        if k == "RUNPOD_WEBHOOK_GET_JOB" {
            *v = v.replace("job-take", "job-take-missing");
        }
    }
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = platform
        .requests()
        .iter()
        .filter(|r| r.path.contains("job-take-missing"))
        .count();
    assert!(
        (2..=12).contains(&attempts),
        "{attempts} job-take attempts in 1.5 s"
    );
    assert!(
        worker.is_running(),
        "the worker must survive platform errors"
    );
    assert!(
        worker
            .stdout()
            .contains("Failed to get job: HTTP 404 Not Found"),
        "{}",
        worker.stdout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_limit_fails_the_job_with_its_size() {
    let platform = Platform::start().await;
    let env = env_with(&platform, &[("WORKER_MAX_OUTPUT_BYTES", "1000")]);
    let _worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    platform.push(json!({"id": "big-1", "input": {"big": {"bytes": 5000}}}));
    let report = error_report(&platform.done("big-1").await.json());
    assert_eq!(report["error_type"], "OutputTooLarge");
    assert_eq!(
        report["error_message"],
        "the job's result is 5.0 kB (5013 bytes), more than the 1.0 kB the platform accepts \
         (WORKER_MAX_OUTPUT_BYTES); return less, or upload large data to storage and return its URL"
    );
    platform.push(json!({"id": "small", "input": {"big": {"bytes": 10}}}));
    assert_eq!(
        platform.done("small").await.json(),
        json!({"output": "xxxxxxxxxx"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_still_running_after_the_grace_period_are_reported_failed() {
    let platform = Platform::start().await;
    let env = env_with(&platform, &[("WORKER_SHUTDOWN_GRACE_SECONDS", "1")]);
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    platform.push(json!({"id": "long-1", "input": {"sleep": {"ms": 20000, "value": 0}}}));
    platform
        .wait_for(LONG, "the job to start", |reqs| {
            reqs.iter()
                .any(|r| r.param("job_in_progress").as_deref() == Some("1"))
                .then_some(())
        })
        .await;
    let signalled = std::time::Instant::now();
    worker.signal("TERM");
    let report = error_report(&platform.done("long-1").await.json());
    assert_eq!(report["error_type"], "WorkerShutdown");
    assert!(
        report["error_message"]
            .as_str()
            .unwrap()
            .starts_with("worker shutting down: the job did not finish within the 1s grace period")
    );
    assert_eq!(worker.exit(LONG).await.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let platform = Platform::start().await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    platform.push(json!({"id": "long-2", "input": {"sleep": {"ms": 20000, "value": 0}}}));
    platform
        .wait_for(LONG, "the job to start", |reqs| {
            reqs.iter()
                .any(|r| r.param("job_in_progress").as_deref() == Some("1"))
                .then_some(())
        })
        .await;
    worker.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(worker.is_running(), "the first signal waits for the job");
    worker.signal("INT");
    assert_eq!(worker.exit(Duration::from_secs(5)).await.code(), Some(1));
}

/* ---- local test mode ---- */

#[test]
fn local_mode_runs_the_embedded_test_input_and_prints_the_result() {
    let (code, stdout, stderr) = run_local(&example("echo"), &[], &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "{\"output\":{\"message\":\"hello from echo\",\"numbers\":[1,2,3]}}\n"
    );
    assert!(stderr.contains("examples/echo/test_input.json"), "{stderr}");
    assert!(
        stderr.contains("Job local_test completed successfully."),
        "{stderr}"
    );
}

#[test]
fn local_mode_prefers_the_flag_then_the_file() {
    let file = r#"{"input": "from the file"}"#;
    let (code, stdout, _) = run_local(
        &example("echo"),
        &[],
        &["--test_input", r#"{"input": "from the flag"}"#],
        &[("test_input.json", file)],
    );
    assert_eq!(
        (code, stdout.as_str()),
        (0, "{\"output\":\"from the flag\"}\n")
    );
    let (code, stdout, _) = run_local(&example("echo"), &[], &[], &[("test_input.json", file)]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "{\"output\":\"from the file\"}\n")
    );
    // --test_input wins even when the platform's variables are set.
    let (code, stdout, _) = run_local(
        &example("echo"),
        &[("RUNPOD_WEBHOOK_GET_JOB", "http://127.0.0.1:9/job-take/$ID")],
        &["--test_input", r#"{"input": 1}"#],
        &[],
    );
    assert_eq!((code, stdout.as_str()), (0, "{\"output\":1}\n"));
}

#[test]
fn local_mode_errors_say_what_to_fix() {
    let fix = fixture();
    let (code, stdout, stderr) = run_local(&fix, &[], &[], &[]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("no test input: pass --test_input"),
        "{stderr}"
    );

    let (code, _, stderr) = run_local(&fix, &[], &[], &[("test_input.json", "{\"input\": ")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("./test_input.json is not valid JSON"),
        "{stderr}"
    );

    let (code, _, stderr) = run_local(&fix, &[], &["--test_input", r#"{"prompt": "hi"}"#], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--test_input has no `input`"), "{stderr}");

    let (code, stdout, stderr) = run_local(
        &fix,
        &[],
        &[
            "--test_input",
            r#"{"input": {"fail": {"message": "nope"}}}"#,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(stdout.starts_with("{\"error\":"), "{stdout}");
    assert!(
        stderr.contains("Job local_test failed: fixture_worker::FixtureError: nope"),
        "{stderr}"
    );
}

#[test]
fn local_mode_checks_the_output_size_too() {
    let (code, stdout, stderr) = run_local(
        &fixture(),
        &[("WORKER_MAX_OUTPUT_BYTES", "100")],
        &["--test_input", r#"{"input": {"big": {"bytes": 500}}}"#],
        &[],
    );
    assert_eq!(code, 1);
    assert!(stdout.contains("OutputTooLarge"), "{stdout}");
    assert!(
        stderr.contains("more than the 100 bytes the platform accepts"),
        "{stderr}"
    );
}

#[test]
fn local_mode_runs_hello_and_model() {
    let (code, stdout, stderr) = run_local(&example("hello"), &[("SLEEP_TIME", "1")], &[], &[]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "{\"output\":\"Hello World\"}\n"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("working, I promise").count(), 1, "{stderr}");

    let (code, stdout, stderr) = run_local(
        &example("model"),
        &[],
        &[
            "--test_input",
            r#"{"input": {"text": "great food, friendly staff"}}"#,
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["output"]["label"], "positive");

    let (code, _, stderr) = run_local(
        &example("model"),
        &[("LEXICON_PATH", "/nonexistent/lexicon.tsv")],
        &[],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("could not read the lexicon at /nonexistent/lexicon.tsv"),
        "{stderr}"
    );
    assert!(
        stderr.contains("No such file or directory"),
        "the cause chain is logged: {stderr}"
    );
}
