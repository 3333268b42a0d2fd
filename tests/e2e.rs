//! End-to-end: real worker binaries (the examples and a fixture worker) run their production
//! loop against the local RunPod emulator on loopback; jobs are submitted through its client
//! API, and the tests check what went over the wire with its request recorder.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{API_KEY, Platform, WorkerProcess, example, fixture, json, run_local};

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

/// Whether a take was made while a job was in progress (the job has started).
fn a_job_runs(reqs: &[support::RecordedRequest]) -> Option<()> {
    reqs.iter()
        .any(|r| r.path.contains("/job-take") && r.param("job_in_progress") == Some("1"))
        .then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_posts_the_output_with_the_platforms_headers() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&example("echo"), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"a": 1, "text": "héllo ✓"}}))
        .await;
    let done = platform.done(&id).await;

    assert_eq!(
        done.body,
        "{\"output\":{\"a\":1,\"text\":\"héllo ✓\"}}".as_bytes()
    );
    assert_eq!(done.query, "gpu=local&isStream=false");
    assert_eq!(
        done.header("authorization"),
        Some(API_KEY),
        "raw key, no Bearer"
    );
    assert_eq!(
        done.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(done.header("charset"), Some("utf-8"));
    assert_eq!(done.header("x-request-id"), Some(id.as_str()));
    let take = platform
        .requests()
        .into_iter()
        .find(|r| r.path == platform.path("job-take"))
        .unwrap();
    assert_eq!(take.query, "gpu=local&job_in_progress=0");
    assert_eq!(take.header("authorization"), Some(API_KEY));
    let status = platform.finished(&id, LONG).await;
    assert_eq!(status["status"], "COMPLETED");
    assert_eq!(status["output"], json!({"a": 1, "text": "héllo ✓"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_error_is_reported_with_its_chain_and_the_worker_keeps_going() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"fail": {"message": "the GPU is sulking"}}}))
        .await;
    let body = json(&platform.done(&id).await);
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
    // The client sees the job FAILED with the report string as is.
    let status = platform.finished(&id, LONG).await;
    assert_eq!(status["status"], "FAILED");
    assert_eq!(status["error"], raw);

    let ok = platform
        .submit(json!({"input": {"echo": {"value": 5}}}))
        .await;
    assert_eq!(json(&platform.done(&ok).await), json!({"output": 5}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_only_its_job() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"panic": {"message": "index out of range"}}}))
        .await;
    let report = error_report(&json(&platform.done(&id).await));
    assert_eq!(report["error_type"], "panic");
    assert_eq!(report["error_message"], "index out of range");
    let traceback = report["error_traceback"].as_str().unwrap();
    assert!(
        traceback.starts_with("panicked at tests/workers/fixture.rs:"),
        "{traceback}"
    );

    let after = platform
        .submit(json!({"input": {"add": {"a": 2, "b": 3}}}))
        .await;
    assert_eq!(
        json(&platform.done(&after).await),
        json!({"output": {"sum": 5, "greeting": "hi", "job": after}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_the_job_with_the_json_path() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"add": {"a": "two", "b": 3}}}))
        .await;
    let report = error_report(&json(&platform.done(&id).await));
    assert_eq!(report["error_type"], "InvalidInput");
    assert_eq!(
        report["error_message"],
        "input.add.a: invalid type: string \"two\", expected i64"
    );
    let id = platform.submit(json!({"input": {"fly": {}}})).await;
    let report = error_report(&json(&platform.done(&id).await));
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
    let batch_path = platform.path("job-take-batch");
    let first_take = platform
        .wait_for(LONG, "a batch take", |reqs| {
            reqs.iter().find(|r| r.path == batch_path).cloned()
        })
        .await;
    assert_eq!(first_take.query, "gpu=local&batch_size=2&job_in_progress=0");

    let id = platform
        .submit(json!({"input": {"sleep": {"ms": 800, "value": "done"}}}))
        .await;
    // While it runs, the one free slot asks with the single-job URL and job_in_progress=1 ...
    let take_path = platform.path("job-take");
    let busy_take = platform
        .wait_for(LONG, "a take with job_in_progress=1", |reqs| {
            reqs.iter()
                .find(|r| r.path == take_path && r.param("job_in_progress") == Some("1"))
                .cloned()
        })
        .await;
    assert_eq!(busy_take.query, "gpu=local&job_in_progress=1");
    // ... and the heartbeat names it.
    let ping_path = platform.path("ping");
    let ping = platform
        .wait_for(LONG, "a ping naming the job", |reqs| {
            reqs.iter()
                .find(|r| r.path == ping_path && r.param("job_id") == Some(id.as_str()))
                .cloned()
        })
        .await;
    assert_eq!(
        ping.query,
        format!(
            "gpu=local&job_id={id}&runpod_version={}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(ping.header("authorization"), Some(API_KEY));
    assert_eq!(json(&platform.done(&id).await), json!({"output": "done"}));
    // Idle again: pings carry no job id.
    let done_path = format!("{}/{id}", platform.path("job-done"));
    platform
        .wait_for(LONG, "an idle ping after the job", |reqs| {
            let done_at = reqs.iter().position(|r| r.path == done_path)?;
            reqs[done_at..]
                .iter()
                .find(|r| r.path == ping_path && r.param("job_id").is_none())
                .cloned()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_run_at_once_with_concurrency_two() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    // Wait until the worker is asking for jobs, so both are there for one batch take.
    platform
        .wait_for(LONG, "a take", |reqs| reqs.first().cloned())
        .await;
    let started = std::time::Instant::now();
    let a = platform
        .submit(json!({"input": {"sleep": {"ms": 700, "value": 1}}}))
        .await;
    let b = platform
        .submit(json!({"input": {"sleep": {"ms": 700, "value": 2}}}))
        .await;
    assert_eq!(json(&platform.done(&a).await), json!({"output": 1}));
    assert_eq!(json(&platform.done(&b).await), json!({"output": 2}));
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "sync handlers should run in parallel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_reports_unhealthy_and_exits_nonzero() {
    let platform = Platform::start().await;
    // The job that caused the scale-up is queued before the worker starts: it is taken while
    // init runs and told why the worker could not start, instead of waiting for its TTL.
    let queued = platform
        .submit(json!({"input": {"echo": {"value": 1}}}))
        .await;
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
        .find(|r| r.path == platform.path("ping") && r.param("status") == Some("unhealthy"))
        .expect("an unhealthy ping");
    assert_eq!(ping.param("check"), Some("init"));
    assert_eq!(
        ping.param("reason"),
        Some("std%3A%3Aio%3A%3Aerror%3A%3AError%3A+the+weights+file+is+missing")
    );
    let job = platform.finished(&queued, LONG).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    let report: Value = serde_json::from_str(job["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "WorkerInitFailed");
    assert_eq!(
        report["error_message"],
        "the worker could not start: its init function `init` failed: std::io::error::Error: \
         the weights file is missing"
    );
    assert_init_lines(&report);
    let logs = worker.stdout();
    assert!(
        logs.contains(
            "init function `init` failed: std::io::error::Error: the weights file is missing"
        ),
        "{logs}"
    );
}

/// A slow init does not delay taking: the job queued before the worker started is taken while
/// init runs, in the pings meanwhile, and runs as soon as init is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_taken_while_init_runs_run_after_it() {
    let platform = Platform::start().await;
    let queued = platform
        .submit(json!({"input": {"echo": {"value": 2}}}))
        .await;
    let _worker = WorkerProcess::spawn(
        &fixture(),
        &env_with(
            &platform,
            &[
                ("FIXTURE_INIT_SLEEP_MS", "1500"),
                ("RUNPOD_PING_INTERVAL", "200"),
            ],
        ),
        &[],
    );
    // Taken (and pinged as in progress) before init finished.
    let ping_path = platform.path("ping");
    platform
        .wait_for(LONG, "a ping listing the held job", |reqs| {
            reqs.iter()
                .any(|r| r.path == ping_path && r.param("job_id") == Some(queued.as_str()))
                .then_some(())
        })
        .await;
    assert_eq!(json(&platform.done(&queued).await), json!({"output": 2}));
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
    // A 30 s long-poll: the worker must abort it rather than wait it out.
    let platform =
        Platform::start_with(support::builder().take_timeout(Duration::from_secs(30))).await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"sleep": {"ms": 600, "value": "finished"}}}))
        .await;
    platform
        .wait_for(LONG, "the job to start", a_job_runs)
        .await;
    let signalled = std::time::Instant::now();
    worker.signal("TERM");
    let status = worker.exit(LONG).await;
    assert_eq!(status.code(), Some(0), "{}", worker.stdout());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "the job-take long-poll was not aborted: {:?}",
        signalled.elapsed()
    );
    assert_eq!(
        json(&platform.done(&id).await),
        json!({"output": "finished"})
    );
    assert_eq!(platform.status(&id).await["status"], "COMPLETED");
}

/// A handler's own rustls-based HTTP client works in local test mode too: the runtime installs
/// the crypto provider in every mode, not only when it builds its platform client.
#[test]
fn a_handlers_own_http_client_works_in_local_test_mode() {
    let (code, stdout, stderr) = run_local(
        &fixture(),
        &[],
        &["--test_input", r#"{"input": {"http_client": null}}"#],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "{\"output\":{\"client_built\":true}}\n", "{stderr}");
}

/// SIGTERM after the only job was reported: nothing is said to be in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_finished_job_waits_for_none() {
    let platform =
        Platform::start_with(support::builder().take_timeout(Duration::from_secs(30))).await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"echo": {"value": 1}}}))
        .await;
    platform.done(&id).await;
    // The job's task logs "Finished." after its post was answered, as its last act.
    let deadline = std::time::Instant::now() + LONG;
    while !worker.stdout().contains("Finished.") {
        assert!(std::time::Instant::now() < deadline, "{}", worker.stdout());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.signal("TERM");
    assert_eq!(worker.exit(LONG).await.code(), Some(0));
    let log = worker.stdout();
    assert!(log.contains("worker stopped"), "{log}");
    assert!(!log.contains("waiting for"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_job_id_and_never_the_api_key() {
    let platform = Platform::start().await;
    let env = env_with(
        &platform,
        &[("RUNPOD_ENDPOINT_ID", "ep"), ("RUNPOD_LOG_LEVEL", "TRACE")],
    );
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    // The emulator hands the worker every field of the request, `batchId` included.
    let id = platform
        .submit(json!({"input": {"log": {"lines": ["from the handler"]}}, "batchId": "b-9"}))
        .await;
    platform.done(&id).await;
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
        &json!({"requestId": id, "message": "[batchId=b-9] from the handler", "level": "INFO"})
    );
    assert!(
        lines
            .iter()
            .any(|l| l["requestId"] == id.as_str() && l["message"] == "[batchId=b-9] Started.")
    );
    assert!(
        !stdout.contains(API_KEY) && !worker.stderr().contains(API_KEY),
        "the API key leaked into the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_limit_fails_the_job_with_its_size() {
    let platform = Platform::start().await;
    let env = env_with(&platform, &[("WORKER_MAX_OUTPUT_BYTES", "1000")]);
    let _worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    let id = platform
        .submit(json!({"input": {"big": {"bytes": 5000}}}))
        .await;
    let report = error_report(&json(&platform.done(&id).await));
    assert_eq!(report["error_type"], "OutputTooLarge");
    assert_eq!(
        report["error_message"],
        "the job's result is 5.0 kB (5013 bytes), more than the 1.0 kB the platform accepts \
         (WORKER_MAX_OUTPUT_BYTES); return less, or upload large data to storage and return its URL"
    );
    let small = platform
        .submit(json!({"input": {"big": {"bytes": 10}}}))
        .await;
    assert_eq!(
        json(&platform.done(&small).await),
        json!({"output": "xxxxxxxxxx"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_still_running_after_the_grace_period_are_reported_failed() {
    let platform = Platform::start().await;
    let env = env_with(&platform, &[("WORKER_SHUTDOWN_GRACE_SECONDS", "1")]);
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    let id = platform
        .submit(json!({"input": {"sleep": {"ms": 20000, "value": 0}}}))
        .await;
    platform
        .wait_for(LONG, "the job to start", a_job_runs)
        .await;
    let signalled = std::time::Instant::now();
    worker.signal("TERM");
    let report = error_report(&json(&platform.done(&id).await));
    assert_eq!(report["error_type"], "WorkerShutdown");
    assert!(
        report["error_message"]
            .as_str()
            .unwrap()
            .starts_with("worker shutting down: the job did not finish within the 1s grace period")
    );
    assert_eq!(worker.exit(LONG).await.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(platform.status(&id).await["status"], "FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let platform = Platform::start().await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    platform
        .submit(json!({"input": {"sleep": {"ms": 20000, "value": 0}}}))
        .await;
    platform
        .wait_for(LONG, "the job to start", a_job_runs)
        .await;
    worker.signal("TERM");
    platform
        .wait_for(LONG, "the worker to log the shutdown", |_| {
            worker.stdout().contains("shutdown requested").then_some(())
        })
        .await;
    assert!(worker.is_running(), "the first signal waits for the job");
    worker.signal("INT");
    assert_eq!(worker.exit(Duration::from_secs(5)).await.code(), Some(1));
}

/// SIGTERM while a job-take is in flight whose answer already holds a job (the emulator's `late`
/// fault hands the job out at once and answers 1.5 s later): the worker waits for the answer,
/// runs the job and posts it, instead of abandoning it to the platform's lost-worker recovery.
/// Both for the take the job loop makes and for the one made while init ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_take_in_flight_at_sigterm_is_answered_and_its_job_runs() {
    take_in_flight_at_sigterm(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_take_in_flight_at_init_end_and_sigterm_is_answered_too() {
    take_in_flight_at_sigterm(false).await;
}

async fn take_in_flight_at_sigterm(after_start: bool) {
    use runpod_emulator::{FaultKind, Faults, Route};
    let platform = Platform::start_with(
        support::builder().faults(Some(
            Faults::new(1)
                .rate(Route::JobTake, FaultKind::Late, 1.0)
                .slow_max(Duration::from_millis(1500)),
        )),
    )
    .await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let takes = |reqs: &[support::RecordedRequest]| {
        reqs.iter().filter(|r| r.path.contains("/job-take")).count()
    };
    // The first take is made while init runs; the loop's own takes come after it answered.
    let wanted = if after_start { 2 } else { 1 };
    platform
        .wait_for(LONG, "a job-take", |reqs| {
            (takes(reqs) >= wanted
                && (!after_start || worker.stdout().contains("worker w42 started")))
            .then_some(())
        })
        .await;
    let id = platform
        .submit(json!({"input": {"echo": {"value": "taken"}}}))
        .await;
    // Handed out: the answer carrying it is on its way.
    platform.running(&id, LONG).await;
    if !after_start {
        assert!(!worker.stdout().contains("started"), "{}", worker.stdout());
    }
    worker.signal("TERM");
    assert_eq!(
        worker.exit(LONG).await.code(),
        Some(0),
        "{}",
        worker.stdout()
    );
    // Finished when the worker exited: nothing was left to the platform's recovery.
    let job = platform.status(&id).await;
    assert_eq!(job["status"], "COMPLETED", "{job}\n{}", worker.stdout());
    assert_eq!(job["output"], "taken");
}

/* ---- a program with its own main, configured in code ---- */

fn embedded() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_embedded-fixture"))
}

/// The platform as `NAME=VALUE` arguments: the process gets no RunPod variables at all.
fn platform_args(platform: &Platform) -> Vec<String> {
    platform
        .env()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn spawn_embedded(platform: &Platform, env: &[(&str, &str)]) -> WorkerProcess {
    let args = platform_args(platform);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorkerProcess::spawn(&embedded(), &env, &args)
}

/// `Worker::platform` runs the production loop without any RunPod variable set (unset, the
/// worker would run its local test mode), `with_init`'s state reaches the handler, and after
/// SIGTERM `try_run` returns `Ok` to the program's own `main`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_configured_in_code_needs_no_environment() {
    let platform = Platform::start().await;
    let mut worker = spawn_embedded(&platform, &[]);
    let id = platform.submit(json!({"input": 10})).await;
    assert_eq!(json(&platform.done(&id).await), json!({"output": "slept"}));
    worker.signal("TERM");
    returned_ok(&mut worker).await;
}

/// The embedded fixture exited 0 after `try_run` returned `Ok` to its `main`.
async fn returned_ok(worker: &mut WorkerProcess) {
    assert_eq!(
        worker.exit(LONG).await.code(),
        Some(0),
        "{}",
        worker.stdout()
    );
    assert!(
        worker.stdout().contains("try_run returned Ok"),
        "{}",
        worker.stdout()
    );
}

/// A failing `with_init`: the queued job is told why (as with `#[worker::init]`), and
/// `try_run` returns an `Init` error to the program, which decides how to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_run_returns_a_failed_init_after_telling_the_held_jobs() {
    let platform = Platform::start().await;
    let queued = platform.submit(json!({"input": 10})).await;
    let mut worker = spawn_embedded(&platform, &[("FIXTURE_INIT_FAIL", "1")]);
    assert_eq!(
        worker.exit(LONG).await.code(),
        Some(3),
        "{}",
        worker.stdout()
    );
    let job = platform.finished(&queued, LONG).await;
    let report: Value = serde_json::from_str(job["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "WorkerInitFailed", "{report}");
    assert!(
        report["error_traceback"]
            .as_str()
            .unwrap()
            .ends_with("logged:\n  INFO  loading the greeting\n"),
        "{report}"
    );
    assert!(
        worker.stdout().contains(
            "try_run returned Init: the init function `init` failed: std::io::error::Error: no \
             greeting today"
        ),
        "{}",
        worker.stdout()
    );
}

/// In a program with its own `main` a second signal ends the grace period (the running job is
/// reported failed at once) and `try_run` returns: the library never exits the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_grace_in_a_program_with_its_own_main() {
    let platform = Platform::start().await;
    let mut worker = spawn_embedded(&platform, &[]);
    let id = platform.submit(json!({"input": 60000})).await;
    platform.running(&id, LONG).await;
    worker.signal("TERM");
    platform
        .wait_for(LONG, "the worker to log the shutdown", |_| {
            worker.stdout().contains("shutdown requested").then_some(())
        })
        .await;
    let signalled = std::time::Instant::now();
    worker.signal("INT");
    returned_ok(&mut worker).await;
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    let job = platform.finished(&id, LONG).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("worker shutting down"),
        "{job}"
    );
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
fn help_lists_the_flags_and_a_bad_flag_exits_2_naming_it() {
    let (code, stdout, stderr) = run_local(&example("echo"), &[], &["--help"], &[]);
    assert_eq!(code, 0, "{stderr}");
    for flag in [
        "--test_input <JSON>",
        "--rp_serve_api",
        "--rp_api_port <PORT>",
        "--load-balancing",
        "-h, --help",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from:\n{stdout}");
    }
    assert!(stdout.contains("Usage: echo [OPTIONS]"), "{stdout}");

    let (code, stdout, stderr) = run_local(
        &example("echo"),
        &[],
        &["--rp_serve_api", "--rp_api_port", "eighty"],
        &[],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("--rp_api_port \"eighty\" is not a port"),
        "{stderr}"
    );
    // Arguments the worker does not read are the handler's, not an error.
    let (code, stdout, _) = run_local(
        &example("echo"),
        &[],
        &["--model", "small", "--test_input", r#"{"input": 2}"#],
        &[],
    );
    assert_eq!((code, stdout.as_str()), (0, "{\"output\":2}\n"));
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

/// A 3 MB string where a number is expected fails the job with a short report that says how
/// long the value was, not a report holding the value twice; through the platform it is an
/// input error, never "output too large".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_bad_value_makes_a_short_error_report() {
    let huge = "7".repeat(3_000_000);
    let input = json!({"input": {"add": {"a": huge, "b": 1}}}).to_string();
    let (code, stdout, stderr) = run_local(&fixture(), &[], &[], &[("test_input.json", &input)]);
    assert_eq!(code, 1);
    assert!(stdout.len() < 4_000, "a {} byte report", stdout.len());
    assert!(stderr.len() < 8_000, "{} bytes of log", stderr.len());
    let report = error_report(&serde_json::from_str(stdout.trim()).unwrap());
    let message = report["error_message"].as_str().unwrap();
    assert!(
        message.starts_with("input.add.a: invalid type: string \"777")
            && message.contains("…\" (3000000 characters), expected i64"),
        "{message}"
    );

    // Through the emulator, with a result limit below the value's size.
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(
        &fixture(),
        &env_with(&platform, &[("WORKER_MAX_OUTPUT_BYTES", "1000000")]),
        &[],
    );
    let id = platform.submit(serde_json::from_str(&input).unwrap()).await;
    let status = platform.finished(&id, LONG).await;
    assert_eq!(status["status"], "FAILED");
    let report: Value = serde_json::from_str(status["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "InvalidInput", "{report}");
}

/// SIGTERM while a result cannot be delivered (every job-done answers 500): the worker exits
/// within the grace period plus one post attempt, not after the 300 s retry budget, and says
/// which job was not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_undeliverable_results_exits_within_the_grace() {
    use runpod_emulator::{FaultKind, Faults, Route};
    let platform = Platform::start_with(support::builder().faults(Some(Faults::new(1).rate(
        Route::JobDone,
        FaultKind::InternalError,
        1.0,
    ))))
    .await;
    let env = env_with(
        &platform,
        &[
            ("WORKER_SHUTDOWN_GRACE_SECONDS", "1"),
            ("WORKER_POST_ATTEMPT_SECONDS", "1"),
        ],
    );
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    let id = platform
        .submit(json!({"input": {"echo": {"value": 1}}}))
        .await;
    let path = format!("{}/{id}", platform.path("job-done"));
    platform
        .wait_for(LONG, "a failed job-done attempt", |reqs| {
            reqs.iter().any(|r| r.path == path).then_some(())
        })
        .await;
    let signalled = std::time::Instant::now();
    worker.signal("TERM");
    assert_eq!(worker.exit(LONG).await.code(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM"
    );
    let log = worker.stdout();
    assert!(
        log.contains(&format!("job {id} was not delivered")),
        "{log}"
    );
}

/// Flags the worker does not know are left to the user's code with a warning, not a hard exit
/// (the Python SDK's `parse_known_args`).
#[test]
fn unknown_flags_are_ignored_with_a_warning() {
    let (code, stdout, stderr) = run_local(
        &fixture(),
        &[],
        &[
            "--model-size",
            "large",
            "--test_input",
            r#"{"input": {"echo": {"value": 3}}}"#,
            "-v",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "{\"output\":3}\n");
    assert!(
        stderr.contains(
            "ignoring command-line arguments the worker does not read: --model-size large -v"
        ),
        "{stderr}"
    );
}

/// Local test mode reports a failed init on its test job too, as production does.
#[test]
fn local_mode_reports_a_failed_init_on_the_test_job() {
    let (code, stdout, stderr) = run_local(
        &fixture(),
        &[("FIXTURE_INIT_FAIL", "1")],
        &["--test_input", r#"{"input": {"echo": {"value": 1}}}"#],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    let report = error_report(&serde_json::from_str(stdout.trim()).unwrap());
    assert_eq!(report["error_type"], "WorkerInitFailed");
    assert!(
        report["error_message"]
            .as_str()
            .unwrap()
            .ends_with("failed: std::io::error::Error: the weights file is missing"),
        "{report}"
    );
    assert_init_lines(&report);
}

/// A failed init's report ends with the lines its init logged (the fixture logs two, one from
/// another thread), and none of the runtime's own.
fn assert_init_lines(report: &Value) {
    let traceback = report["error_traceback"].as_str().unwrap();
    assert!(
        traceback.ends_with(
            "the last 2 line(s) the init function `init` logged:\n  INFO  loading the weights \
             from /models/fixture.safetensors\n  WARN  no weights in /models\n"
        ),
        "{traceback}"
    );
}

/// A hung init is bounded by `#[worker::init(timeout = "3s")]` and reported like a failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_init_is_bounded_by_its_timeout() {
    let platform = Platform::start().await;
    let queued = platform
        .submit(json!({"input": {"echo": {"value": 1}}}))
        .await;
    let started = std::time::Instant::now();
    let mut worker = WorkerProcess::spawn(
        &fixture(),
        &env_with(&platform, &[("FIXTURE_INIT_SLEEP_MS", "60000")]),
        &[],
    );
    assert_eq!(worker.exit(LONG).await.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let job = platform.finished(&queued, LONG).await;
    let report: Value = serde_json::from_str(job["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "WorkerInitFailed");
    assert_eq!(
        report["error_message"],
        "the worker could not start: its init function `init` failed: InitTimeout: the init \
         function `init` did not finish within 3s (its `#[worker::init(timeout = …)]`)"
    );
    // What it was doing when it hung.
    assert!(
        report["error_traceback"]
            .as_str()
            .unwrap()
            .ends_with("logged:\n  INFO  loading the weights from /models/fixture.safetensors\n"),
        "{report}"
    );
}

/// A cancel that arrives during the shutdown grace period is honoured: the job is stopped (no
/// result) and the worker exits without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_the_shutdown_grace_is_honoured() {
    let platform = Platform::start().await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"sleep": {"ms": 15000, "value": 0}}}))
        .await;
    platform
        .wait_for(LONG, "the job to start", a_job_runs)
        .await;
    worker.signal("TERM");
    platform
        .wait_for(LONG, "the shutdown to be logged", |_| {
            worker.stdout().contains("shutdown requested").then_some(())
        })
        .await;
    let cancelled = std::time::Instant::now();
    assert_eq!(platform.cancel(&id).await["status"], "CANCELLED");
    assert_eq!(worker.exit(LONG).await.code(), Some(0));
    assert!(
        cancelled.elapsed() < Duration::from_secs(8),
        "exited {:?} after the cancel",
        cancelled.elapsed()
    );
    let done = format!("{}/{id}", platform.path("job-done"));
    assert!(
        !platform.requests().iter().any(|r| r.path == done),
        "a cancelled job posted a result"
    );
}

/// A job that logs `lines` (`"debug: …"`, `"warn: …"` at those levels), then does `then`.
fn logged(lines: &[&str], then: Value) -> Value {
    json!({"input": {"logged": {"lines": lines, "then": then}}})
}

/// The report's `logs`, as strings without their `+Nms` elapsed prefix.
fn report_logs(report: &Value) -> Vec<String> {
    report["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no `logs` in {report}"))
        .iter()
        .map(|line| {
            let line = line.as_str().unwrap();
            let (elapsed, rest) = line.split_once("ms ").unwrap_or_else(|| panic!("{line}"));
            assert!(elapsed.starts_with('+'), "{line}");
            rest.to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_carries_its_own_log_lines_never_a_secret() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let key_line = format!("calling the API with {API_KEY}");
    let id = platform
        .submit(logged(
            &[
                "loading shard 3",
                "debug: tensor shapes ok",
                "warn: cache miss for shard 3",
                &key_line,
                "sending Authorization: Bearer tok-123456",
            ],
            json!({"fail": {"message": "shard 3 is corrupt"}}),
        ))
        .await;
    let report = error_report(&json(&platform.done(&id).await));
    assert_eq!(report["error_message"], "shard 3 is corrupt");
    // The handler's lines at the log level (INFO), oldest first; not the runtime's "Started.".
    assert_eq!(
        report_logs(&report),
        [
            "INFO  loading shard 3",
            "WARN  cache miss for shard 3",
            "INFO  calling the API with [redacted]",
            "INFO  sending Authorization: Bearer [redacted]",
        ]
    );
    let raw = report.to_string();
    assert!(
        !raw.contains(API_KEY) && !raw.contains("tok-123456"),
        "{raw}"
    );

    // A panic's report carries them too; each job only its own.
    let other = platform
        .submit(logged(
            &["about to index"],
            json!({"panic": {"message": "index out of range"}}),
        ))
        .await;
    let report = error_report(&json(&platform.done(&other).await));
    assert_eq!(report["error_type"], "panic");
    assert_eq!(report_logs(&report), ["INFO  about to index"]);

    // A job that succeeds posts its output only.
    let ok = platform
        .submit(logged(&["fine"], json!({"echo": {"value": 1}})))
        .await;
    assert_eq!(json(&platform.done(&ok).await), json!({"output": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runpod_log_capture_all_keeps_every_level_and_off_none() {
    for (capture, expected) in [
        ("all", Some(vec!["DEBUG tensor shapes ok", "INFO  loading"])),
        ("off", None),
    ] {
        let platform = Platform::start().await;
        let env = env_with(&platform, &[("RUNPOD_LOG_CAPTURE", capture)]);
        let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
        let id = platform
            .submit(logged(
                &["debug: tensor shapes ok", "loading"],
                json!({"fail": {"message": "no"}}),
            ))
            .await;
        let report = error_report(&json(&platform.done(&id).await));
        match expected {
            Some(lines) => assert_eq!(report_logs(&report), lines, "{capture}"),
            None => assert!(report.get("logs").is_none(), "{capture}: {report}"),
        }
        // `all` is for the report: the worker's own output stays at its level (INFO).
        worker.signal("TERM");
        worker.exit(LONG).await;
        assert!(!worker.stdout().contains("tensor shapes ok"), "{capture}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_carries_its_log_lines() {
    let platform = Platform::start().await;
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stream-fixture"));
    let _worker = WorkerProcess::spawn(&bin, &platform.env(), &[]);
    let id = platform
        .submit(json!({"input": {"n": 2, "fail": "the model ran out of memory"}}))
        .await;
    let status = platform.finished(&id, LONG).await;
    assert_eq!(status["status"], "FAILED", "{status}");
    let report: Value = serde_json::from_str(status["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_message"], "the model ran out of memory");
    assert_eq!(
        report_logs(&report),
        ["INFO  sent item 0", "INFO  sent item 1"]
    );
}

#[test]
fn local_mode_prints_a_failed_jobs_log_lines_in_its_report() {
    let (code, stdout, _) = run_local(
        &fixture(),
        &[],
        &[
            "--test_input",
            &logged(
                &["reading the prompt"],
                json!({"fail": {"message": "nope"}}),
            )
            .to_string(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    let printed: Value = serde_json::from_str(stdout.trim()).unwrap();
    let report: Value = serde_json::from_str(printed["error"].as_str().unwrap()).unwrap();
    assert_eq!(report_logs(&report), ["INFO  reading the prompt"]);
}
