//! `cargo run --release -p worker-bench`: this crate's worker side by side with the official
//! Python SDK (runpod 1.12.0) and crates.io `runpod-sdk` 0.8.0, against the same in-process
//! emulator, in the same run; plus the ceiling (a bare take-then-done client). Writes the
//! table into BENCHMARKS.md between the `bench:begin`/`bench:end` markers.
//!
//! Every worker is a separate process with equivalent echo handlers. Per process: a fresh
//! emulator with an [`Observer`] timestamping job-take requests, jobs handed out and final
//! results; cold start (spawn → first job-take), warm-up, idle RSS, then the runs of its
//! concurrency (sequential latency at 1, a burst of trivial jobs, a burst of 100 ms jobs at 8
//! and 64), then peak RSS (VmHWM). RSS is summed over the worker's process group (the Python
//! SDK forks its heartbeat).
//!
//! Options: `--runs N` (default 3; medians are quoted), `--quick` (1 run, shorter bursts),
//! `--skip-python`, `--skip-runpod-sdk`, `--only ceiling,ours,ours-current_thread,ours-logs-off,runpod-sdk,python-sync,python-async`,
//! `--no-write` (print only).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runpod_emulator::{Emulator, EmulatorHandle, Observer};
use serde_json::json;
use tokio::sync::Notify;

const RUNPOD_PY: &str = "1.12.0";
const RUNPOD_SDK: &str = "0.8.0";
/// How long the emulator holds an empty job-take (the real platform's hold is not documented;
/// short, so that a prefetching worker's held-back result shows without stalling the run).
const TAKE_TIMEOUT: Duration = Duration::from_secs(1);
const SLEEP_MS: u64 = 100;

/* ---------------- platform-side timestamps ---------------- */

#[derive(Debug, Default)]
struct Events {
    first_take: Option<Instant>,
    handed: HashMap<String, Instant>,
    finished: HashMap<String, Instant>,
}

#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Events>,
    finished: Notify,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for Recorder {
    fn take_requested(&self, _worker_id: &str) {
        let now = Instant::now();
        self.lock().first_take.get_or_insert(now);
    }
    fn job_handed(&self, job_id: &str) {
        let now = Instant::now();
        self.lock().handed.insert(job_id.to_owned(), now);
    }
    fn job_finished(&self, job_id: &str) {
        let now = Instant::now();
        self.lock().finished.insert(job_id.to_owned(), now);
        self.finished.notify_waiters();
    }
}

/* ---------------- the workers ---------------- */

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ceiling,
    Ours,
    /// Our worker on the single-threaded runtime (`flavor = "current_thread"`).
    OursCurrentThread,
    OursQuiet,
    RunpodSdk,
    PySync,
    PyAsync,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ceiling => "ceiling",
            Kind::Ours => "ours",
            Kind::OursCurrentThread => "ours, current_thread",
            Kind::OursQuiet => "ours, logs off",
            Kind::RunpodSdk => "runpod-sdk",
            Kind::PySync => "Python sync",
            Kind::PyAsync => "Python async",
        }
    }
    /// The name in `--only` and log file names: `ours-logs-off`, `python-sync`, …
    fn slug(self) -> String {
        self.name()
            .to_lowercase()
            .replace(", ", "-")
            .replace(' ', "-")
    }
    fn python(self) -> bool {
        matches!(self, Kind::PySync | Kind::PyAsync)
    }
    fn concurrencies(self) -> &'static [usize] {
        match self {
            Kind::OursQuiet => &[1, 8],
            _ => &[1, 8, 64],
        }
    }
}

#[derive(Debug)]
struct Paths {
    root: PathBuf,
    bench: PathBuf,
    release: PathBuf,
    runpod_sdk: Result<PathBuf, String>,
    python: Result<PathBuf, String>,
}

/// A worker process (group), killed when dropped.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(kind: Kind, c: usize, paths: &Paths, emulator: &EmulatorHandle) -> Process {
    let mut cmd = match kind {
        Kind::Ceiling => Command::new(paths.release.join("bench-ceiling")),
        Kind::Ours | Kind::OursQuiet | Kind::OursCurrentThread => {
            Command::new(paths.release.join("bench-echo"))
        }
        Kind::RunpodSdk => Command::new(paths.runpod_sdk.as_ref().expect("built")),
        Kind::PySync | Kind::PyAsync => {
            let mut cmd = Command::new(paths.python.as_ref().expect("installed"));
            cmd.arg(paths.root.join("worker-bench/peers/python_echo.py"));
            cmd
        }
    };
    let log_dir = paths.bench.join("logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let log = log_dir.join(format!("{}-c{c}.log", kind.slug()));
    let file = std::fs::File::create(&log).expect("a log file");
    let home = paths.bench.join("home");
    let _ = std::fs::create_dir_all(&home);
    cmd.envs(emulator.worker_env("bench"))
        .env("BENCH_CONCURRENCY", c.to_string())
        .env(
            "BENCH_RUNTIME",
            if kind == Kind::OursCurrentThread {
                "current_thread"
            } else {
                "multi_thread"
            },
        )
        .env("RUNPOD_WORKER_CONCURRENCY", c.to_string())
        .env(
            "BENCH_MODE",
            if kind == Kind::PySync {
                "sync"
            } else {
                "async"
            },
        )
        .env(
            "RUNPOD_LOG_LEVEL",
            if kind == Kind::OursQuiet {
                "NOTSET"
            } else {
                "INFO"
            },
        )
        .env("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
        .env("RUNPOD_SKIP_GPU_CHECK", "true")
        .env("HOME", home)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    Process {
        child: cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", kind.name())),
    }
}

/// The processes of group `pgid`: each pid with the fields of its `/proc/<pid>/stat` after the
/// command name (state, ppid, pgrp, …).
fn group_processes(pgid: u32) -> Vec<(u32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            (fields.get(2)?.parse::<u32>().ok()? == pgid).then_some((pid, fields))
        })
        .collect()
}

/// CPU time (user + system) used so far by the processes of group `pgid`, in seconds.
fn cpu_seconds(pgid: u32) -> f64 {
    // utime and stime, in clock ticks (100 per second on Linux).
    const TICKS_PER_SECOND: f64 = 100.0;
    let ticks: u64 = group_processes(pgid)
        .iter()
        .flat_map(|(_, fields)| fields.get(11..13).unwrap_or_default())
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// (VmRSS, VmHWM) in MB, summed over the process group `pgid`.
fn rss(pgid: u32) -> (f64, f64) {
    let (mut rss, mut hwm) = (0u64, 0u64);
    for (pid, _) in group_processes(pgid) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for line in status.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                rss += kb(line);
            } else if line.starts_with("VmHWM:") {
                hwm += kb(line);
            }
        }
    }
    (rss as f64 / 1024.0, hwm as f64 / 1024.0)
}

/* ---------------- one process's measurements ---------------- */

type Samples = BTreeMap<(Kind, &'static str), Vec<f64>>;

#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Trivial jobs per burst, and the longest a burst may run.
    burst: usize,
    burst_time: Duration,
    /// Sequential latency jobs, and the longest that may run.
    sequential: usize,
    sequential_time: Duration,
    /// 100 ms jobs per slot, and the longest that may run.
    sleep_rounds: usize,
    sleep_time: Duration,
}

fn budget(kind: Kind, c: usize, quick: bool) -> Budget {
    if kind.python() {
        // About one job per slot per second (it sleeps 1 s whenever its slots are full).
        Budget {
            burst: if c == 1 { 6 } else { 4 * c },
            burst_time: Duration::from_secs(if quick { 4 } else { 7 }),
            sequential: 10,
            sequential_time: Duration::from_secs(4),
            sleep_rounds: 4,
            sleep_time: Duration::from_secs(if quick { 4 } else { 6 }),
        }
    } else {
        Budget {
            burst: if quick { 10_000 } else { 30_000 },
            burst_time: Duration::from_secs(if quick { 2 } else { 3 }),
            sequential: if quick { 300 } else { 1000 },
            sequential_time: Duration::from_secs(3),
            sleep_rounds: 12,
            sleep_time: Duration::from_secs(4),
        }
    }
}

struct Run<'a> {
    emulator: EmulatorHandle,
    recorder: Arc<Recorder>,
    samples: &'a mut Samples,
    kind: Kind,
}

impl Run<'_> {
    fn record(&mut self, metric: &'static str, value: f64) {
        self.samples
            .entry((self.kind, metric))
            .or_default()
            .push(value);
    }

    fn submit(&self, n: usize, input: impl Fn(usize) -> serde_json::Value) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.emulator
                    .submit(json!({ "input": input(i) }))
                    .expect("submit")
            })
            .collect()
    }

    /// Final results received so far (all jobs of this emulator).
    fn finished_count(&self) -> usize {
        self.recorder.lock().finished.len()
    }

    /// Wait until `n` more final results than `base` arrived, or `deadline`. Returns how many
    /// did. O(1) per wake-up: the recorder wakes it on every result.
    async fn wait(&self, base: usize, n: usize, deadline: Instant) -> usize {
        loop {
            let notified = self.recorder.finished.notified();
            let done = self.finished_count().saturating_sub(base);
            if done >= n || Instant::now() >= deadline {
                return done;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }

    /// Drop what is still queued and let running jobs finish (bounded).
    async fn drain(&self, ids: &[String]) {
        let http = reqwest::Client::new();
        let _ = http
            .post(format!("{}/purge-queue", self.emulator.endpoint_url()))
            .send()
            .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let busy = {
                let e = self.recorder.lock();
                ids.iter()
                    .any(|id| e.handed.contains_key(id) && !e.finished.contains_key(id))
            };
            if !busy || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Jobs per second of a burst: from the first hand-out to the final result of job N − c
    /// (the last `c` are the burst's tail, reported apart), or of the last job done when the
    /// time budget cut the burst short.
    fn rate(&self, ids: &[String], c: usize, all_done: bool) -> Option<f64> {
        let e = self.recorder.lock();
        let first = ids.iter().filter_map(|id| e.handed.get(id)).min()?;
        let mut finals: Vec<Instant> = ids
            .iter()
            .filter_map(|id| e.finished.get(id))
            .copied()
            .collect();
        finals.sort();
        let k = if all_done {
            ids.len().saturating_sub(c).max(1)
        } else {
            finals.len()
        };
        let end = *finals.get(k.checked_sub(1)?)?;
        let secs = end.duration_since(*first).as_secs_f64();
        (secs > 0.0).then(|| k as f64 / secs)
    }

    async fn burst(&mut self, c: usize, b: Budget, sleep: bool) -> Option<f64> {
        let n = if sleep { b.sleep_rounds * c } else { b.burst };
        let limit = if sleep { b.sleep_time } else { b.burst_time };
        let started = Instant::now();
        let base = self.finished_count();
        let ids = self.submit(n, |i| {
            if sleep {
                json!({ "n": i, "sleep_ms": SLEEP_MS })
            } else {
                json!({ "n": i })
            }
        });
        let done = self.wait(base, ids.len(), started + limit).await;
        let rate = self.rate(&ids, c, done >= ids.len());
        self.drain(&ids).await;
        rate
    }

    /// A short burst (queued at once): is its last job's result held back, e.g. by a
    /// prefetching long-poll? Handed-out → final result of the last job.
    async fn tail(&mut self, n: usize) {
        let base = self.finished_count();
        let ids = self.submit(n, |i| json!({ "tail": i }));
        let done = self
            .wait(base, n, Instant::now() + Duration::from_secs(10))
            .await;
        if done >= n {
            let e = self.recorder.lock();
            let last = ids.last().expect("a job");
            if let (Some(h), Some(f)) = (e.handed.get(last), e.finished.get(last)) {
                let tail = f.duration_since(*h).as_secs_f64() * 1e3;
                drop(e);
                self.record("tail_ms", tail);
            }
        }
        self.drain(&ids).await;
    }

    /// One job at a time: handed-out → final result, per job.
    async fn sequential(&mut self, b: Budget) {
        let deadline = Instant::now() + b.sequential_time;
        let mut overheads = Vec::new();
        for i in 0..b.sequential {
            let base = self.finished_count();
            let id = self
                .emulator
                .submit(json!({"input": {"n": i}}))
                .expect("submit");
            let ids = [id];
            if self.wait(base, 1, deadline + TAKE_TIMEOUT * 2).await == 0 {
                break;
            }
            let e = self.recorder.lock();
            if let (Some(h), Some(f)) = (e.handed.get(&ids[0]), e.finished.get(&ids[0])) {
                overheads.push(f.duration_since(*h).as_secs_f64() * 1e3);
            }
            drop(e);
            if Instant::now() >= deadline {
                break;
            }
        }
        if overheads.is_empty() {
            return;
        }
        overheads.sort_by(f64::total_cmp);
        let at = |q: f64| overheads[((overheads.len() - 1) as f64 * q).round() as usize];
        let (p50, p99) = (at(0.5), at(0.99));
        self.record("ovh_p50_ms", p50);
        self.record("ovh_p99_ms", p99);
        self.record("ovh_n", overheads.len() as f64);
    }
}

/// Start `kind` with `c` slots on a fresh emulator and measure it. Returns its peak RSS.
async fn measure(kind: Kind, c: usize, paths: &Paths, quick: bool, samples: &mut Samples) -> f64 {
    let recorder = Arc::new(Recorder::default());
    let emulator = Emulator::builder()
        .bind("127.0.0.1:0")
        .take_timeout(TAKE_TIMEOUT)
        .ping_interval(Duration::from_secs(10))
        .worker_timeout(Duration::from_secs(60))
        .observer(recorder.clone())
        .build()
        .await
        .expect("the emulator starts");
    let spawned = Instant::now();
    let process = spawn(kind, c, paths, &emulator);
    let pgid = process.child.id();
    let mut run = Run {
        emulator,
        recorder,
        samples,
        kind,
    };
    let first_take = loop {
        if let Some(at) = run.recorder.lock().first_take {
            break Some(at);
        }
        if spawned.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let Some(first_take) = first_take else {
        eprintln!("{} (c={c}) never asked for a job", kind.name());
        return 0.0;
    };
    run.record(
        "cold_ms",
        first_take.duration_since(spawned).as_secs_f64() * 1e3,
    );

    let b = budget(kind, c, quick);
    // Warm-up: a few jobs through every slot.
    let base = run.finished_count();
    let warm = run.submit(2 * c, |i| json!({ "warm": i }));
    run.wait(base, warm.len(), Instant::now() + Duration::from_secs(10))
        .await;
    run.drain(&warm).await;
    if c == 1 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.record("idle_rss_mb", rss(pgid).0);
        run.sequential(b).await;
        run.tail(if kind.python() { 3 } else { 200 }).await;
    }
    let (tput_metric, cpu_metric) = burst_metrics(c);
    let (cpu_before, done_before) = (cpu_seconds(pgid), run.finished_count());
    if let Some(rate) = run.burst(c, b, false).await {
        run.record(tput_metric, rate);
    }
    // The burst's CPU per job: less noisy than throughput on a shared machine, since time the
    // worker spends waiting for a core is not in it.
    let jobs = run.finished_count() - done_before;
    if jobs >= 100 {
        let us = (cpu_seconds(pgid) - cpu_before) * 1e6 / jobs as f64;
        run.record(cpu_metric, us);
    }
    if c > 1
        && kind != Kind::OursQuiet
        && let Some(rate) = run.burst(c, b, true).await
    {
        run.record(if c == 8 { "sleep_c8" } else { "sleep_c64" }, rate);
    }
    let peak = rss(pgid).1;
    drop(process);
    run.emulator.shutdown().await;
    peak
}

/// The metrics of a trivial burst at concurrency `c`: (throughput, CPU per job).
fn burst_metrics(c: usize) -> (&'static str, &'static str) {
    match c {
        1 => ("tput_c1", "cpu_c1"),
        8 => ("tput_c8", "cpu_c8"),
        _ => ("tput_c64", "cpu_c64"),
    }
}

/* ---------------- building the peers ---------------- */

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} could not start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        Err(format!(
            "{what} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}

/// Write `contents` to `path` unless it already holds them (keeps Cargo's mtimes).
fn write_if_changed(path: &Path, contents: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == contents) {
        return Ok(());
    }
    std::fs::write(path, contents)
}

fn build_runpod_sdk(bench: &Path) -> Result<PathBuf, String> {
    let dir = bench.join("runpod-sdk-echo");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    write_if_changed(
        &dir.join("Cargo.toml"),
        include_str!("../peers/runpod_sdk_echo.toml"),
    )
    .map_err(|e| e.to_string())?;
    write_if_changed(
        &dir.join("main.rs"),
        include_str!("../peers/runpod_sdk_echo.rs"),
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "building the runpod-sdk {RUNPOD_SDK} echo worker in {}",
        dir.display()
    );
    run_ok(
        cargo()
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS"),
        "cargo build (runpod-sdk echo)",
    )?;
    Ok(dir.join("target/release/runpod-sdk-echo"))
}

fn setup_python(bench: &Path) -> Result<PathBuf, String> {
    let venv = bench.join(format!("venv-runpod-{RUNPOD_PY}"));
    let python = venv.join("bin/python");
    if venv.join(".installed").exists() {
        return Ok(python);
    }
    eprintln!("installing runpod=={RUNPOD_PY} into {}", venv.display());
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run_ok(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("runpod=={RUNPOD_PY}"),
        ]),
        "pip install runpod",
    )?;
    std::fs::write(venv.join(".installed"), RUNPOD_PY).map_err(|e| e.to_string())?;
    Ok(python)
}

/// A binary's size after `strip` (of a copy), in MB.
fn stripped_mb(binary: &Path, bench: &Path) -> Option<f64> {
    let copy = bench.join("stripped");
    std::fs::copy(binary, &copy).ok()?;
    let _ = Command::new("strip").arg(&copy).status();
    let size = std::fs::metadata(&copy).ok()?.len();
    Some(size as f64 / 1e6)
}

fn dir_mb(dir: &Path) -> Option<f64> {
    let out = Command::new("du").arg("-sb").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(bytes / 1e6)
}

/* ---------------- the report ---------------- */

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mem = shell("free -g | awk '/Mem:/ {print $2}'");
    format!(
        "{} cores (`nproc`), {}, {} GB RAM, Linux {}, {}",
        shell("nproc"),
        cpu.trim(),
        mem,
        shell("uname -r"),
        shell("rustc -V")
    )
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

struct Report {
    medians: BTreeMap<(Kind, &'static str), f64>,
    runs: usize,
    kinds: Vec<Kind>,
    sizes: BTreeMap<Kind, f64>,
    missing: Vec<(Kind, String)>,
}

impl Report {
    fn get(&self, kind: Kind, metric: &str) -> Option<f64> {
        self.medians
            .iter()
            .find(|((k, m), _)| *k == kind && *m == metric)
            .map(|(_, v)| *v)
    }

    fn table(&self) -> String {
        let rows: &[(&str, &str, bool)] = &[
            ("cold start: spawn → first job-take (ms)", "cold_ms", false),
            (
                "throughput, trivial echo, concurrency 1 (jobs/s)",
                "tput_c1",
                true,
            ),
            (
                "throughput, trivial echo, concurrency 8 (jobs/s)",
                "tput_c8",
                true,
            ),
            (
                "throughput, trivial echo, concurrency 64 (jobs/s)",
                "tput_c64",
                true,
            ),
            (
                "throughput, 100 ms handler, concurrency 8 (jobs/s; ideal 80)",
                "sleep_c8",
                true,
            ),
            (
                "throughput, 100 ms handler, concurrency 64 (jobs/s; ideal 640)",
                "sleep_c64",
                true,
            ),
            (
                "per-job overhead p50, handed-out → final result, concurrency 1 (ms)",
                "ovh_p50_ms",
                false,
            ),
            ("per-job overhead p99 (ms)", "ovh_p99_ms", false),
            (
                "last job of a burst, handed-out → final result, concurrency 1 (ms)",
                "tail_ms",
                false,
            ),
            (
                "CPU per job, trivial echo, concurrency 1 (µs, user + system)",
                "cpu_c1",
                false,
            ),
            (
                "CPU per job, trivial echo, concurrency 8 (µs)",
                "cpu_c8",
                false,
            ),
            ("RSS idle (MB)", "idle_rss_mb", false),
            ("RSS peak under load, VmHWM (MB)", "peak_rss_mb", false),
        ];
        let cols: Vec<Kind> = [
            Kind::Ceiling,
            Kind::Ours,
            Kind::OursCurrentThread,
            Kind::RunpodSdk,
            Kind::PySync,
            Kind::PyAsync,
        ]
        .into_iter()
        .filter(|k| self.kinds.contains(k))
        .collect();
        let mut t = String::new();
        let _ = write!(t, "| measurement |");
        for k in &cols {
            let _ = write!(t, " {} |", k.name());
        }
        let _ = writeln!(t, " ours ÷ runpod-sdk | ours ÷ best Python |");
        let _ = write!(t, "|---|");
        for _ in &cols {
            let _ = write!(t, "---:|");
        }
        let _ = writeln!(t, "---:|---:|");
        for (label, metric, higher_better) in rows {
            let _ = write!(t, "| {label} |");
            let ceiling = self.get(Kind::Ceiling, metric);
            for k in &cols {
                let cell = match self.get(*k, metric) {
                    None => "–".to_owned(),
                    Some(v) => {
                        let mut cell = fmt_num(v);
                        let ideal = match *metric {
                            "sleep_c8" => Some(8.0 * 1000.0 / SLEEP_MS as f64),
                            "sleep_c64" => Some(64.0 * 1000.0 / SLEEP_MS as f64),
                            _ => None,
                        };
                        if let Some(ideal) = ideal {
                            let _ = write!(cell, " ({:.0} % of ideal)", 100.0 * v / ideal);
                        } else if *higher_better
                            && *k != Kind::Ceiling
                            && let Some(c) = ceiling
                        {
                            let _ = write!(cell, " ({:.0} % of ceiling)", 100.0 * v / c);
                        }
                        cell
                    }
                };
                let _ = write!(t, " {cell} |");
            }
            let ours = self.get(Kind::Ours, metric);
            let ratio = |other: Option<f64>| match (ours, other) {
                (Some(o), Some(p)) if o > 0.0 && p > 0.0 => {
                    let r = if *higher_better { o / p } else { p / o };
                    format!("{} ×", fmt_num(r))
                }
                _ => "–".to_owned(),
            };
            let best_py = [Kind::PySync, Kind::PyAsync]
                .iter()
                .filter_map(|k| self.get(*k, metric))
                .reduce(|a, b| if *higher_better { a.max(b) } else { a.min(b) });
            let _ = writeln!(
                t,
                " {} | {} |",
                ratio(self.get(Kind::RunpodSdk, metric)),
                ratio(best_py)
            );
        }
        let _ = write!(t, "| release binary, stripped (MB) |");
        for k in &cols {
            let cell = self.sizes.get(k).map(|v| fmt_num(*v)).unwrap_or("–".into());
            let _ = write!(t, " {cell} |");
        }
        let size_ratio = |other: Option<&f64>| match (self.sizes.get(&Kind::Ours), other) {
            (Some(o), Some(p)) => format!("{} ×", fmt_num(p / o)),
            _ => "–".to_owned(),
        };
        let best_py = self.sizes.get(&Kind::PyAsync);
        let _ = writeln!(
            t,
            " {} | {} |",
            size_ratio(self.sizes.get(&Kind::RunpodSdk)),
            size_ratio(best_py)
        );
        t
    }

    fn logging(&self) -> String {
        let mut t = String::new();
        for (c, tput, cpu) in [(1, "tput_c1", "cpu_c1"), (8, "tput_c8", "cpu_c8")] {
            if let (Some(on), Some(off)) =
                (self.get(Kind::Ours, tput), self.get(Kind::OursQuiet, tput))
            {
                let _ = write!(
                    t,
                    "- concurrency {c}: {} jobs/s with two INFO lines per job to stdout (a file), {} jobs/s with logging off ({:+.0} %)",
                    fmt_num(on),
                    fmt_num(off),
                    100.0 * (on / off - 1.0)
                );
                if let (Some(on), Some(off)) =
                    (self.get(Kind::Ours, cpu), self.get(Kind::OursQuiet, cpu))
                {
                    let _ = write!(
                        t,
                        "; CPU per job {} µs with logging, {} µs without: logging costs {:.0} % of the CPU",
                        fmt_num(on),
                        fmt_num(off),
                        100.0 * (on / off - 1.0)
                    );
                }
                let _ = writeln!(t, ".");
            }
        }
        t
    }
}

/* ---------------- main ---------------- */

const BEGIN: &str = "<!-- bench:begin (written by `cargo run --release -p worker-bench`) -->";
const END: &str = "<!-- bench:end -->";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let quick = flag("--quick");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bench = target.join("bench");
    std::fs::create_dir_all(&bench).expect("target/bench");
    let _ = rustls_provider();

    eprintln!("building the workers (release)");
    if let Err(e) = run_ok(
        cargo().current_dir(&root).args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "worker-bench",
            "--bins",
        ]),
        "cargo build -p worker-bench",
    )
    .and_then(|()| {
        run_ok(
            cargo()
                .current_dir(&root)
                .args(["build", "--release", "--quiet", "--example", "echo"]),
            "cargo build --example echo",
        )
    }) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let release = target.join("release");
    let mut missing = Vec::new();
    let runpod_sdk = if flag("--skip-runpod-sdk") {
        Err("skipped (--skip-runpod-sdk)".to_owned())
    } else {
        build_runpod_sdk(&bench)
    };
    let python = if flag("--skip-python") {
        Err("skipped (--skip-python)".to_owned())
    } else {
        setup_python(&bench)
    };
    let mut kinds = vec![
        Kind::Ceiling,
        Kind::Ours,
        Kind::OursCurrentThread,
        Kind::OursQuiet,
    ];
    match &runpod_sdk {
        Ok(_) => kinds.push(Kind::RunpodSdk),
        Err(e) => missing.push((Kind::RunpodSdk, e.clone())),
    }
    match &python {
        Ok(_) => kinds.extend([Kind::PySync, Kind::PyAsync]),
        Err(e) => {
            missing.push((Kind::PySync, e.clone()));
            missing.push((Kind::PyAsync, e.clone()));
        }
    }
    // `--only ours,ceiling`: measure only these (by name, spaces and commas as `-`).
    if let Some(only) = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
    {
        let wanted: Vec<&str> = only.split(',').collect();
        kinds.retain(|k| wanted.contains(&k.slug().as_str()));
    }
    let paths = Paths {
        root: root.clone(),
        bench: bench.clone(),
        release: release.clone(),
        runpod_sdk,
        python,
    };

    let mut sizes = BTreeMap::new();
    if let Some(mb) = stripped_mb(&release.join("examples/echo"), &bench) {
        sizes.insert(Kind::Ours, mb);
        sizes.insert(Kind::OursCurrentThread, mb);
    }
    if let Some(mb) = stripped_mb(&release.join("bench-ceiling"), &bench) {
        sizes.insert(Kind::Ceiling, mb);
    }
    if let Ok(p) = &paths.runpod_sdk
        && let Some(mb) = stripped_mb(p, &bench)
    {
        sizes.insert(Kind::RunpodSdk, mb);
    }
    if let Ok(p) = &paths.python
        && let Some(venv) = p.parent().and_then(Path::parent)
        && let Some(mb) = dir_mb(venv)
    {
        sizes.insert(Kind::PySync, mb);
        sizes.insert(Kind::PyAsync, mb);
    }

    let load_before = shell("cut -d' ' -f1-3 /proc/loadavg");
    let started = Instant::now();
    let mut samples = Samples::new();
    for run in 0..runs {
        for &kind in &kinds {
            let mut peak: f64 = 0.0;
            for &c in kind.concurrencies() {
                eprint!("run {}/{runs}: {} at concurrency {c}", run + 1, kind.name());
                let this = measure(kind, c, &paths, quick, &mut samples).await;
                eprintln!(" (peak RSS {this:.1} MB)");
                peak = peak.max(this);
            }
            if kind != Kind::OursQuiet {
                samples.entry((kind, "peak_rss_mb")).or_default().push(peak);
            }
        }
    }
    let elapsed = started.elapsed();
    let medians = samples
        .iter()
        .filter_map(|(k, v)| median(v).map(|m| (*k, m)))
        .collect();
    let report = Report {
        medians,
        runs,
        kinds,
        sizes,
        missing,
    };

    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p worker-bench{}` (from a clean clone; it builds the \
         workers, the runpod-sdk {RUNPOD_SDK} echo under `target/bench/` and a venv with \
         runpod=={RUNPOD_PY}).",
        if quick {
            " -- --quick"
        } else if runs != 3 {
            " -- --runs N"
        } else {
            ""
        }
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Machine: {}.", machine());
    let _ = writeln!(
        out,
        "Load average before the run: {load_before}; the run took {:.0} s; medians of {} run(s).",
        elapsed.as_secs_f64(),
        report.runs
    );
    let _ = writeln!(out);
    out.push_str(&report.table());
    let _ = writeln!(out);
    let logging = report.logging();
    if !logging.is_empty() {
        let _ = writeln!(out, "Logging (ours):\n");
        out.push_str(&logging);
        let _ = writeln!(out);
    }
    for (kind, why) in &report.missing {
        let _ = writeln!(
            out,
            "- {} not measured: {}",
            kind.name(),
            why.replace('\n', " ")
        );
    }
    let _ = writeln!(out, "{END}");
    println!("{out}");

    if !flag("--no-write") {
        let path = root.join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if b < e => {
                format!("{}{}{}", &old[..b], out.trim_end(), &old[e + END.len()..])
            }
            _ => format!("{}\n\n{}\n", old.trim_end(), out.trim_end()),
        };
        std::fs::write(&path, new).expect("BENCHMARKS.md");
        eprintln!("wrote {}", path.display());
    }
}

/// reqwest (rustls without a default provider) needs one installed for the purge requests.
fn rustls_provider() -> Result<(), String> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| "a crypto provider was already installed".to_owned())
}
