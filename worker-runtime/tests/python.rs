//! The emulator against the official Python SDK (runpod 1.12.0): its `runpod.Endpoint` client,
//! and its serverless worker.
//!
//! The SDK is installed once into a venv under Cargo's test temp dir (`python3 -m venv`,
//! `pip install runpod==1.12.0`; about 30 s the first time). The tests skip with a message when
//! python3 is missing, when the install fails (no network), or when
//! `RUNPOD_SKIP_PYTHON_TESTS=1` is set; under CI a failed setup fails them instead.

#![cfg(unix)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use worker::emulator::{Emulator, EmulatorHandle};

const RUNPOD_VERSION: &str = "1.12.0";

#[path = "support/venv.rs"]
mod venv;
// The repository's example workers, found as the root package's tests find them.
#[path = "../../tests/support/examples.rs"]
mod examples;

/// The venv's python, or why the tests are skipped.
fn python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let requirement = format!("runpod=={RUNPOD_VERSION}");
            venv::venv(
                &format!("runpod-{RUNPOD_VERSION}"),
                &requirement,
                "RUNPOD_SKIP_PYTHON_TESTS",
            )
            .map(|bin| bin.join("python"))
        })
        .clone()
}

macro_rules! python_or_skip {
    () => {
        match python() {
            Ok(python) => python,
            Err(why) => {
                eprintln!("skipping the Python SDK test: {why}");
                return;
            }
        }
    };
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join(name)
}

/// A fresh HOME, so a developer's `~/.runpod/config.toml` cannot override the test key.
fn scratch_home(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("home-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn emulator() -> EmulatorHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Emulator::builder()
        .bind("127.0.0.1:0")
        .api_key(Some("py-key".into()))
        .take_timeout(Duration::from_secs(5))
        // The Python SDK pings every RUNPOD_PING_INTERVAL // 1000 seconds.
        .ping_interval(Duration::from_secs(1))
        .build()
        .await
        .unwrap()
}

/// A child process killed when dropped; its output goes to a log file.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    /// Kill the worker's whole process group: the SDK forks its heartbeat into a child process
    /// that would outlive a killed parent.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !killed {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn python_worker(python: &Path, emulator: &EmulatorHandle, id: &str, handler: &str) -> Process {
    let log =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{id}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(python)
        .arg(script("worker.py"))
        .process_group(0)
        .envs(emulator.worker_env(id))
        .env("HANDLER", handler)
        .env("HOME", scratch_home(id))
        .env("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
        .env("RUNPOD_SKIP_GPU_CHECK", "true")
        .env("RUNPOD_LOG_LEVEL", "INFO")
        .env("PYTHONUNBUFFERED", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("python starts");
    Process { child, log }
}

/// Client requests with the Bearer key.
struct Client {
    http: reqwest::Client,
    endpoint: String,
}

impl Client {
    fn new(emulator: &EmulatorHandle) -> Client {
        Client {
            http: reqwest::Client::new(),
            endpoint: emulator.endpoint_url(),
        }
    }

    async fn call(&self, post: bool, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/{path}", self.endpoint);
        let mut request = if post {
            self.http.post(url)
        } else {
            self.http.get(url)
        };
        request = request.header("Authorization", "Bearer py-key");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }
}

/// Poll `check` every 50 ms until it gives a value; on timeout, fail showing `logs`.
async fn eventually<T, Fut>(
    what: &str,
    within: Duration,
    logs: &dyn Fn() -> String,
    mut check: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- worker logs ---\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One of the repository's example workers (built by `cargo test --workspace`), serving
/// `emulator` as a real process.
fn example_worker(emulator: &EmulatorHandle, name: &str, env: &[(&str, &str)]) -> Process {
    let path = examples::example(name);
    let log =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(path)
        .process_group(0)
        .envs(emulator.worker_env(name))
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the example starts");
    Process { child, log }
}

/// (a) `runpod.Endpoint` against the emulator, with our `echo`, `stream` and `hello` examples
/// serving it: run_sync, run, output, status, stream, health, purge_queue and cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_against_our_examples() {
    let python = python_or_skip!();
    for (example, env) in [
        ("echo", &[][..]),
        ("stream", &[("TOKEN_DELAY_MS", "20")][..]),
        ("hello", &[("SLEEP_TIME", "2")][..]),
    ] {
        let emulator = emulator().await;
        let worker = example_worker(&emulator, example, env);
        let (python, url, home) = (
            python.clone(),
            emulator.url().to_owned(),
            scratch_home(example),
        );
        let out = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script("client.py"))
                .env("EMULATOR_URL", url)
                .env("ENDPOINT_ID", "local")
                .env("API_KEY", "py-key")
                .env("CHECKS", example)
                .env("HOME", home)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("all client checks passed"),
            "client.py against {example} failed:\n{text}\n--- worker log ---\n{}",
            worker.log()
        );
        drop(worker);
        emulator.shutdown().await;
    }
}

/// (b) Two Python SDK worker processes serving one emulator: results, error reports,
/// progress updates, cancellation through job-stop, and health counting both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_workers_against_the_emulator() {
    let python = python_or_skip!();
    let emulator = emulator().await;
    let workers = [
        python_worker(&python, &emulator, "py-1", "plain"),
        python_worker(&python, &emulator, "py-2", "plain"),
    ];
    let logs = || {
        workers
            .iter()
            .map(Process::log)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let client = Client::new(&emulator);
    let c = &client;

    eventually(
        "both workers to connect",
        Duration::from_secs(30),
        &logs,
        move || async move {
            let health = c.call(false, "health", None).await;
            (health["workers"]["idle"] == 2).then_some(())
        },
    )
    .await;

    let done = client
        .call(true, "runsync", Some(json!({"input": {"x": 1}})))
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}\n{}", logs());
    assert_eq!(done["output"]["echo"], json!({"x": 1}));
    assert!(done["delayTime"].is_u64() && done["executionTime"].is_u64());

    let failed = client
        .call(true, "runsync", Some(json!({"input": {"fail": true}})))
        .await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let report: Value = serde_json::from_str(failed["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "<class 'ValueError'>");
    assert_eq!(report["error_message"], "boom");
    assert_eq!(report["runpod_version"], RUNPOD_VERSION);

    // progress_update shows as output while the job runs.
    let job = client
        .call(true, "run", Some(json!({"input": {"progress": 1.5}})))
        .await;
    let status_path = format!("status/{}", job["id"].as_str().unwrap());
    let sp = status_path.as_str();
    eventually(
        "the progress update",
        Duration::from_secs(5),
        &logs,
        move || async move {
            let v = c.call(false, sp, None).await;
            (v["status"] == "IN_PROGRESS" && v["output"] == json!({"pct": 50})).then_some(())
        },
    )
    .await;
    let v = eventually(
        "the job to complete",
        Duration::from_secs(5),
        &logs,
        move || async move {
            let v = c.call(false, sp, None).await;
            (v["status"] == "COMPLETED").then_some(v)
        },
    )
    .await;
    assert_eq!(v["output"]["echo"], json!({"progress": 1.5}));

    // Cancel a running job: the worker stops it through job-stop and stays available.
    let held = client
        .call(true, "run", Some(json!({"input": {"hold": true}})))
        .await;
    let held_id = held["id"].as_str().unwrap().to_owned();
    let held_path = format!("status/{held_id}");
    let hp = held_path.as_str();
    eventually(
        "the held job to start",
        Duration::from_secs(5),
        &logs,
        move || async move {
            let v = c.call(false, hp, None).await;
            (v["status"] == "IN_PROGRESS").then_some(())
        },
    )
    .await;
    let v = client.call(true, &format!("cancel/{held_id}"), None).await;
    assert_eq!(v["status"], "CANCELLED");
    let logs_ref = &logs;
    eventually(
        "the worker to stop the job",
        Duration::from_secs(5),
        &logs,
        move || async move { logs_ref().contains("Job stopped.").then_some(()) },
    )
    .await;
    let (a, b) = tokio::join!(
        client.call(true, "runsync", Some(json!({"input": {"n": 1}}))),
        client.call(true, "runsync", Some(json!({"input": {"n": 2}})))
    );
    assert_eq!(
        (&a["status"], &b["status"]),
        (&json!("COMPLETED"), &json!("COMPLETED"))
    );
    assert_eq!(client.call(false, hp, None).await["status"], "CANCELLED");
    let health = client.call(false, "health", None).await;
    assert_eq!(health["jobs"]["failed"], 1);
    assert_eq!(health["workers"]["idle"], 2, "{health}");
    drop(workers);
    emulator.shutdown().await;
}

/// (b) A Python SDK generator worker: chunks through job-stream, the aggregate as output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_streaming_worker_against_the_emulator() {
    let python = python_or_skip!();
    let emulator = emulator().await;
    let worker = python_worker(&python, &emulator, "py-stream", "stream");
    let logs = || worker.log();
    let client = Client::new(&emulator);
    let c = &client;
    let job = client
        .call(
            true,
            "run",
            Some(json!({"input": {"chunks": ["a", {"b": 2}, "c"]}})),
        )
        .await;
    let stream_path = format!("stream/{}", job["id"].as_str().unwrap());
    let sp = stream_path.as_str();
    let chunks = std::sync::Mutex::new(Vec::new());
    let cs = &chunks;
    // Each poll returns only new chunks; the end is `stream: []` with a final status.
    let final_status = eventually(
        "the stream to end",
        Duration::from_secs(30),
        &logs,
        move || async move {
            let v = c.call(false, sp, None).await;
            let fresh = v["stream"].as_array().unwrap().clone();
            let end = fresh.is_empty() && v["status"] != "IN_QUEUE" && v["status"] != "IN_PROGRESS";
            cs.lock()
                .unwrap()
                .extend(fresh.into_iter().map(|c| c["output"].clone()));
            end.then(|| v["status"].clone())
        },
    )
    .await;
    assert_eq!(final_status, "COMPLETED", "{}", logs());
    assert_eq!(
        chunks.into_inner().unwrap(),
        [json!("a"), json!({"b": 2}), json!("c")]
    );
    let status = client
        .call(
            false,
            &format!("status/{}", job["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status["output"], json!(["a", {"b": 2}, "c"]));
    drop(worker);
    emulator.shutdown().await;
}
