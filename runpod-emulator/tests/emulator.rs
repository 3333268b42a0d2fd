//! The emulator over loopback, with reqwest acting as both the client (§13) and the worker
//! (§4–§8), using the request shapes the SDKs send.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runpod_emulator::{Emulator, EmulatorBuilder, EmulatorHandle, FaultKind, Faults, Route};
use serde_json::{Value, json};

/// A started emulator plus an HTTP client that speaks both sides.
struct Emu {
    handle: EmulatorHandle,
    http: reqwest::Client,
    key: Option<String>,
}

fn builder() -> EmulatorBuilder {
    Emulator::builder()
        .bind("127.0.0.1:0")
        .take_timeout(Duration::from_millis(300))
        .webhook_retry_delay(Duration::from_millis(50))
}

async fn start(builder: EmulatorBuilder) -> Emu {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Emu {
        handle: builder.build().await.expect("the emulator starts"),
        http: reqwest::Client::new(),
        key: None,
    }
}

async fn start_with_key(key: &str) -> Emu {
    let mut emu = start(builder().api_key(Some(key.into()))).await;
    emu.key = Some(key.into());
    emu
}

async fn body_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

impl Emu {
    fn endpoint(&self) -> String {
        self.handle.endpoint_url()
    }

    /// A client request (`Authorization: Bearer <key>`, JSON body) to `{endpoint}/{path}`.
    async fn client(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.client_at(method, &format!("{}/{path}", self.endpoint()), body)
            .await
    }

    async fn client_at(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, url);
        if let Some(key) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        body_of(request.send().await.unwrap()).await
    }

    async fn run(&self, body: Value) -> String {
        let (status, v) = self.client(Method::POST, "run", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "IN_QUEUE");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, id: &str) -> Value {
        let (status, v) = self
            .client(Method::GET, &format!("status/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// A worker request with the raw key, as the SDKs send it.
    async fn worker(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/{path}", self.endpoint()));
        if let Some(key) = &self.key {
            request = request.header("Authorization", key);
        }
        if let Some(body) = body {
            // JSON under a form content type, like both SDKs.
            request = request
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("charset", "utf-8")
                .body(body.to_string());
        }
        body_of(request.send().await.unwrap()).await
    }

    async fn take(&self, worker: &str) -> (StatusCode, Value) {
        self.worker(
            Method::GET,
            &format!("job-take/{worker}?gpu=local&job_in_progress=0"),
            None,
        )
        .await
    }

    async fn done(
        &self,
        worker: &str,
        id: &str,
        body: Value,
        is_stream: bool,
    ) -> (StatusCode, Value) {
        self.worker(
            Method::POST,
            &format!("job-done/{worker}/{id}?gpu=local&isStream={is_stream}"),
            Some(body),
        )
        .await
    }

    async fn chunk(&self, worker: &str, id: &str, output: Value) {
        let (status, v) = self
            .worker(
                Method::POST,
                &format!("job-stream/{worker}/{id}?gpu=local&isStream=false"),
                Some(json!({ "output": output })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    async fn ping(&self, worker: &str, job_ids: &str) {
        let (status, _) = self
            .worker(
                Method::GET,
                &format!("ping/{worker}?gpu=local&job_id={job_ids}&runpod_version=1.12.0"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// Poll `check` every 20 ms until it gives a value, failing after 3 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn run_take_done_status() {
    let emu = start(builder()).await;
    let id = emu
        .run(json!({"input": {"prompt": "hi"}, "policy": {"ttl": 60000}}))
        .await;
    assert!(id.ends_with("-e1") && id.len() > 30, "{id}");
    assert_eq!(
        emu.status(&id).await,
        json!({"id": id, "status": "IN_QUEUE"})
    );

    let (status, job) = emu.take("w1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        job,
        json!({"id": id, "input": {"prompt": "hi"}, "policy": {"ttl": 60000}})
    );
    let running = emu.status(&id).await;
    assert_eq!(running["status"], "IN_PROGRESS");
    assert!(running["delayTime"].is_u64());
    assert_eq!(running["workerId"], "w1");

    let (status, _) = emu
        .done("w1", &id, json!({"output": {"text": "HI"}}), false)
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = emu.status(&id).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["output"], json!({"text": "HI"}));
    assert!(
        done["delayTime"].is_u64() && done["executionTime"].is_u64(),
        "{done}"
    );

    // A second result for a finished job is ignored.
    let (status, v) = emu.done("w1", &id, json!({"output": 2}), false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["ignored"].is_string());
    assert_eq!(emu.status(&id).await["output"], json!({"text": "HI"}));
    emu.handle.shutdown().await;
}

#[tokio::test]
async fn failed_jobs_keep_the_error_string_as_is() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    let report = r#"{"error_type": "<class 'ValueError'>", "error_message": "boom"}"#;
    emu.done("w1", &id, json!({ "error": report }), false).await;
    let failed = emu.status(&id).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["error"], report);
    assert!(failed.get("output").is_none());
}

#[tokio::test]
async fn runsync_returns_the_result_or_the_status_when_the_wait_runs_out() {
    let emu = start(builder()).await;
    // No worker: the wait runs out and the current status comes back.
    let started = Instant::now();
    let (status, v) = emu
        .client(Method::POST, "runsync?wait=150", Some(json!({"input": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "IN_QUEUE");
    assert!(v["id"].as_str().unwrap().starts_with("sync-"));
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A worker that answers: runsync gives the final result.
    let emu = std::sync::Arc::new(emu);
    let worker = {
        let emu = emu.clone();
        tokio::spawn(async move {
            loop {
                let (status, job) = emu.take("w1").await;
                if status == StatusCode::OK && job["input"] == 2 {
                    let id = job["id"].as_str().unwrap();
                    emu.done("w1", id, json!({"output": "two"}), false).await;
                    return;
                }
            }
        })
    };
    let (status, v) = emu
        .client(Method::POST, "runsync", Some(json!({"input": 2})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["output"], "two");
    assert!(v["delayTime"].is_u64() && v["executionTime"].is_u64());
    worker.await.unwrap();
}

#[tokio::test]
async fn job_take_long_polls_until_a_job_arrives_or_answers_204() {
    let emu = std::sync::Arc::new(start(builder()).await);
    let started = Instant::now();
    let (status, v) = emu.take("w1").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    assert!(started.elapsed() >= Duration::from_millis(280));

    let poll = {
        let emu = emu.clone();
        tokio::spawn(async move {
            emu.worker(Method::GET, "job-take/w1?gpu=local&job_in_progress=0", None)
                .await
        })
    };
    // The poll is held open: health counts the worker meanwhile.
    let e = &*emu;
    eventually("the worker to be seen", move || async move {
        let (_, h) = e.client(Method::GET, "health", None).await;
        (h["workers"]["idle"] == 1).then_some(())
    })
    .await;
    let id = emu.run(json!({"input": "late"})).await;
    let (status, job) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["id"], id);
}

#[tokio::test]
async fn job_take_batch_gives_an_array_of_up_to_batch_size_jobs() {
    let emu = start(builder()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(emu.run(json!({ "input": i })).await);
    }
    let batch = |n: usize| format!("job-take-batch/w1?gpu=local&batch_size={n}&job_in_progress=0");
    let (status, jobs) = emu.worker(Method::GET, &batch(2), None).await;
    assert_eq!(status, StatusCode::OK);
    let taken: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(taken, [ids[0].as_str(), ids[1].as_str()]);
    let (_, jobs) = emu.worker(Method::GET, &batch(5), None).await;
    assert_eq!(jobs, json!([{"id": ids[2], "input": 2}]));
    let (status, _) = emu.worker(Method::GET, &batch(5), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn progress_updates_show_as_output_while_in_progress() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": null})).await;
    emu.take("w1").await;
    let (status, _) = emu
        .done(
            "w1",
            &id,
            json!({"status": "IN_PROGRESS", "output": {"pct": 50}}),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let v = emu.status(&id).await;
    assert_eq!(v["status"], "IN_PROGRESS");
    assert_eq!(v["output"], json!({"pct": 50}));
    emu.done("w1", &id, json!({"output": "done"}), false).await;
    assert_eq!(emu.status(&id).await["output"], "done");
}

#[tokio::test]
async fn stream_delivers_each_chunk_once_then_an_empty_list_with_the_final_status() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": "tokens"})).await;
    emu.take("w1").await;
    let path = format!("stream/{id}");
    let stream = || emu.client(Method::GET, &path, None);

    emu.chunk("w1", &id, json!("a")).await;
    emu.chunk("w1", &id, json!({"tok": "b"})).await;
    let (status, v) = stream().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "IN_PROGRESS");
    assert_eq!(
        v["stream"],
        json!([{"output": "a"}, {"output": {"tok": "b"}}])
    );
    let (_, v) = stream().await;
    assert_eq!(v["stream"], json!([]));
    assert_eq!(v["status"], "IN_PROGRESS");

    emu.chunk("w1", &id, json!("c")).await;
    // A generator's final post: isStream=true with an empty output.
    emu.done("w1", &id, json!({"output": []}), true).await;
    let (_, v) = stream().await;
    assert_eq!(v["stream"], json!([{"output": "c"}]));
    assert_eq!(v["status"], "COMPLETED");
    let (_, v) = stream().await;
    assert_eq!(v["stream"], json!([]));
    assert_eq!(v["status"], "COMPLETED");
    assert_eq!(
        emu.status(&id).await["output"],
        json!(["a", {"tok": "b"}, "c"])
    );
}

#[tokio::test]
async fn stream_of_a_plain_job_delivers_its_output_once() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    emu.done("w1", &id, json!({"output": 42}), false).await;
    let (_, v) = emu.client(Method::GET, &format!("stream/{id}"), None).await;
    assert_eq!(v["stream"], json!([{"output": 42}]));
    let (_, v) = emu.client(Method::GET, &format!("stream/{id}"), None).await;
    assert_eq!(v["stream"], json!([]));
    assert_eq!(v["status"], "COMPLETED");
}

#[tokio::test]
async fn cancel_tells_the_worker_and_ignores_its_late_result() {
    let emu = std::sync::Arc::new(start(builder().take_timeout(Duration::from_secs(2))).await);
    // A queued job is cancelled before anyone takes it.
    let queued = emu.run(json!({"input": "never"})).await;
    let (_, v) = emu
        .client(Method::POST, &format!("cancel/{queued}"), None)
        .await;
    assert_eq!(v["status"], "CANCELLED");

    let id = emu.run(json!({"input": "slow"})).await;
    let (_, job) = emu.take("w1").await;
    assert_eq!(job["id"], id, "the cancelled job is not handed out");

    // The worker's job-stop long-poll is waiting when the client cancels.
    let stop = {
        let emu = emu.clone();
        tokio::spawn(async move { emu.worker(Method::GET, "job-stop/w1?gpu=local", None).await })
    };
    let (status, v) = emu
        .client(Method::POST, &format!("cancel/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["id"], id);
    assert_eq!(v["status"], "CANCELLED");
    let (status, v) = stop.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({ "jobsToStop": [id] }));

    let (status, _) = emu.done("w1", &id, json!({"output": "late"}), false).await;
    assert_eq!(status, StatusCode::OK);
    let v = emu.status(&id).await;
    assert_eq!(v["status"], "CANCELLED");
    assert!(v.get("output").is_none());
}

#[tokio::test]
async fn retry_requeues_a_failed_job_under_the_same_id() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    emu.done("w1", &id, json!({"error": "flaky"}), false).await;
    assert_eq!(emu.status(&id).await["status"], "FAILED");

    let (status, v) = emu.client(Method::POST, &format!("retry/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"id": id, "status": "IN_QUEUE"}));
    let (_, job) = emu.take("w2").await;
    assert_eq!(job["id"], id);
    emu.done("w2", &id, json!({"output": "ok"}), false).await;
    let v = emu.status(&id).await;
    assert_eq!(
        (v["status"].as_str(), &v["output"]),
        (Some("COMPLETED"), &json!("ok"))
    );
    assert!(v.get("error").is_none());

    let (status, v) = emu.client(Method::POST, &format!("retry/{id}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("COMPLETED"));
    let (_, h) = emu.client(Method::GET, "health", None).await;
    assert_eq!(h["jobs"]["retried"], 1);
    assert_eq!(h["jobs"]["failed"], 1);
    assert_eq!(h["jobs"]["completed"], 1);
}

#[tokio::test]
async fn purge_queue_removes_queued_jobs_only() {
    let emu = start(builder()).await;
    let running = emu.run(json!({"input": 0})).await;
    emu.take("w1").await;
    let queued = [
        emu.run(json!({"input": 1})).await,
        emu.run(json!({"input": 2})).await,
    ];
    let (status, v) = emu.client(Method::POST, "purge-queue", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"removed": 2, "status": "completed"}));
    for id in &queued {
        assert_eq!(emu.status(id).await["status"], "CANCELLED");
    }
    assert_eq!(emu.status(&running).await["status"], "IN_PROGRESS");
    let (status, _) = emu.take("w1").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn health_counts_jobs_and_workers() {
    let emu = start(builder()).await;
    let (_, h) = emu.client(Method::GET, "health", None).await;
    assert_eq!(
        h["jobs"],
        json!({"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0})
    );
    assert_eq!(
        (&h["workers"]["idle"], &h["workers"]["running"]),
        (&json!(0), &json!(0))
    );

    let a = emu.run(json!({"input": 1})).await;
    emu.run(json!({"input": 2})).await;
    emu.ping("w1", "").await;
    emu.ping("w2", "").await;
    emu.take("w1").await;
    emu.ping("w1", &a).await;
    let (_, h) = emu.client(Method::GET, "health", None).await;
    assert_eq!(h["jobs"]["inProgress"], 1);
    assert_eq!(h["jobs"]["inQueue"], 1);
    assert_eq!(h["workers"]["running"], 1);
    assert_eq!(h["workers"]["idle"], 1);

    emu.done("w1", &a, json!({"output": 1}), false).await;
    let (_, h) = emu.client(Method::GET, "health", None).await;
    assert_eq!(h["jobs"]["completed"], 1);
    assert_eq!(h["workers"]["idle"], 2);
}

#[tokio::test]
async fn auth_accepts_bearer_and_raw_keys_and_rejects_others() {
    let emu = start_with_key("sk-test").await;
    let url = format!("{}/health", emu.endpoint());
    for (header, expected) in [
        (Some("Bearer sk-test"), StatusCode::OK),
        (Some("bearer sk-test"), StatusCode::OK),
        (Some("sk-test"), StatusCode::OK),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some("wrong"), StatusCode::UNAUTHORIZED),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let mut request = emu.http.get(&url);
        if let Some(h) = header {
            request = request.header("Authorization", h);
        }
        let (status, v) = body_of(request.send().await.unwrap()).await;
        assert_eq!(status, expected, "{header:?}");
        if status == StatusCode::UNAUTHORIZED {
            assert!(v["error"].as_str().unwrap().starts_with("Unauthorized"));
        }
    }
    // Workers send the raw key; the whole exchange works with it.
    let id = emu.run(json!({"input": 1})).await;
    let (status, _) = emu.take("w1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = emu.done("w1", &id, json!({"output": 1}), false).await;
    assert_eq!(status, StatusCode::OK);
    let unauthenticated = emu
        .http
        .get(format!("{}/job-take/w1?gpu=local", emu.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    // The worker environment carries the key.
    let env = emu.handle.worker_env("w9");
    assert!(env.contains(&("RUNPOD_AI_API_KEY".into(), "sk-test".into())));
    assert!(env.contains(&("RUNPOD_POD_ID".into(), "w9".into())));
}

#[tokio::test]
async fn oversized_requests_get_413_with_a_clear_error() {
    let emu = start(builder()).await;
    let payload = |mb: usize| json!({ "input": "x".repeat(mb * 1024 * 1024) });
    let (status, v) = emu.client(Method::POST, "run", Some(payload(10))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let message = v["error"].as_str().unwrap();
    assert!(
        message.contains("too large") && message.contains("/run accepts at most 10 MB"),
        "{message}"
    );
    // /runsync takes up to 20 MB.
    let (status, v) = emu
        .client(Method::POST, "runsync?wait=0", Some(payload(11)))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "IN_QUEUE");
    let (status, v) = emu
        .client(Method::POST, "runsync?wait=0", Some(payload(20)))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].as_str().unwrap().contains("20 MB"));
    // Malformed bodies are 400 with a reason.
    let (status, v) = emu
        .client(Method::POST, "run", Some(json!({"prompt": "no input"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("`input`"));
}

/// A webhook receiver: answers `fail_first` requests with 500, then 200; sends each body.
async fn receiver(fail_first: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            let seen = seen.clone();
            async move {
                let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
                if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("a webhook call")
        .expect("the receiver is alive")
}

#[tokio::test]
async fn webhook_gets_the_final_status_once_and_is_retried_on_failure() {
    let emu = start(builder()).await;
    let (url, mut calls) = receiver(1).await;
    let id = emu.run(json!({"input": 1, "webhook": url})).await;
    let (_, job) = emu.take("w1").await;
    assert_eq!(job["webhook"], url, "the worker sees the webhook too");
    emu.done(
        "w1",
        &id,
        json!({"status": "IN_PROGRESS", "output": "half"}),
        false,
    )
    .await;
    emu.done("w1", &id, json!({"output": "all"}), false).await;
    let first = next(&mut calls).await;
    assert_eq!(first["id"], id);
    assert_eq!(first["status"], "COMPLETED");
    assert_eq!(first["output"], "all");
    // The first attempt got a 500: one retry, same body.
    assert_eq!(next(&mut calls).await, first);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), calls.recv())
            .await
            .is_err(),
        "delivered once it succeeded"
    );
}

#[tokio::test]
async fn ttl_times_out_a_queued_job() {
    let emu = start(builder()).await;
    let (status, v) = emu
        .client(
            Method::POST,
            "runsync?wait=3000",
            Some(json!({"input": 1, "policy": {"ttl": 200}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "TIMED_OUT", "{v}");
    assert!(v["error"].as_str().unwrap().contains("ttl"));
    let (status, _) = emu.take("w1").await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a timed-out job is not handed out"
    );
}

#[tokio::test]
async fn execution_timeout_times_out_a_running_job_and_stops_it() {
    let emu = start(builder().take_timeout(Duration::from_secs(2))).await;
    let id = emu
        .run(json!({"input": 1, "policy": {"executionTimeout": 200}}))
        .await;
    emu.take("w1").await;
    let started = Instant::now();
    let (status, v) = emu.worker(Method::GET, "job-stop/w1?gpu=local", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({ "jobsToStop": [id] }));
    assert!(started.elapsed() >= Duration::from_millis(150));
    let v = emu.status(&id).await;
    assert_eq!(v["status"], "TIMED_OUT");
    assert!(v["error"].as_str().unwrap().contains("executionTimeout"));
    let (status, _) = emu.done("w1", &id, json!({"output": "late"}), false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(emu.status(&id).await["status"], "TIMED_OUT");
}

#[tokio::test]
async fn a_lost_workers_job_is_requeued_once_then_timed_out() {
    let emu = start(
        builder()
            .take_timeout(Duration::from_millis(200))
            .worker_timeout(Duration::from_millis(300)),
    )
    .await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    // w1 goes silent; its job goes back to the queue and w2 gets it.
    let e = &emu;
    let (_, job) = eventually("the job to be re-queued", move || async move {
        let (status, job) = e.take("w2").await;
        (status == StatusCode::OK).then_some((status, job))
    })
    .await;
    assert_eq!(job["id"], id);
    let v = emu.status(&id).await;
    assert_eq!(
        (v["status"].as_str(), &v["retries"]),
        (Some("IN_PROGRESS"), &json!(1))
    );
    // w1 comes back too late: the job is not its own any more.
    let (status, _) = emu.done("w1", &id, json!({"output": "stale"}), false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // w2 goes silent as well: TIMED_OUT.
    let id2 = id.as_str();
    let v = eventually("the job to time out", move || async move {
        let v = e.status(id2).await;
        (v["status"] == "TIMED_OUT").then_some(v)
    })
    .await;
    assert!(v["error"].as_str().unwrap().contains("stopped responding"));
    let (_, h) = emu.client(Method::GET, "health", None).await;
    assert_eq!(h["jobs"]["retried"], 1);
}

#[tokio::test]
async fn a_pinging_worker_keeps_its_job() {
    let emu = start(builder().worker_timeout(Duration::from_millis(300))).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        emu.ping("w1", &id).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = emu.status(&id).await;
    assert_eq!(v["status"], "IN_PROGRESS");
    assert!(v.get("retries").is_none());
}

#[tokio::test]
async fn prefixless_routes_and_post_for_status_and_stream() {
    let emu = start(builder()).await;
    let base = emu.handle.url().to_owned();
    let (status, v) = emu
        .client_at(
            Method::POST,
            &format!("{base}/run"),
            Some(json!({"input": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = v["id"].as_str().unwrap().to_owned();
    for method in [Method::GET, Method::POST] {
        let (status, v) = emu
            .client_at(method.clone(), &format!("{base}/status/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{method}");
        assert_eq!(v["status"], "IN_QUEUE");
        let (status, v) = emu
            .client_at(method.clone(), &format!("{base}/stream/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{method}");
        assert_eq!(v["stream"], json!([]));
    }
    let (status, h) = emu
        .client_at(Method::GET, &format!("{base}/health"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["jobs"]["inQueue"], 1);
    let (_, v) = emu
        .client_at(Method::POST, &format!("{base}/cancel/{id}"), None)
        .await;
    assert_eq!(v["status"], "CANCELLED");
    let (_, v) = emu
        .client_at(Method::POST, &format!("{base}/retry/{id}"), None)
        .await;
    assert_eq!(v["status"], "IN_QUEUE");
    let (_, v) = emu
        .client_at(Method::POST, &format!("{base}/purge-queue"), None)
        .await;
    assert_eq!(v["removed"], 1);
    let (status, v) = emu
        .client_at(
            Method::POST,
            &format!("{base}/runsync?wait=0"),
            Some(json!({"input": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "IN_QUEUE");

    // Unknown jobs, endpoints and routes are JSON 404s.
    let (status, v) = emu.client(Method::GET, "status/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("nope"));
    let (status, v) = emu
        .client_at(Method::GET, &format!("{base}/v2/other/health"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("`local`"));
    let (status, _) = emu
        .client_at(Method::GET, &format!("{base}/nowhere"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn worker_env_points_at_the_emulator() {
    let emu = start(
        builder()
            .endpoint_id("ep1")
            .ping_interval(Duration::from_millis(1500)),
    )
    .await;
    let env: std::collections::HashMap<String, String> =
        emu.handle.worker_env("w42").into_iter().collect();
    let base = format!("{}/v2/ep1", emu.handle.url());
    assert_eq!(
        env["RUNPOD_WEBHOOK_GET_JOB"],
        format!("{base}/job-take/$ID?gpu=local")
    );
    assert_eq!(
        env["RUNPOD_WEBHOOK_POST_OUTPUT"],
        format!("{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=local")
    );
    assert_eq!(
        env["RUNPOD_WEBHOOK_POST_STREAM"],
        format!("{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local")
    );
    assert_eq!(
        env["RUNPOD_WEBHOOK_PING"],
        format!("{base}/ping/$RUNPOD_POD_ID?gpu=local")
    );
    assert_eq!(env["RUNPOD_POD_ID"], "w42");
    assert_eq!(env["RUNPOD_PING_INTERVAL"], "1500");
    assert!(!env["RUNPOD_AI_API_KEY"].is_empty());
}

#[tokio::test]
async fn shutdown_answers_held_long_polls() {
    let emu = start(builder().take_timeout(Duration::from_secs(30))).await;
    let url = format!("{}/job-take/w1?gpu=local&job_in_progress=0", emu.endpoint());
    let poll = tokio::spawn(emu.http.get(url).send());
    let e = &emu;
    eventually("the poll to be held", move || async move {
        let (_, h) = e.client(Method::GET, "health", None).await;
        (h["workers"]["idle"] == 1).then_some(())
    })
    .await;
    let started = Instant::now();
    emu.handle.shutdown().await;
    let response = poll.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_stop_the_worker_missed_is_announced_again_while_it_still_reports_the_job() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    emu.client(Method::POST, &format!("cancel/{id}"), None)
        .await;
    let stop = || emu.worker(Method::GET, "job-stop/w1?gpu=local", None);
    assert_eq!(stop().await.1, json!({ "jobsToStop": [id] }));
    // The worker had not started the job yet and ignored the stop; its ping still lists it.
    emu.ping("w1", &id).await;
    assert_eq!(stop().await.1, json!({ "jobsToStop": [id] }));
    // Once the worker no longer reports it, nothing more is sent.
    emu.ping("w1", "").await;
    assert_eq!(stop().await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_old_stop_does_not_stop_the_retried_run() {
    let emu = start(builder()).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    // Cancelled while w1 runs it; w1 never polls job-stop.
    emu.client(Method::POST, &format!("cancel/{id}"), None)
        .await;
    emu.client(Method::POST, &format!("retry/{id}"), None).await;
    let (_, job) = emu.take("w1").await;
    assert_eq!(job["id"], id);
    let (status, v) = emu.worker(Method::GET, "job-stop/w1?gpu=local", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    emu.done("w1", &id, json!({"output": "second run"}), false)
        .await;
    assert_eq!(emu.status(&id).await["status"], "COMPLETED");
}

/* ---- fault injection and the request recorder ---- */

/// A worker-side POST of a job-done body, returning the transport error or the status.
async fn raw_done(emu: &Emu, worker: &str, id: &str, body: &Value) -> Result<StatusCode, String> {
    emu.http
        .post(format!(
            "{}/job-done/{worker}/{id}?gpu=local&isStream=false",
            emu.endpoint()
        ))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status())
        .map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })
}

#[tokio::test]
async fn an_injected_reset_is_a_transport_error_and_reset_after_still_processes() {
    let emu = start(
        builder()
            .record_requests(true)
            .faults(Some(Faults::new(1).rate(
                Route::JobDone,
                FaultKind::Reset,
                1.0,
            ))),
    )
    .await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    let err = raw_done(&emu, "w1", &id, &json!({"output": 1}))
        .await
        .expect_err("a reset is not an HTTP answer");
    assert!(
        err.contains("reset") || err.contains("closed") || err.contains("error sending"),
        "{err}"
    );
    assert_eq!(emu.status(&id).await["status"], "IN_PROGRESS");

    // Processed, then the answer is lost: the job is complete, the worker saw an error.
    emu.handle.set_faults(Some(Faults::new(1).rate(
        Route::JobDone,
        FaultKind::ResetAfter,
        1.0,
    )));
    assert!(
        raw_done(&emu, "w1", &id, &json!({"output": 1}))
            .await
            .is_err()
    );
    assert_eq!(emu.status(&id).await["status"], "COMPLETED");
    // The retry of the same result is counted as a duplicate, not a conflict.
    emu.handle.set_faults(None);
    assert_eq!(
        raw_done(&emu, "w1", &id, &json!({"output": 1})).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        raw_done(&emu, "w1", &id, &json!({"output": 2})).await,
        Ok(StatusCode::OK)
    );
    let stats = emu.handle.stats();
    assert_eq!(
        (
            stats.completed,
            stats.duplicate_finals,
            stats.conflicting_finals
        ),
        (1, 2, 1)
    );
    assert_eq!(stats.faults_injected, 2);
    let dones: Vec<(Option<String>, Option<u16>)> = emu
        .handle
        .worker_requests()
        .into_iter()
        .filter(|r| r.path.contains("/job-done/"))
        .map(|r| (r.fault, r.answer))
        .collect();
    // The recorder notes what the emulator answered, even when a reset lost it.
    assert_eq!(
        dones,
        [
            (Some("reset".into()), None),
            (Some("reset-after".into()), Some(200)),
            (None, Some(200)),
            (None, Some(200))
        ]
    );
    emu.handle.shutdown().await;
}

#[tokio::test]
async fn injected_statuses_malformed_takes_and_failing_done() {
    let emu = start(
        builder().faults(Some(
            Faults::new(3)
                .rate(Route::JobTake, FaultKind::TooManyRequests, 1.0)
                .retry_after(Some(2))
                .fail_done_times(2),
        )),
    )
    .await;
    let id = emu.run(json!({"input": "x"})).await;
    let response = emu
        .http
        .get(format!("{}/job-take/w1?gpu=local", emu.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");

    for (kind, expected) in [
        (FaultKind::NotJson, None),
        (
            FaultKind::MissingId,
            Some(json!({"input": {"injected": true}})),
        ),
        (
            FaultKind::MissingInput,
            Some(json!({"id": "injected-no-input"})),
        ),
    ] {
        emu.handle
            .set_faults(Some(Faults::new(3).rate(Route::JobTake, kind, 1.0)));
        let response = emu
            .http
            .get(format!("{}/job-take/w1?gpu=local", emu.endpoint()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.text().await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&body).ok(),
            expected,
            "{kind:?}"
        );
    }
    // The job was not handed out by a malformed answer; a bad batch carries it plus junk.
    emu.handle.set_faults(Some(
        Faults::new(3)
            .rate(Route::JobTake, FaultKind::BadBatchItems, 1.0)
            .fail_done_times(2),
    ));
    let (status, batch) = emu
        .worker(
            Method::GET,
            "job-take-batch/w1?gpu=local&batch_size=3",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = batch.as_array().unwrap();
    assert_eq!(items[0], json!({"id": id, "input": "x"}));
    assert_eq!(items.len(), 5, "{batch}");
    for expected in [500, 500, 200] {
        let (status, _) = emu.done("w1", &id, json!({"output": "X"}), false).await;
        assert_eq!(status.as_u16(), expected);
    }
    assert_eq!(emu.status(&id).await["output"], "X");
    emu.handle.shutdown().await;
}

#[tokio::test]
async fn the_recorder_keeps_worker_requests_only() {
    let emu = start(builder().record_requests(true)).await;
    let id = emu.run(json!({"input": 1})).await;
    emu.take("w1").await;
    emu.ping("w1", &id).await;
    emu.done("w1", &id, json!({"output": 1}), false).await;
    emu.status(&id).await;
    let requests = emu.handle.worker_requests();
    let summary: Vec<(String, String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.query.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "GET".into(),
                "/v2/local/job-take/w1".into(),
                "gpu=local&job_in_progress=0".into()
            ),
            (
                "GET".into(),
                "/v2/local/ping/w1".into(),
                format!("gpu=local&job_id={id}&runpod_version=1.12.0")
            ),
            (
                "POST".into(),
                format!("/v2/local/job-done/w1/{id}"),
                "gpu=local&isStream=false".into()
            ),
        ]
    );
    let done = &requests[2];
    assert_eq!(done.body, br#"{"output":1}"#);
    assert_eq!(
        done.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(done.is_final_done());
    assert_eq!(done.last_segment(), id);
    emu.handle.clear_worker_requests();
    assert!(emu.handle.worker_requests().is_empty());
    emu.handle.shutdown().await;
}

/// `runpod-emulator --log-requests` prints one line per worker request, with the injected
/// fault, and never the Authorization value.
#[test]
fn the_binary_logs_worker_requests_without_the_key() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_runpod-emulator"))
        .args([
            "--port",
            "0",
            "--api-key",
            "sekrit-key-123",
            "--log-requests",
        ])
        .args(["--fault", "take:503=1", "--fault-seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = loop {
        let line = lines.next().expect("the emulator prints its URL").unwrap();
        if let Some(url) = line.strip_prefix("RunPod emulator listening on ") {
            break url.trim().to_owned();
        }
    };
    let (host, path) = endpoint
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path}/job-take/w1?gpu=x&job_in_progress=0 HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: sekrit-key-123\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let logged = loop {
        let line = lines.next().expect("a request line").unwrap();
        if line.contains("emulator: GET") {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        logged.ends_with(&format!(
            "emulator: GET /{path}/job-take/w1?gpu=x&job_in_progress=0 -> 503 (injected: 503)"
        )),
        "{logged}"
    );
    assert!(!logged.contains("sekrit"));
}
