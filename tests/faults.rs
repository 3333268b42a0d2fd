//! Reliability under platform faults: the fixture worker runs as a real process against the
//! emulator with injected faults (error statuses, connection resets, slow and malformed
//! answers) on every worker-facing route, and nothing is lost, duplicated or crashed.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use runpod_emulator::{FaultKind, Faults, Route};
use serde_json::{Value, json};
use support::{API_KEY, Platform, RecordedRequest, WorkerProcess, fixture};

fn env_with(platform: &Platform, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = platform.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn count(reqs: &[RecordedRequest], route: &str, fault: Option<&str>) -> usize {
    reqs.iter()
        .filter(|r| r.path.contains(route) && (fault.is_none() || r.fault.as_deref() == fault))
        .count()
}

/// Poll `check` every 20 ms until it holds, failing after `timeout`.
async fn until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_errors_back_off_and_the_worker_recovers_at_once() {
    let take_down = Faults::new(5).rate(Route::JobTake, FaultKind::InternalError, 1.0);
    let platform = Platform::start_with(support::builder().faults(Some(take_down))).await;
    let mut worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);

    // job-take answers 500 every time: attempts back off (100 ms doubling, jitter 50–100 %),
    // so six attempts take at least 0.5 × (100 + 200 + 400 + 800 + 1600) ms.
    let mut first = None;
    until(Duration::from_secs(20), "six job-take attempts", || {
        let n = count(&platform.requests(), "/job-take", Some("500"));
        if n >= 1 && first.is_none() {
            first = Some(Instant::now());
        }
        n >= 6
    })
    .await;
    let span = first.unwrap().elapsed();
    assert!(
        span >= Duration::from_millis(1400),
        "six attempts in {span:?}"
    );
    assert!(
        worker.is_running(),
        "the worker must survive platform errors"
    );
    assert!(
        worker
            .stdout()
            .contains("Failed to get job: HTTP 500 Internal Server Error"),
        "{}",
        worker.stdout()
    );

    // The platform answers again: the next attempt takes the job (the back-off is 3.2 s at most
    // by now).
    platform.handle.set_faults(Some(Faults::new(5).rate(
        Route::JobStop,
        FaultKind::Unavailable,
        1.0,
    )));
    let recovered = Instant::now();
    let id = platform
        .submit(json!({"input": {"sleep": {"ms": 1500, "value": "late"}}}))
        .await;
    let status = platform.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(status["output"], "late");
    assert!(
        recovered.elapsed() < Duration::from_secs(8),
        "recovery took {:?}",
        recovered.elapsed()
    );
    // While the job ran (1.5 s), job-stop answered 503 every time: it backed off too.
    let stops = count(&platform.requests(), "/job-stop/", Some("503"));
    assert!(
        (1..=8).contains(&stops),
        "{stops} job-stop attempts in 1.5 s"
    );
    assert!(worker.is_running());
    assert!(
        worker
            .stdout()
            .contains("job-stop request failed: HTTP 503 Service Unavailable"),
        "{}",
        worker.stdout()
    );
}

/// One job-done attempt: the injected fault, and the emulator's answer if it handled it.
type Attempt = (Option<String>, Option<u16>);

/// 2,000 jobs, about 10 % faults on every worker-facing route: every job ends with exactly one
/// final result, none is lost, none duplicated, the worker stays up, and its logs (at TRACE,
/// the most verbose level) never
/// show the API key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_jobs_through_faults_lose_nothing() {
    const JOBS: usize = 2000;
    let faults = Faults::mixed(2026, 0.10)
        .slow_max(Duration::from_millis(50))
        // Injected 429s ask for no wait: the worker's own back-off paces it.
        .retry_after(Some(0));
    let platform = Platform::start_with(
        support::builder()
            .take_timeout(Duration::from_secs(1))
            .faults(Some(faults)),
    )
    .await;
    let env = env_with(
        &platform,
        &[
            ("FIXTURE_CONCURRENCY", "8"),
            ("RUNPOD_PING_INTERVAL", "200"),
            ("RUNPOD_LOG_LEVEL", "TRACE"),
        ],
    );
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    let started = Instant::now();

    let mut ids: Vec<String> = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        ids.push(
            platform
                .submit(json!({"input": {"echo": {"value": i}}}))
                .await,
        );
    }
    until(Duration::from_secs(90), "every job to finish", || {
        let stats = platform.handle.stats();
        (stats.completed + stats.failed) as usize >= JOBS
    })
    .await;
    let elapsed = started.elapsed();
    // A job can be COMPLETED by a post whose answer was lost while the worker's retry is still
    // to come: wait until every job's last final post was answered.
    let final_posts = |reqs: &[RecordedRequest]| {
        let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
        for r in reqs.iter().filter(|r| r.is_final_done()) {
            attempts
                .entry(r.last_segment().to_owned())
                .or_default()
                .push((r.fault.clone(), r.answer));
        }
        attempts
    };
    let answered = |(fault, answer): &(Option<String>, Option<u16>)| {
        answer.is_some() && fault.as_deref() != Some("reset-after")
    };
    until(Duration::from_secs(30), "the last retries", || {
        let attempts = final_posts(&platform.requests());
        attempts.len() == JOBS && attempts.values().all(|t| t.last().is_some_and(answered))
    })
    .await;

    let stats = platform.handle.stats();
    assert_eq!(
        (stats.completed, stats.failed),
        (JOBS as u64, 0),
        "{stats:?}"
    );
    assert_eq!(stats.conflicting_finals, 0);
    for (i, id) in ids.iter().enumerate() {
        let status = platform.status(id).await;
        assert_eq!(status["status"], "COMPLETED", "{status}");
        assert_eq!(status["output"], json!(i), "{status}");
    }

    // Per job, the final job-done attempts in order: processed ones have the emulator's answer
    // (even when an injected reset lost it); answered ones reached the worker.
    let reqs = platform.requests();
    let attempts = final_posts(&reqs);
    assert_eq!(attempts.len(), JOBS, "a final post for every job");
    let mut repeats = 0;
    for (job, tries) in &attempts {
        let first_answered = tries.iter().position(answered).expect("an answered post");
        assert_eq!(
            first_answered,
            tries.len() - 1,
            "job {job}: posted again after an answered post: {tries:?}"
        );
        repeats += tries.iter().filter(|t| t.1.is_some()).count() - 1;
    }
    assert_eq!(
        stats.duplicate_finals, repeats as u64,
        "every repeated final is a retry after a lost answer"
    );

    // Faults really hit every route the worker used. A fast run ends within a few pings (one
    // in ten faulted), and pings go on while the worker idles: wait for a faulted one.
    until(
        Duration::from_secs(30),
        "a fault injected on a ping",
        || {
            platform
                .requests()
                .iter()
                .any(|r| r.path.contains("/ping/") && r.fault.is_some())
        },
    )
    .await;
    let reqs = platform.requests();
    for (route, name) in [
        ("/job-take", "job-take"),
        ("/job-done/", "job-done"),
        ("/ping/", "ping"),
    ] {
        let faulted = reqs
            .iter()
            .filter(|r| r.path.contains(route) && r.fault.is_some())
            .count();
        assert!(faulted > 0, "no fault injected on {name}");
    }
    let total_faults = reqs.iter().filter(|r| r.fault.is_some()).count();
    let share = total_faults as f64 / reqs.len() as f64;
    assert!(
        (0.05..0.2).contains(&share),
        "{total_faults} faults in {} requests",
        reqs.len()
    );

    assert!(worker.is_running(), "the worker must still be running");
    let logs = worker.stdout();
    assert!(
        logs.contains("skipping a malformed job from job-take"),
        "malformed jobs are logged"
    );
    assert!(
        !logs.contains(API_KEY) && !worker.stderr().contains(API_KEY),
        "the API key leaked into the logs"
    );
    worker.signal("TERM");
    assert_eq!(worker.exit(Duration::from_secs(20)).await.code(), Some(0));
    eprintln!(
        "{JOBS} jobs in {elapsed:?}: {total_faults} faults in {} worker requests, {} repeated finals",
        reqs.len(),
        stats.duplicate_finals
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

/// What the user sees for each kind of bad input or output: the job's `/status` is FAILED and
/// its error report says what went wrong. Malformed jobs from job-take are logged and skipped
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_of_bad_inputs_and_outputs() {
    let malformed = Faults::new(11)
        .rate(Route::JobTake, FaultKind::NotJson, 0.15)
        .rate(Route::JobTake, FaultKind::MissingId, 0.15)
        .rate(Route::JobTake, FaultKind::MissingInput, 0.15)
        .rate(Route::JobTake, FaultKind::BadBatchItems, 0.15);
    let platform = Platform::start_with(support::builder().faults(Some(malformed))).await;
    let env = env_with(&platform, &[("WORKER_MAX_OUTPUT_BYTES", "1000")]);
    let mut worker = WorkerProcess::spawn(&fixture(), &env, &[]);

    let catalogue: Vec<(Value, &str, &str)> = vec![
        (
            json!({"add": {"a": "two", "b": 3}}),
            "InvalidInput",
            "input.add.a: invalid type: string \"two\", expected i64",
        ),
        (
            json!({"add": {"a": 1}}),
            "InvalidInput",
            "input.add: missing field `b`",
        ),
        (
            json!({"fly": {}}),
            "InvalidInput",
            "input: unknown variant `fly`, expected one of `echo`, `fail`, `panic`, `sleep`, `add`, `big`, `log`, `progress`, `logged`, `nan`, `unserializable`, `refresh`, `await_cancel`, `http_client`",
        ),
        (
            json!(null),
            "InvalidInput",
            "input: invalid type: null, expected string or map",
        ),
        (
            json!("nan"),
            "OutputNotSerializable",
            "output.score is NaN, which JSON cannot represent; return a finite number, a string or null instead",
        ),
        (
            json!("unserializable"),
            "OutputNotSerializable",
            "the handler's output (`fixture_worker::Output`) could not be serialized to JSON: key must be a string",
        ),
        (
            json!({"big": {"bytes": 5000}}),
            "OutputTooLarge",
            "the job's result is 5.0 kB (5013 bytes), more than the 1.0 kB the platform accepts \
             (WORKER_MAX_OUTPUT_BYTES); return less, or upload large data to storage and return its URL",
        ),
        (
            json!({"panic": {"message": "index out of range"}}),
            "panic",
            "index out of range",
        ),
        (
            json!({"fail": {"message": "the GPU is sulking"}}),
            "fixture_worker::FixtureError",
            "the GPU is sulking",
        ),
    ];
    let mut ids = Vec::new();
    for (input, _, _) in &catalogue {
        ids.push(platform.submit(json!({ "input": input })).await);
    }
    for (id, (input, error_type, message)) in ids.iter().zip(&catalogue) {
        let status = platform.finished(id, Duration::from_secs(20)).await;
        assert_eq!(status["status"], "FAILED", "{input}: {status}");
        let report: Value = serde_json::from_str(status["error"].as_str().unwrap()).unwrap();
        assert_eq!(report["error_type"], *error_type, "{input}");
        assert_eq!(report["error_message"], *message, "{input}");
    }
    // The worker is still fine.
    let ok = platform
        .submit(json!({"input": {"echo": {"value": "still here"}}}))
        .await;
    let status = platform.finished(&ok, Duration::from_secs(20)).await;
    assert_eq!(status["output"], "still here");
    assert!(worker.is_running());

    let logs = worker.stdout();
    let reqs = platform.requests();
    for (fault, line) in [
        (
            "not-json",
            "job-take answered with something that is not JSON",
        ),
        ("missing-id", "skipping a malformed job from job-take: "),
        ("missing-input", "skipping a malformed job from job-take: "),
        ("bad-batch", "skipping a malformed job from job-take: "),
    ] {
        if count(&reqs, "/job-take", Some(fault)) > 0 {
            assert!(logs.contains(line), "{fault}: {logs}");
        }
    }
}

/// Streaming jobs through faults on job-stream and job-done: every chunk arrives once and in
/// order (a lost answer is the one case a chunk can repeat, so it is not injected here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_arrive_once_and_in_order_through_faults() {
    const JOBS: usize = 40;
    const CHUNKS: u64 = 10;
    let mut faults = Faults::new(77).slow_max(Duration::from_millis(20));
    for route in [Route::JobStream, Route::JobDone] {
        for kind in [
            FaultKind::TooManyRequests,
            FaultKind::InternalError,
            FaultKind::BadGateway,
            FaultKind::Unavailable,
            FaultKind::Reset,
            FaultKind::Slow,
        ] {
            faults = faults.rate(route, kind, 0.03);
        }
    }
    let platform = Platform::start_with(support::builder().faults(Some(faults))).await;
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stream-fixture"));
    let mut worker = WorkerProcess::spawn(&bin, &platform.env(), &[]);
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(platform.submit(json!({ "input": CHUNKS })).await);
    }
    let expected: Vec<u64> = (0..CHUNKS).collect();
    for id in &ids {
        let status = platform.finished(id, Duration::from_secs(30)).await;
        assert_eq!(status["status"], "COMPLETED", "{status}");
        assert_eq!(status["output"], json!(expected), "{status}");
    }
    let reqs = platform.requests();
    for id in &ids {
        let answered: Vec<u64> = reqs
            .iter()
            .filter(|r| r.path.contains("/job-stream/") && r.last_segment() == id)
            .filter(|r| r.fault.as_deref().is_none_or(|f| f == "slow"))
            .map(|r| support::json(r)["output"].as_u64().unwrap())
            .collect();
        assert_eq!(answered, expected, "job {id}");
    }
    assert!(
        count(&reqs, "/job-stream/", None) > JOBS * CHUNKS as usize,
        "faults were injected"
    );
    let stats = platform.handle.stats();
    assert_eq!(
        (stats.completed, stats.conflicting_finals),
        (JOBS as u64, 0)
    );
    assert!(worker.is_running());
}
