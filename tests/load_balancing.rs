//! Load-balancing mode: real worker binaries serve HTTP on loopback (`WORKER_MODE=
//! load-balancing`, `PORT=0`), and the tests are their clients: health through a slow init,
//! `/runsync`, `/stream` as server-sent events, 429 past the concurrency, a client that goes
//! away cancelling its job, the 400/413/500 bodies, and SIGTERM's drain.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{WorkerProcess, fixture, load_balancing_worker, port_after, wait_until};

const LONG: Duration = Duration::from_secs(20);

/// A load-balancing worker and a client of it.
struct LbWorker {
    process: WorkerProcess,
    base: String,
    http: reqwest::Client,
}

impl LbWorker {
    /// Start `bin` as a load-balancing worker on a port the system picks, with `extra` in its
    /// environment; returns once it listens.
    async fn start(bin: &std::path::Path, extra: &[(&str, &str)]) -> LbWorker {
        let (process, base) = load_balancing_worker(bin, extra).await;
        LbWorker {
            process,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, route: &str, body: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self
            .http
            .post(format!("{}{route}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {route}: {e}\n{}", self.process.stdout()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// POST `body` to `/runsync` on a task of its own; its status and answer.
    fn runsync_in_background(&self, body: &'static str) -> tokio::task::JoinHandle<(u16, Value)> {
        let (http, base) = (self.http.clone(), self.base.clone());
        tokio::spawn(async move {
            let response = http
                .post(format!("{base}/runsync"))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, serde_json::from_str::<Value>(&text).unwrap())
        })
    }

    async fn runsync(&self, input: Value) -> (u16, Value) {
        let (status, _, body) = self
            .post("/runsync", &json!({ "input": input }).to_string())
            .await;
        let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, value)
    }

    async fn health(&self) -> Option<(u16, String)> {
        let response = self
            .http
            .get(format!("{}/ping", self.base))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }
}

/// The error report inside a failed answer's `error` (a JSON string, as on a queue endpoint).
fn report(answer: &Value) -> Value {
    assert_eq!(answer["status"], "FAILED", "{answer}");
    serde_json::from_str(answer["error"].as_str().expect("`error` is a JSON string")).unwrap()
}

#[tokio::test]
async fn health_is_204_while_init_runs_then_200_and_requests_wait_for_it() {
    let lb = LbWorker::start(&fixture(), &[("FIXTURE_INIT_SLEEP_MS", "1500")]).await;
    let (status, _) = lb.health().await.expect("health answers while init runs");
    assert_eq!(status, 204, "{}", lb.process.stdout());
    let (status, body) = lb.runsync(json!({"echo": {"value": 1}})).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("still initializing"),
        "{body}"
    );
    // Polled as RunPod's load balancer does; once 200, it stays so and requests run.
    let mut seen = Vec::new();
    let deadline = Instant::now() + LONG;
    loop {
        let (status, _) = lb.health().await.unwrap();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never turned 200: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, [204, 200]);
    wait_until(LONG, "init's end in the log", || {
        lb.process
            .stdout()
            .contains("init function `init` finished")
            .then_some(())
    })
    .await;
    let (status, body) = lb.runsync(json!({"add": {"a": 2, "b": 3}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(body["output"]["sum"], 5);
    assert_eq!(
        body["output"]["job"], body["id"],
        "the job id is the answer's id"
    );
}

#[tokio::test]
async fn runsync_and_run_answer_in_runpods_shape() {
    let lb = LbWorker::start(&fixture(), &[]).await;
    for route in ["/runsync", "/run"] {
        let (status, headers, body) = lb
            .post(route, r#"{"input": {"echo": {"value": {"x": [1, 2]}}}}"#)
            .await;
        assert_eq!(status, 200, "{route}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "COMPLETED");
        assert_eq!(body["output"], json!({"x": [1, 2]}));
        let id = body["id"].as_str().unwrap();
        assert_eq!(headers["x-request-id"], id);
        assert_eq!(headers["content-type"], "application/json");
    }
    // The caller's request id names the job (its log lines, its answer).
    let response = lb
        .http
        .post(format!("{}/runsync", lb.base))
        .header("x-request-id", "req-77")
        .body(r#"{"input": {"log": {"lines": ["hello from the job"]}}}"#)
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["id"], "req-77");
    let line = wait_until(LONG, "the job's line in the log", || {
        let stdout = lb.process.stdout();
        stdout
            .lines()
            .find(|l| l.contains("hello from the job"))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("req-77"), "{line}");
    // The contract, as for a queue endpoint's local API.
    let openapi = lb
        .http
        .get(format!("{}/openapi.json", lb.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/runsync"]["post"].is_object());
    assert!(openapi["paths"]["/ping"]["get"].is_object());
}

#[tokio::test]
async fn bad_requests_and_failures_answer_400_413_and_500_with_the_report() {
    let lb = LbWorker::start(&fixture(), &[("WORKER_MAX_REQUEST_BYTES", "2000")]).await;

    let (status, _, body) = lb.post("/runsync", "{not json").await;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let error = report(&body);
    assert_eq!(error["error_type"], "InvalidRequest");
    assert!(
        error["error_message"]
            .as_str()
            .unwrap()
            .starts_with("the request body is not valid JSON"),
        "{error}"
    );

    let (status, _, body) = lb.post("/runsync", r#"{"inptu": {}}"#).await;
    assert_eq!(status, 400, "{body}");
    let error = report(&serde_json::from_str(&body).unwrap());
    assert!(
        error["error_message"]
            .as_str()
            .unwrap()
            .contains("has no `input`; send the job as {\"input\": …} (it has: `inptu`)"),
        "{error}"
    );

    // Input the handler's type does not accept: the same report as a failed queued job.
    let (status, body) = lb.runsync(json!({"add": {"a": 1, "b": "two"}})).await;
    assert_eq!(status, 400, "{body}");
    let error = report(&body);
    assert_eq!(error["error_type"], "InvalidInput");
    assert!(
        error["error_message"]
            .as_str()
            .unwrap()
            .starts_with("input.add.b: invalid type: string \"two\", expected i64"),
        "{error}"
    );

    let (status, _, body) = lb
        .post("/runsync", &json!({"input": "x".repeat(3000)}).to_string())
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("at most 2.0 kB (2000 bytes, WORKER_MAX_REQUEST_BYTES)"),
        "{body}"
    );

    let (status, body) = lb.runsync(json!({"fail": {"message": "no GPU"}})).await;
    assert_eq!(status, 500, "{body}");
    let error = report(&body);
    assert_eq!(error["error_message"], "no GPU");
    assert!(
        error["error_traceback"]
            .as_str()
            .unwrap()
            .contains("the cause")
    );

    // A panic fails its request; the server goes on serving.
    let (status, body) = lb.runsync(json!({"panic": {"message": "boom"}})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(report(&body)["error_type"], "panic");
    let (status, body) = lb.runsync(json!({"echo": {"value": "still here"}})).await;
    assert_eq!((status, &body["output"]), (200, &json!("still here")));
}

#[tokio::test]
async fn past_the_concurrency_requests_get_429_with_retry_after() {
    let lb = LbWorker::start(&fixture(), &[("FIXTURE_CONCURRENCY", "1")]).await;
    let slow = lb.runsync_in_background(r#"{"input": {"sleep": {"ms": 1500, "value": "slow"}}}"#);
    wait_until(LONG, "the slow request to start", || {
        lb.process.stdout().contains("Started.").then_some(())
    })
    .await;
    let (status, headers, body) = lb
        .post("/runsync", r#"{"input": {"echo": {"value": 1}}}"#)
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("runs 1 request(s) at once"), "{body}");
    assert_eq!(slow.await.unwrap().1["output"], "slow");
    // The slot is free again.
    let (status, _) = lb.runsync(json!({"echo": {"value": 2}})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_job() {
    let lb = LbWorker::start(
        &fixture(),
        &[
            ("FIXTURE_CONCURRENCY", "1"),
            ("WORKER_CANCEL_GRACE_MS", "2000"),
        ],
    )
    .await;
    let impatient = lb
        .http
        .post(format!("{}/runsync", lb.base))
        .timeout(Duration::from_millis(300))
        .body(r#"{"input": {"await_cancel": {"ms": 15000}}}"#)
        .send()
        .await;
    assert!(impatient.is_err(), "the client gave up: {impatient:?}");
    wait_until(LONG, "the handler to see the cancel", || {
        lb.process.stdout().contains("saw the cancel").then_some(())
    })
    .await;
    // Its slot is free (the worker runs one request at once): the next request runs.
    let (status, body) = lb.runsync(json!({"echo": {"value": "next"}})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn stream_sends_each_item_as_an_event_then_the_result() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stream-fixture"));
    let lb = LbWorker::start(&bin, &[]).await;
    let (status, headers, body) = lb.post("/stream", r#"{"input": 3}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let sent = events(&body);
    let names: Vec<&str> = sent.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["stream", "stream", "stream", "result"], "{body}");
    assert_eq!(sent[1].1, json!({"output": 1}));
    assert_eq!(sent[3].1["status"], "COMPLETED");
    assert_eq!(sent[3].1["output"], json!([0, 1, 2]));
    // /runsync of a streaming handler answers with every item.
    let (status, body) = lb.runsync(json!(2)).await;
    assert_eq!((status, &body["output"]), (200, &json!([0, 1])));
    // A failure after items were sent is the stream's last event.
    let (_, _, body) = lb
        .post("/stream", r#"{"input": {"n": 2, "fail": "ran dry"}}"#)
        .await;
    let sent = events(&body);
    assert_eq!(sent.len(), 3, "{body}");
    assert_eq!(report(&sent[2].1)["error_message"], "ran dry");
    // Bad input fails before any event: a 400, as /runsync answers.
    let (status, _, body) = lb.post("/stream", r#"{"input": "three"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        report(&serde_json::from_str(&body).unwrap())["error_type"],
        "InvalidInput"
    );
}

#[tokio::test]
async fn stream_sends_progress_updates_as_events() {
    let lb = LbWorker::start(&fixture(), &[]).await;
    let (status, _, body) = lb
        .post(
            "/stream",
            r#"{"input": {"logged": {"lines": [], "then": {"progress": {"updates": 1, "value": "v"}}}}}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = events(&body);
    assert_eq!(
        sent[0],
        (
            "progress".to_owned(),
            json!({"status": "IN_PROGRESS", "output": 0})
        ),
        "{body}"
    );
    let last = sent.last().unwrap();
    assert_eq!(last.0, "result");
    assert_eq!(last.1["output"], "v");
}

#[tokio::test]
async fn sigterm_drains_health_503_running_requests_finish() {
    let lb = LbWorker::start(&fixture(), &[]).await;
    let slow =
        lb.runsync_in_background(r#"{"input": {"sleep": {"ms": 1500, "value": "finished"}}}"#);
    wait_until(LONG, "the slow request to start", || {
        lb.process.stdout().contains("Started.").then_some(())
    })
    .await;
    lb.process.signal("TERM");
    let (status, body) = loop {
        let (status, body) = lb.health().await.expect("health answers while draining");
        if status != 200 {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let (status, body) = lb.runsync(json!({"echo": {"value": 1}})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("shutting down"));
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, &body["output"]), (200, &json!("finished")));
    let mut process = lb.process;
    let exit = process.exit(LONG).await;
    assert!(exit.success(), "{exit:?}\n{}", process.stdout());
}

#[tokio::test]
async fn a_failed_init_answers_503_with_the_reason_then_exits() {
    let lb = LbWorker::start(&fixture(), &[("FIXTURE_INIT_FAIL", "1")]).await;
    let (status, body) = wait_until_async(&lb).await;
    assert_eq!(status, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "init_failed");
    let error: Value = serde_json::from_str(body["error"].as_str().unwrap()).unwrap();
    assert_eq!(error["error_type"], "WorkerInitFailed");
    assert!(
        error["error_message"]
            .as_str()
            .unwrap()
            .contains("the weights file is missing"),
        "{error}"
    );
    let (status, body) = lb.runsync(json!({"echo": {"value": 1}})).await;
    assert_eq!(status, 503, "{body}");
    let mut process = lb.process;
    let exit = process.exit(LONG).await;
    assert_eq!(exit.code(), Some(1), "{}", process.stdout());
}

/// Health, once it answers something other than 204.
async fn wait_until_async(lb: &LbWorker) -> (u16, String) {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some((status, body)) = lb.health().await
            && status != 204
        {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "health stayed 204");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_separate_health_port_serves_health_and_nothing_else() {
    let lb = LbWorker::start(
        &fixture(),
        &[("PORT_HEALTH", "0"), ("HEALTH_CHECK_PATH", "/healthz")],
    )
    .await;
    let port = wait_until(LONG, "the health port in the log", || {
        port_after(&lb.process.stdout(), "health at GET /healthz on port ")
    })
    .await;
    let health = format!("http://127.0.0.1:{port}");
    assert_ne!(health, lb.base);
    let status = wait_until_status(&lb.http, &format!("{health}/healthz"), 200).await;
    assert_eq!(status, 200);
    let runsync = lb
        .http
        .post(format!("{health}/runsync"))
        .body(r#"{"input": {"echo": {"value": 1}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        runsync.status().as_u16(),
        404,
        "the health port serves health only"
    );
    // The main port answers health at the same path too.
    let status = wait_until_status(&lb.http, &format!("{}/healthz", lb.base), 200).await;
    assert_eq!(status, 200);
}

/// GET `url` until it answers `want` (or the deadline); the last status.
async fn wait_until_status(http: &reqwest::Client, url: &str, want: u16) -> u16 {
    let deadline = Instant::now() + LONG;
    loop {
        let status = http
            .get(url)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        if status == want || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn contradicting_mode_settings_stop_the_worker_at_start() {
    let (code, stdout, stderr) = support::run_local(
        &fixture(),
        &[("WORKER_MODE", "queue")],
        &["--load-balancing"],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        (stdout.clone() + &stderr).contains(
            "--load-balancing asks for a load-balancing worker, but WORKER_MODE=queue asks for a queue worker"
        ),
        "{stdout}{stderr}"
    );
    let (code, stdout, stderr) = support::run_local(
        &fixture(),
        &[("WORKER_MODE", "load-balancing")],
        &["--rp_serve_api"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        (stdout.clone() + &stderr).contains("cannot also run --rp_serve_api"),
        "{stdout}{stderr}"
    );
    let (code, stdout, stderr) =
        support::run_local(&fixture(), &[("WORKER_MODE", "http")], &[], &[]);
    assert_eq!(code, 1);
    assert!(
        (stdout.clone() + &stderr).contains("WORKER_MODE=\"http\" is not a mode"),
        "{stdout}{stderr}"
    );
}

/// The server-sent events of a finished `/stream` answer: (event name, data as JSON).
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}
