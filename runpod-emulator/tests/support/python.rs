//! Shared by the tests that run the official Python SDK (runpod 1.12.0) against the emulator:
//! this crate's `tests/python.rs` (the SDK's workers) and the root package's
//! `tests/python_client.rs` (the SDK's client against our examples), through `#[path]`.
//!
//! The SDK is installed once into a venv under Cargo's test temp dir (`python3 -m venv`,
//! `pip install runpod==1.12.0`; about 30 s the first time). The tests skip with a message when
//! python3 is missing, when the install fails (no network), or when
//! `RUNPOD_SKIP_PYTHON_TESTS=1` is set; under CI a failed setup fails them instead.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runpod_emulator::{Emulator, EmulatorHandle};
use serde_json::Value;

pub const RUNPOD_VERSION: &str = "1.12.0";

#[path = "venv.rs"]
mod venv;

/// The venv's python, or why the tests are skipped.
pub fn python() -> Result<PathBuf, String> {
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
        match $crate::python::python() {
            Ok(python) => python,
            Err(why) => {
                eprintln!("skipping the Python SDK test: {why}");
                return;
            }
        }
    };
}

/// A fresh HOME, so a developer's `~/.runpod/config.toml` cannot override the test key.
pub fn scratch_home(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("home-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn emulator() -> EmulatorHandle {
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
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn log(&self) -> String {
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

/// Client requests with the Bearer key.
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
}

impl Client {
    pub fn new(emulator: &EmulatorHandle) -> Client {
        Client {
            http: reqwest::Client::new(),
            endpoint: emulator.endpoint_url(),
        }
    }

    pub async fn call(&self, post: bool, path: &str, body: Option<Value>) -> Value {
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
pub async fn eventually<T, Fut>(
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
