//! Test support: a stand-in RunPod platform that records every request a worker makes, and a
//! worker process started against it.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::Notify;

pub const API_KEY: &str = "rp_test_key_5f3c9a";

/// One request the worker made.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
}

#[derive(Default)]
struct Inner {
    queue: Mutex<VecDeque<Value>>,
    queued: Notify,
    requests: Mutex<Vec<Recorded>>,
    recorded: Notify,
}

/// The stand-in platform, serving the worker-facing routes on 127.0.0.1.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
    pub base: String,
}

impl Platform {
    pub async fn start() -> Platform {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v2/ep/job-take/{worker}", get(take))
            .route("/v2/ep/job-take-batch/{worker}", get(take))
            .route("/v2/ep/job-done/{worker}/{job}", post(record_ok))
            .route("/v2/ep/ping/{worker}", get(record_ok))
            .fallback(record_not_found)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Platform { inner, base }
    }

    /// Queue a job for the worker.
    pub fn push(&self, job: Value) {
        self.inner.queue.lock().unwrap().push_back(job);
        self.inner.queued.notify_waiters();
    }

    /// The environment that points a worker at this platform.
    pub fn env(&self) -> Vec<(String, String)> {
        let b = &self.base;
        [
            (
                "RUNPOD_WEBHOOK_GET_JOB",
                format!("{b}/v2/ep/job-take/$ID?gpu=TEST"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT",
                format!("{b}/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=TEST"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_STREAM",
                format!("{b}/v2/ep/job-stream/$RUNPOD_POD_ID/$ID?gpu=TEST"),
            ),
            (
                "RUNPOD_WEBHOOK_PING",
                format!("{b}/v2/ep/ping/$RUNPOD_POD_ID?gpu=TEST"),
            ),
            ("RUNPOD_AI_API_KEY", API_KEY.to_owned()),
            ("RUNPOD_POD_ID", "w42".to_owned()),
            ("RUNPOD_POD_HOSTNAME", "host-7".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Wait until `pick` finds something in the requests so far (or panic after `timeout`).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&[Recorded]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.recorded.notified();
            if let Some(found) = pick(&self.requests()) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out waiting for {what}; requests so far:\n{:#?}",
                    summary(&self.requests())
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }

    /// The final job-done post for `job_id`.
    pub async fn done(&self, job_id: &str) -> Recorded {
        let suffix = format!("/job-done/w42/{job_id}");
        self.wait_for(
            Duration::from_secs(20),
            &format!("job-done for {job_id}"),
            |reqs| reqs.iter().find(|r| r.path.ends_with(&suffix)).cloned(),
        )
        .await
    }
}

fn summary(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            format!(
                "{} {}?{} {}",
                r.method,
                r.path,
                r.query,
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect()
}

fn record(inner: &Inner, method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) {
    inner.requests.lock().unwrap().push(Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers,
        body,
    });
    inner.recorded.notify_waiters();
}

async fn take(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    record(&inner, method, &uri, headers, Bytes::new());
    let batch: Option<usize> = uri.path().contains("/job-take-batch/").then(|| {
        query
            .get("batch_size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    });
    // A short long-poll, so tests stay quick.
    let deadline = Instant::now() + Duration::from_millis(300);
    loop {
        let notified = inner.queued.notified();
        {
            let mut queue = inner.queue.lock().unwrap();
            if !queue.is_empty() {
                return match batch {
                    None => axum::Json(queue.pop_front().unwrap()).into_response(),
                    Some(n) => {
                        let jobs: Vec<Value> = (0..n).map_while(|_| queue.pop_front()).collect();
                        axum::Json(jobs).into_response()
                    }
                };
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}

async fn record_ok(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&inner, method, &uri, headers, body);
    StatusCode::OK
}

async fn record_not_found(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    record(&inner, method, &uri, headers, body);
    StatusCode::NOT_FOUND
}

/// A worker process; killed when dropped. Its stdout and stderr go to files.
pub struct WorkerProcess {
    child: Child,
    dir: PathBuf,
}

/// A built example's path. `cargo test` builds the examples; a single test target alone
/// (`cargo test --test e2e`) does not, so build them first with `cargo build --examples`.
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}; run `cargo build --examples` first",
        path.display()
    );
    path
}

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fixture-worker"))
}

impl WorkerProcess {
    pub fn spawn(bin: &Path, env: &[(String, String)], args: &[&str]) -> WorkerProcess {
        let dir =
            std::env::temp_dir().join(format!("worker-e2e-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        WorkerProcess { child, dir }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the process to exit (panics after `timeout`).
    pub async fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "worker did not exit in {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Run a worker binary to completion in local test mode, in a fresh directory.
pub fn run_local(
    bin: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    files: &[(&str, &str)],
) -> (i32, String, String) {
    let dir =
        std::env::temp_dir().join(format!("worker-local-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let out = Command::new(bin)
        .args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
