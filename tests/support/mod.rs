//! Test support: the local RunPod emulator (recording every worker request) and worker
//! processes started against it.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use runpod_emulator::{Emulator, EmulatorBuilder, EmulatorHandle};
use serde_json::Value;

pub use runpod_emulator::RecordedRequest;

mod examples;
pub use examples::example;

pub const API_KEY: &str = "rp_test_key_5f3c9a";
/// The worker id the tests' workers run as.
pub const WORKER: &str = "w42";

/// The emulator with the tests' defaults: endpoint `ep`, the API key, a 2 s long-poll, and
/// every worker request recorded.
pub fn builder() -> EmulatorBuilder {
    Emulator::builder()
        .bind("127.0.0.1:0")
        .endpoint_id("ep")
        .api_key(Some(API_KEY.into()))
        .take_timeout(Duration::from_secs(2))
        .record_requests(true)
}

/// A running emulator and a client of its endpoint API.
pub struct Platform {
    pub handle: EmulatorHandle,
    http: reqwest::Client,
}

impl Platform {
    pub async fn start() -> Platform {
        Platform::start_with(builder()).await
    }

    pub async fn start_with(builder: EmulatorBuilder) -> Platform {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Platform {
            handle: builder.build().await.expect("the emulator starts"),
            http: reqwest::Client::new(),
        }
    }

    /// The environment that points a worker (`w42`, on host `host-7`) at this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.handle.worker_env(WORKER);
        env.push(("RUNPOD_POD_HOSTNAME".into(), "host-7".into()));
        env
    }

    /// The path of a worker route for `w42`, e.g. `path("job-take")` = `/v2/ep/job-take/w42`.
    pub fn path(&self, route: &str) -> String {
        format!("/v2/ep/{route}/{WORKER}")
    }

    async fn client(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request
            .header("Authorization", format!("Bearer {API_KEY}"))
            .send()
            .await
            .expect("the emulator answers");
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Submit a job through `/run` (a body like `{"input": …}`); returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let url = format!("{}/run", self.handle.endpoint_url());
        let request = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let queued = self.client(request).await;
        queued["id"].as_str().expect("an id").to_owned()
    }

    /// Cancel the job through `/cancel/{id}`; returns the answer.
    pub async fn cancel(&self, id: &str) -> Value {
        let url = format!("{}/cancel/{id}", self.handle.endpoint_url());
        self.client(self.http.post(url)).await
    }

    /// The job's `/status` body.
    pub async fn status(&self, id: &str) -> Value {
        let url = format!("{}/status/{id}", self.handle.endpoint_url());
        self.client(self.http.get(url)).await
    }

    /// Wait until a worker has taken the job (`IN_PROGRESS`), or panic after `timeout`.
    pub async fn running(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.status(id).await["status"] != "IN_PROGRESS" {
            assert!(
                Instant::now() < deadline,
                "job {id} was not taken within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until the job is final (COMPLETED, FAILED, …); returns its `/status` body.
    pub async fn finished(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(id).await;
            if !matches!(status["status"].as_str(), Some("IN_QUEUE" | "IN_PROGRESS")) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} not finished after {timeout:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.handle.worker_requests()
    }

    /// Wait until `pick` finds something in the requests so far (or panic after `timeout`).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&[RecordedRequest]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = pick(&self.requests()) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; requests so far:\n{:#?}",
                    summary(&self.requests())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The final job-done post for `job_id` that the emulator answered (no injected fault).
    pub async fn done(&self, job_id: &str) -> RecordedRequest {
        let path = format!("{}/{job_id}", self.path("job-done"));
        self.wait_for(
            Duration::from_secs(20),
            &format!("job-done for {job_id}"),
            |reqs| {
                reqs.iter()
                    .find(|r| r.path == path && r.fault.is_none() && r.is_final_done())
                    .cloned()
            },
        )
        .await
    }
}

/// The body of a recorded request as JSON (panics if it is not).
pub fn json(request: &RecordedRequest) -> Value {
    request
        .json()
        .unwrap_or_else(|| panic!("body is not JSON: {request:?}"))
}

fn summary(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            format!(
                "{} {}?{} {}{}",
                r.method,
                r.path,
                r.query,
                String::from_utf8_lossy(&r.body),
                r.fault
                    .as_deref()
                    .map(|f| format!(" (fault {f})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// A worker process; killed when dropped. Its stdout and stderr go to files.
pub struct WorkerProcess {
    child: Child,
    dir: PathBuf,
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

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in kB (Linux: `VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
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

/// Start `bin` as a load-balancing worker (`WORKER_MODE=load-balancing`) on a port the system
/// picks, with `extra` in its environment; returns it and its base URL once it listens.
pub async fn load_balancing_worker(bin: &Path, extra: &[(&str, &str)]) -> (WorkerProcess, String) {
    let mut env = vec![
        ("WORKER_MODE".to_owned(), "load-balancing".to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let process = WorkerProcess::spawn(bin, &env, &[]);
    let port = wait_until(Duration::from_secs(20), "the worker to listen", || {
        port_after(&process.stdout(), "listening on port ")
    })
    .await;
    (process, format!("http://127.0.0.1:{port}"))
}

/// The port number right after `text` in a worker's log.
pub fn port_after(log: &str, text: &str) -> Option<u16> {
    let (_, after) = log.split_once(text)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse::<u16>()
        .ok()
}

/// Poll `check` every 10 ms until it gives a value (panics after `timeout`).
pub async fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
