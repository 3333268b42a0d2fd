//! `--rp_serve_api`: a worker binary serves RunPod's API itself and runs its production loop
//! against it. Driven over HTTP like a user with curl would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::example;

mod support;

/// The example running with `--rp_serve_api` on a free port; killed on drop.
struct Served {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Served {
    async fn start(name: &str, env: &[(&str, &str)]) -> Served {
        Served::start_binary(&example(name), env).await
    }

    async fn start_binary(binary: &std::path::Path, env: &[(&str, &str)]) -> Served {
        // The workspace's reqwest has no built-in TLS provider; the worker installs ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["--rp_serve_api", "--rp_api_port", &port.to_string()])
            .env_remove("RUNPOD_WEBHOOK_GET_JOB")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let served = Served {
            child,
            base: format!("http://127.0.0.1:{port}/v2/local"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while served
            .client
            .get(format!("{}/health", served.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the worker's local API did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}/{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_example_streams_through_its_own_local_api() {
    let served = Served::start("stream", &[("TOKEN_DELAY_MS", "20")]).await;
    let queued = served
        .call(
            reqwest::Method::POST,
            "run",
            Some(json!({"input": {"prompt": "the", "max_tokens": 5}})),
        )
        .await;
    let id = queued["id"].as_str().unwrap().to_owned();
    let mut words = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = served
            .call(reqwest::Method::GET, &format!("stream/{id}"), None)
            .await;
        let chunks = page["stream"].as_array().unwrap();
        words.extend(
            chunks
                .iter()
                .map(|c| c["output"].as_str().unwrap().to_owned()),
        );
        if page["status"] == "COMPLETED" && chunks.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "stream did not end: {page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(words, ["worker", "posts", "the", "job", "from"]);
    let status = served
        .call(reqwest::Method::GET, &format!("status/{id}"), None)
        .await;
    assert_eq!(
        status["output"],
        json!(["worker", "posts", "the", "job", "from"]),
        "aggregate stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_reports_progress_while_it_works() {
    let served = Served::start("hello", &[("SLEEP_TIME", "2")]).await;
    let queued = served
        .call(reqwest::Method::POST, "run", Some(json!({"input": {}})))
        .await;
    let id = queued["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut progress = Vec::new();
    let done = loop {
        let status = served
            .call(reqwest::Method::GET, &format!("status/{id}"), None)
            .await;
        if status["status"] == "IN_PROGRESS"
            && !status["output"].is_null()
            && progress.last() != Some(&status["output"])
        {
            progress.push(status["output"].clone());
        }
        if status["status"] == "COMPLETED" {
            break status;
        }
        assert!(Instant::now() < deadline, "hello did not finish: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["output"], "Hello World");
    assert_eq!(
        progress.first(),
        Some(&json!({"seconds_done": 0, "seconds_total": 2})),
        "{progress:?}"
    );
    let health = served.call(reqwest::Method::GET, "health", None).await;
    assert_eq!(health["jobs"]["completed"], 1, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_keeps_the_local_api_serving() {
    let served = Served::start_binary(&support::fixture(), &[]).await;
    let refreshed = served
        .call(
            reqwest::Method::POST,
            "runsync",
            Some(json!({"input": {"refresh": {"value": 1}}})),
        )
        .await;
    assert_eq!(refreshed["status"], "COMPLETED", "{refreshed}");
    for value in 2..4 {
        let done = served
            .call(
                reqwest::Method::POST,
                "runsync",
                Some(json!({"input": {"echo": {"value": value}}})),
            )
            .await;
        assert_eq!(done["output"], value, "a job after the refresh: {done}");
    }
}

/// A failed init under `--rp_serve_api`: the local API still comes up, and every job sent to
/// it fails with the init's reason (as a job held in production is told), not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_init_fails_each_local_job_with_its_reason() {
    let served = Served::start_binary(&support::fixture(), &[("FIXTURE_INIT_FAIL", "1")]).await;
    for _ in 0..2 {
        let done = served
            .call(
                reqwest::Method::POST,
                "runsync",
                Some(json!({"input": {"echo": {"value": 1}}})),
            )
            .await;
        assert_eq!(done["status"], "FAILED", "{done}");
        let report: Value = serde_json::from_str(done["error"].as_str().unwrap()).unwrap();
        assert_eq!(report["error_type"], "WorkerInitFailed", "{report}");
        assert_eq!(
            report["error_message"],
            "the worker could not start: its init function `init` failed: \
             std::io::error::Error: the weights file is missing"
        );
    }
}

/// The README's "Calling an endpoint from Rust": the `call` example, a typed client, scores
/// reviews through the `model` worker's `--rp_serve_api`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_example_calls_the_model_worker_typed() {
    let served = Served::start("model", &[]).await;
    let base = served.base.trim_end_matches("/local").to_owned();
    let call = example("call");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(call)
            .args(["what a great day", "slow and rude"])
            .env("RUNPOD_ENDPOINT_BASE_URL", base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("\"what a great day\": positive (+"),
        "{stdout}"
    );
    assert_eq!(lines[1], "  great: +3", "{stdout}");
    assert!(
        lines[2].starts_with("\"slow and rude\": negative (-"),
        "{stdout}"
    );
    assert!(lines[3].starts_with("refused: "), "{stdout}");
    assert!(lines[3].contains("text"), "{stdout}");
    assert_eq!(
        lines[4], "endpoint `local`: 2 jobs completed, 1 failed",
        "{stdout}"
    );
}
