//! The typed client (`worker::client`) against real servers on loopback: the emulator with a
//! worker taking its jobs (queue endpoints), a worker run with `--load-balancing`
//! (load-balancing endpoints), and small servers of the test's own that answer with errors, to
//! check which calls are retried.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{API_KEY, Platform, WorkerProcess, fixture, load_balancing_worker, wait_until};
use worker::client::{
    ClientErrorKind, Endpoint, JobState, LoadBalancingEndpoint, Readiness, StreamEvent,
};

const LONG: Duration = Duration::from_secs(20);

/// The fixture worker's input, as a caller of it would declare it (the worker's own type is
/// `tests/workers/fixture.rs`'s `Action`).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Echo { value: Value },
    Fail { message: String },
    Sleep { ms: u64, value: Value },
    Add { a: i64, b: i64 },
    AwaitCancel { ms: u64, progress: bool },
    Progress { updates: u32, value: Value },
}

/// What the fixture's `add` returns.
#[derive(Debug, Deserialize, PartialEq)]
struct Sum {
    sum: i64,
    job: String,
}

fn queue<Out>(platform: &Platform, key: &str) -> Endpoint<Action, Out> {
    Endpoint::builder("ep", key)
        .base_url(format!("{}/v2", platform.handle.url()))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .expect("the client builds")
}

#[tokio::test]
async fn queue_endpoint_runs_waits_and_reports_failures_typed() {
    let platform = Platform::start().await;
    let worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let sums = queue::<Sum>(&platform, API_KEY);

    let sum = sums
        .run_sync(&Action::Add { a: 2, b: 3 }, LONG)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.stdout()));
    assert_eq!(sum.sum, 5);

    // run → a handle → status → wait.
    let job = sums.run(&Action::Add { a: 40, b: 2 }).await.unwrap();
    let status = job.status().await.unwrap();
    assert_eq!(status.id, job.id());
    let sum = job.wait(LONG).await.unwrap();
    assert_eq!(
        sum,
        Sum {
            sum: 42,
            job: job.id().to_owned()
        }
    );
    let done = sums.job(job.id()).status().await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.output.as_ref().map(|s| s.sum), Some(42));
    assert!(done.execution_time.is_some() && done.delay_time.is_some());
    assert_eq!(done.worker_id.as_deref(), Some(support::WORKER));

    // A failing handler: the job's error report, typed.
    let failed = sums
        .run_sync(
            &Action::Fail {
                message: "the GPU is sulking".into(),
            },
            LONG,
        )
        .await
        .unwrap_err();
    let job_error = failed.job_error().expect("a job error");
    assert_eq!(job_error.state, JobState::Failed);
    assert_eq!(
        job_error.error_type.as_deref(),
        Some("fixture_worker::FixtureError")
    );
    assert_eq!(job_error.message, "the GPU is sulking");
    assert_eq!(failed.call(), "run_sync");
    let message = failed.to_string();
    assert!(
        message.starts_with("run_sync on endpoint `ep`: job `")
            && message.ends_with("failed: fixture_worker::FixtureError: the GPU is sulking"),
        "{message}"
    );

    // An output that is not the caller's type: the error names the type and the path.
    let wrong = queue::<Sum>(&platform, API_KEY)
        .run_sync(
            &Action::Echo {
                value: json!({"sum": "five"}),
            },
            LONG,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(wrong.kind(), ClientErrorKind::Decode { .. }),
        "{wrong:?}"
    );
    let message = wrong.to_string();
    assert!(
        message.contains("does not match `client::Sum` at `sum`"),
        "{message}"
    );

    // An input the worker refuses fails the job, with the worker's message.
    let values = Endpoint::<Value, Value>::builder("ep", API_KEY)
        .base_url(format!("{}/v2", platform.handle.url()))
        .build()
        .unwrap();
    let refused = values
        .run_sync(&json!({"fly": {}}), LONG)
        .await
        .unwrap_err();
    let report = refused.job_error().unwrap();
    assert_eq!(report.error_type.as_deref(), Some("InvalidInput"));
    assert!(
        report.message.starts_with("input: unknown variant `fly`"),
        "{refused}"
    );

    // The endpoint's health counts the jobs above.
    let health = sums.health().await.unwrap();
    assert_eq!(health.jobs.completed, 3, "{health:?}");
    assert_eq!(health.jobs.failed, 2, "{health:?}");
}

#[tokio::test]
async fn a_job_past_the_wait_comes_back_by_its_id() {
    let platform = Platform::start().await;
    let _worker = WorkerProcess::spawn(&fixture(), &platform.env(), &[]);
    let values = queue::<Value>(&platform, API_KEY);
    // /runsync waits at least 1 s on the platform: the job takes 2.5 s, the call waits 1 s.
    let slow = Action::Sleep {
        ms: 2500,
        value: json!("late"),
    };
    let error = values
        .run_sync(&slow, Duration::from_secs(1))
        .await
        .unwrap_err();
    let ClientErrorKind::StillRunning { id, state, .. } = error.kind() else {
        panic!("{error:?}")
    };
    assert!(!state.is_final(), "{state}");
    assert!(
        error
            .to_string()
            .contains(&format!("endpoint.job(\"{id}\")")),
        "{error}"
    );
    let output = values.job(id).wait(LONG).await.unwrap();
    assert_eq!(output, "late");
    // And `wait` itself gives up with the same error.
    let job = values
        .run(&Action::Sleep {
            ms: 2000,
            value: json!(1),
        })
        .await
        .unwrap();
    let error = job.wait(Duration::from_millis(200)).await.unwrap_err();
    assert!(
        matches!(error.kind(), ClientErrorKind::StillRunning { .. }),
        "{error}"
    );
    assert_eq!(job.wait(LONG).await.unwrap(), 1);
}

#[tokio::test]
async fn cancel_retry_and_purge_queue() {
    let platform = Platform::start().await;
    let env = [
        platform.env(),
        vec![("FIXTURE_CONCURRENCY".into(), "1".into())],
    ]
    .concat();
    let worker = WorkerProcess::spawn(&fixture(), &env, &[]);
    let values = queue::<Value>(&platform, API_KEY);

    // Cancel a running job: the handler sees it, the job ends CANCELLED.
    let job = values
        .run(&Action::AwaitCancel {
            ms: 20_000,
            progress: false,
        })
        .await
        .unwrap();
    platform.running(job.id(), LONG).await;
    // Three more wait behind it (the worker runs one job at a time)...
    for n in 0..3 {
        values.run(&Action::Echo { value: json!(n) }).await.unwrap();
    }
    assert_eq!(values.health().await.unwrap().jobs.in_queue, 3);
    // ...until the queue is purged.
    assert_eq!(values.purge_queue().await.unwrap(), 3);
    assert_eq!(values.health().await.unwrap().jobs.in_queue, 0);
    let cancelled = job.cancel().await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let error = job.wait(LONG).await.unwrap_err();
    assert_eq!(error.job_error().unwrap().state, JobState::Cancelled);
    assert_eq!(
        error.job_error().unwrap().to_string(),
        format!("job `{}` was cancelled", job.id())
    );
    wait_until(LONG, "the handler to see the cancel", || {
        worker.stdout().contains("saw the cancel").then_some(())
    })
    .await;

    // Retry a failed job: queued again under its id, it runs (and fails) again.
    let failing = values
        .run(&Action::Fail {
            message: "once more".into(),
        })
        .await
        .unwrap();
    assert!(failing.wait(LONG).await.unwrap_err().job_error().is_some());
    let again = failing.retry().await.unwrap();
    assert_eq!(again.id, failing.id());
    assert!(matches!(
        again.state,
        JobState::InQueue | JobState::InProgress | JobState::Failed
    ));
    let error = failing.wait(LONG).await.unwrap_err();
    assert_eq!(error.job_error().unwrap().message, "once more");
    assert_eq!(values.health().await.unwrap().jobs.retried, 1);
}

#[tokio::test]
async fn a_queue_stream_gives_typed_items_in_order() {
    let platform = Platform::start().await;
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stream-fixture"));
    let _worker = WorkerProcess::spawn(&bin, &platform.env(), &[]);
    let counts = Endpoint::<Value, Vec<u32>>::builder("ep", API_KEY)
        .base_url(format!("{}/v2", platform.handle.url()))
        .build()
        .unwrap();
    let job = counts.run(&json!(5)).await.unwrap();
    let items: Vec<u32> = job.stream().collect().await.unwrap();
    assert_eq!(items, [0, 1, 2, 3, 4]);
    // A stream that fails after its items ends with the job's error.
    let job = counts
        .run(&json!({"n": 2, "fail": "ran dry"}))
        .await
        .unwrap();
    let mut stream = job.stream::<u32>();
    assert_eq!(stream.next().await.unwrap().unwrap(), 0);
    assert_eq!(stream.next().await.unwrap().unwrap(), 1);
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.job_error().unwrap().message, "ran dry", "{error}");
    assert!(stream.next().await.is_none());
    // An item that is not the caller's type ends the stream with a decode error.
    let job = counts.run(&json!(1)).await.unwrap();
    let error = job.stream::<String>().collect().await.unwrap_err();
    assert!(
        error.to_string().contains("a stream item of job"),
        "{error}"
    );
}

#[tokio::test]
async fn a_wrong_key_or_endpoint_says_so_and_is_not_retried() {
    let platform = Platform::start().await;
    let error = queue::<Value>(&platform, "not-the-key")
        .run_sync(&Action::Echo { value: json!(1) }, LONG)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert_eq!(error.attempts(), 1);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "run_sync on endpoint `ep`: POST {}/v2/ep/runsync?wait=20000 answered 401 Unauthorized: ",
            platform.handle.url()
        )) && message.ends_with("(check the API key)"),
        "{message}"
    );
    let elsewhere = Endpoint::<Action, Value>::builder("nope", API_KEY)
        .base_url(format!("{}/v2", platform.handle.url()))
        .build()
        .unwrap();
    let error = elsewhere.health().await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert!(
        error
            .to_string()
            .contains("(check the endpoint id and the base URL)"),
        "{error}"
    );

    // Set-up mistakes are caught by `build`.
    let bad = Endpoint::<Value, Value>::builder("ep", API_KEY)
        .base_url("127.0.0.1:8000")
        .build();
    assert!(bad.unwrap_err().to_string().contains("http:// or https://"));
    let bad = Endpoint::<Value, Value>::new("a/b", API_KEY);
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("is not an endpoint id")
    );
}

/// A server that answers each request with the next of `answers` (status, `Retry-After`), then
/// 200 with `body`; counts the requests.
async fn scripted(
    answers: Vec<(u16, Option<&'static str>)>,
    body: Value,
) -> (String, Arc<AtomicU32>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().fallback(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
        let answer = answers.get(n).copied();
        let body = body.clone();
        async move {
            let mut headers = HeaderMap::new();
            match answer {
                Some((status, retry_after)) => {
                    if let Some(after) = retry_after {
                        headers.insert("retry-after", after.parse().unwrap());
                    }
                    let status = StatusCode::from_u16(status).unwrap();
                    (status, headers, r#"{"error": "scripted"}"#.to_owned())
                }
                None => (StatusCode::OK, headers, body.to_string()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn client(url: &str) -> Endpoint<Value, Value> {
    Endpoint::builder("ep", "key")
        .base_url(url)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test]
async fn reads_are_retried_after_5xx_and_429_but_a_submission_only_after_429() {
    // status: 503, 502, 429 (Retry-After: 0), then the answer.
    let (url, seen) = scripted(
        vec![(503, None), (502, None), (429, Some("0"))],
        json!({"id": "j1", "status": "COMPLETED", "output": 7}),
    )
    .await;
    let status = client(&url).job("j1").status().await.unwrap();
    assert_eq!(status.output, Some(json!(7)));
    assert_eq!(seen.load(Ordering::SeqCst), 4);

    // run after a 500: the job may have been queued, so it is not sent again.
    let (url, seen) = scripted(vec![(500, None)], json!({"id": "j2", "status": "IN_QUEUE"})).await;
    let error = client(&url).run(&json!(1)).await.unwrap_err();
    assert_eq!((error.status(), error.attempts()), (Some(500), 1));
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // run after a 429: refused before it was queued, so it is sent again.
    let (url, seen) = scripted(
        vec![(429, Some("0")), (429, None)],
        json!({"id": "j3", "status": "IN_QUEUE"}),
    )
    .await;
    let job = client(&url).run(&json!(1)).await.unwrap();
    assert_eq!(job.id(), "j3");
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    // Retries end at max_attempts, and the error says how many were made.
    let (url, seen) = scripted(vec![(503, None); 10], json!({})).await;
    let error = client(&url).health().await.unwrap_err();
    assert_eq!((error.status(), error.attempts()), (Some(503), 5));
    assert_eq!(seen.load(Ordering::SeqCst), 5);
    assert!(error.to_string().ends_with("(after 5 attempts)"), "{error}");
}

#[tokio::test]
async fn transport_errors_a_submission_that_may_have_landed_is_not_sent_twice() {
    // Nothing listens: the connection is never made, so even `run` is tried again.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let error = client(&closed).run(&json!(1)).await.unwrap_err();
    let ClientErrorKind::Transport {
        maybe_submitted, ..
    } = error.kind()
    else {
        panic!("{error:?}")
    };
    assert!(!maybe_submitted);
    assert_eq!(error.attempts(), 5);

    // A server that takes the request and never answers: `run` times out once and says the
    // job may have been submitted; `status` is tried again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let silent = Endpoint::<Value, Value>::builder("ep", "key")
        .base_url(&url)
        .timeout(Duration::from_millis(300))
        .backoff(Duration::from_millis(5), Duration::from_millis(10))
        .max_attempts(3)
        .build()
        .unwrap();
    let error = silent.run(&json!(1)).await.unwrap_err();
    let ClientErrorKind::Transport {
        maybe_submitted, ..
    } = error.kind()
    else {
        panic!("{error:?}")
    };
    assert!(maybe_submitted);
    assert_eq!(error.attempts(), 1);
    assert!(
        error
            .to_string()
            .contains("the job may have been submitted"),
        "{error}"
    );
    let error = silent.job("j").status().await.unwrap_err();
    assert_eq!(error.attempts(), 3);
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

fn lb<Out>(base: &str) -> LoadBalancingEndpoint<Action, Out> {
    LoadBalancingEndpoint::builder("lb", "key")
        .base_url(base)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test]
async fn load_balancing_endpoint_health_runsync_failures_and_busy_retries() {
    let (worker, base) = load_balancing_worker(
        &fixture(),
        &[
            ("FIXTURE_INIT_SLEEP_MS", "1000"),
            ("FIXTURE_CONCURRENCY", "1"),
        ],
    )
    .await;
    let sums = lb::<Sum>(&base);
    assert_eq!(sums.health().await.unwrap(), Readiness::Initializing);
    let mut readiness = Vec::new();
    let deadline = std::time::Instant::now() + LONG;
    while readiness.last() != Some(&Readiness::Ready) {
        assert!(std::time::Instant::now() < deadline, "{readiness:?}");
        let now = sums.health().await.unwrap();
        if readiness.last() != Some(&now) {
            readiness.push(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(readiness, [Readiness::Initializing, Readiness::Ready]);

    let sum = sums
        .run_sync(&Action::Add { a: 1, b: 2 }, LONG)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.stdout()));
    assert_eq!(sum.sum, 3);
    let failed = sums
        .run_sync(
            &Action::Fail {
                message: "no luck".into(),
            },
            LONG,
        )
        .await
        .unwrap_err();
    assert_eq!(failed.job_error().unwrap().message, "no luck");
    let values = LoadBalancingEndpoint::<Value, Value>::builder("lb", "")
        .base_url(&base)
        .build()
        .unwrap();
    let refused = values
        .run_sync(&json!({"fly": {}}), LONG)
        .await
        .unwrap_err();
    assert_eq!(
        refused.job_error().unwrap().error_type.as_deref(),
        Some("InvalidInput")
    );

    // The one slot busy: a client without retries gets the 429; one with them waits it out.
    let busy = sums.clone();
    // Counted, not searched for: "sleep" is already in the log (the refused input's error
    // lists the actions), so waiting for the word let the next request race the slow one.
    let started = worker.stdout().matches("Started.").count();
    let slow = tokio::spawn(async move {
        busy.run_sync(
            &Action::Sleep {
                ms: 1200,
                value: json!({"sum": 0, "job": ""}),
            },
            LONG,
        )
        .await
    });
    wait_until(LONG, "the slow job to start", || {
        (worker.stdout().matches("Started.").count() > started).then_some(())
    })
    .await;
    let impatient = LoadBalancingEndpoint::<Action, Sum>::builder("lb", "")
        .base_url(&base)
        .max_attempts(1)
        .build()
        .unwrap();
    let error = impatient
        .run_sync(&Action::Add { a: 0, b: 0 }, LONG)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(429), "{error}");
    let patient = LoadBalancingEndpoint::<Action, Sum>::builder("lb", "")
        .base_url(&base)
        .max_attempts(10)
        .build()
        .unwrap();
    let sum = patient
        .run_sync(&Action::Add { a: 2, b: 2 }, LONG)
        .await
        .unwrap();
    assert_eq!(sum.sum, 4);
    assert_eq!(slow.await.unwrap().unwrap().sum, 0);
    assert!(sums.openapi().await.unwrap()["paths"].is_object());
}

#[tokio::test]
async fn load_balancing_stream_items_progress_and_a_dropped_stream_cancels() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stream-fixture"));
    let (_streamer, base) = load_balancing_worker(&bin, &[]).await;
    let counts = LoadBalancingEndpoint::<Value, Vec<u32>>::builder("lb", "")
        .base_url(&base)
        .build()
        .unwrap();
    let items: Vec<u32> = counts
        .stream(&json!(4), LONG)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(items, [0, 1, 2, 3]);
    assert_eq!(counts.run_sync(&json!(2), LONG).await.unwrap(), [0, 1]);
    let mut failing = counts
        .stream::<u32>(&json!({"n": 1, "fail": "ran dry"}), LONG)
        .await
        .unwrap();
    assert_eq!(failing.next().await.unwrap().unwrap(), 0);
    assert_eq!(
        failing
            .next()
            .await
            .unwrap()
            .unwrap_err()
            .job_error()
            .unwrap()
            .message,
        "ran dry"
    );
    // Bad input fails the call itself, before any item.
    let error = counts
        .stream::<u32>(&json!("three"), LONG)
        .await
        .unwrap_err();
    assert_eq!(
        error.job_error().unwrap().error_type.as_deref(),
        Some("InvalidInput")
    );

    // Progress updates, through next_event.
    let (worker, base) = load_balancing_worker(&fixture(), &[]).await;
    let values = lb::<Value>(&base);
    let mut events = values
        .stream::<Value>(
            &Action::Progress {
                updates: 2,
                value: json!("v"),
            },
            LONG,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(event) = events.next_event().await {
        seen.push(event.unwrap());
    }
    // Progress is the job's latest state: updates sent faster than they are delivered are
    // coalesced, so the last one always arrives and nothing else comes.
    assert_eq!(
        seen.last(),
        Some(&StreamEvent::Progress(json!(1))),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|e| matches!(e, StreamEvent::Progress(_))),
        "{seen:?}"
    );

    // Dropping a stream closes its request: the worker cancels the job.
    let mut stream = values
        .stream::<Value>(
            &Action::AwaitCancel {
                ms: 20_000,
                progress: true,
            },
            LONG,
        )
        .await
        .unwrap();
    let first = stream.next_event().await.unwrap().unwrap();
    assert_eq!(first, StreamEvent::Progress(json!("waiting")));
    drop(stream);
    wait_until(LONG, "the handler to see the cancel", || {
        worker.stdout().contains("saw the cancel").then_some(())
    })
    .await;
}
