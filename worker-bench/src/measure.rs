//! The measurements: per worker and concurrency, a fresh platform (the lean one, or the
//! emulator with `--platform emulator`) and process, then cold start, warm-up, idle RSS,
//! sequential latency, a burst's tail, trivial and 100 ms bursts (with each job's latency and
//! the most jobs held at once), CPU per job and peak RSS; and the platform's own CPU per
//! request. Everything is timed on the platform side (see [`Recorder`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runpod_emulator::{Emulator, EmulatorHandle};
use serde_json::{Value, json};

use crate::kind::Kind;
use crate::lean::Lean;
use crate::peers::Paths;
use crate::process::spawn;
use crate::recorder::Recorder;
use crate::sampling::{cpu_seconds, rss};

/// How long the platform holds an empty job-take (the real platform's hold is not documented;
/// short, so that a prefetching worker's held-back result shows without stalling the run).
const TAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// The "100 ms handler" of the sleep bursts.
pub(crate) const SLEEP_MS: u64 = 100;

/// Every value of every metric, per worker, over all runs (the report takes medians).
pub(crate) type Samples = BTreeMap<(Kind, &'static str), Vec<f64>>;

/// Which platform the workers take their jobs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlatformKind {
    /// [`crate::lean`]: the worker routes only, one thread; the default.
    Lean,
    /// The project's emulator, as users load-test against it.
    Emulator,
}

/// The platform under one worker process.
enum Platform {
    Lean(Lean),
    Emulator(EmulatorHandle),
}

impl Platform {
    async fn start(kind: PlatformKind, recorder: Arc<Recorder>) -> Platform {
        match kind {
            PlatformKind::Lean => Platform::Lean(Lean::start(recorder, TAKE_TIMEOUT)),
            PlatformKind::Emulator => Platform::Emulator(
                Emulator::builder()
                    .bind("127.0.0.1:0")
                    .take_timeout(TAKE_TIMEOUT)
                    .ping_interval(Duration::from_secs(10))
                    .worker_timeout(Duration::from_secs(60))
                    .observer(recorder)
                    .build()
                    .await
                    .expect("the emulator starts"),
            ),
        }
    }

    fn worker_env(&self) -> Vec<(String, String)> {
        match self {
            Platform::Lean(lean) => lean.worker_env("bench"),
            Platform::Emulator(emulator) => emulator.worker_env("bench"),
        }
    }

    fn submit(&self, input: &Value) -> String {
        match self {
            Platform::Lean(lean) => lean.submit(input),
            Platform::Emulator(emulator) => {
                emulator.submit(json!({ "input": input })).expect("submit")
            }
        }
    }

    async fn purge(&self) {
        match self {
            Platform::Lean(lean) => lean.purge(),
            Platform::Emulator(emulator) => {
                let _ = reqwest::Client::new()
                    .post(format!("{}/purge-queue", emulator.endpoint_url()))
                    .send()
                    .await;
            }
        }
    }

    /// The platform's CPU seconds so far: the lean platform's thread, or this whole process
    /// for the emulator (which is most of what it does while a burst runs).
    fn cpu_seconds(&self) -> f64 {
        match self {
            Platform::Lean(lean) => lean.cpu_seconds(),
            Platform::Emulator(_) => crate::sampling::process_cpu_seconds(),
        }
    }

    async fn shutdown(self) {
        match self {
            Platform::Lean(lean) => drop(lean),
            Platform::Emulator(emulator) => emulator.shutdown().await,
        }
    }
}

/// Measure every kind at each of its concurrencies, `runs` times over.
pub(crate) async fn all(
    kinds: &[Kind],
    runs: usize,
    paths: &Paths,
    quick: bool,
    platform: PlatformKind,
) -> Samples {
    let mut samples = Samples::new();
    for run in 0..runs {
        for &kind in kinds {
            let mut peak: f64 = 0.0;
            for &c in kind.concurrencies() {
                eprint!("run {}/{runs}: {} at concurrency {c}", run + 1, kind.name());
                let this = measure(kind, c, paths, quick, platform, &mut samples).await;
                // Each start, not only the median and the worst the report quotes.
                let cold = samples.get(&(kind, "cold_ms")).and_then(|v| v.last());
                match cold {
                    Some(ms) => eprintln!(" (cold start {ms:.2} ms, peak RSS {this:.1} MB)"),
                    None => eprintln!(" (peak RSS {this:.1} MB)"),
                }
                peak = peak.max(this);
            }
            if kind != Kind::OursQuiet {
                samples.entry((kind, "peak_rss_mb")).or_default().push(peak);
            }
        }
    }
    samples
}

/// How much of each scenario to run: bounded in jobs and in time, so that a slow worker (Python)
/// costs seconds, not minutes, and a fast one still runs long enough to be measured.
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

/// One worker process under test: its platform, the platform-side timestamps, and where its
/// samples go.
struct Run<'a> {
    platform: Platform,
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

    fn submit(&self, n: usize, input: impl Fn(usize) -> Value) -> Vec<String> {
        (0..n).map(|i| self.platform.submit(&input(i))).collect()
    }

    /// Final results received so far (all jobs of this platform).
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
        self.platform.purge().await;
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
        if !sleep {
            self.job_latencies(&ids, c);
        }
        self.drain(&ids).await;
        rate
    }

    /// Each finished job's handed-out → final result time in a trivial burst at concurrency
    /// `c`, as p50 and p99: what one job costs while every slot is busy.
    fn job_latencies(&mut self, ids: &[String], c: usize) {
        let e = self.recorder.lock();
        let mut ms: Vec<f64> = ids
            .iter()
            .filter_map(|id| Some(e.finished.get(id)?.duration_since(*e.handed.get(id)?)))
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        drop(e);
        if ms.len() < 100 {
            return;
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        let (p50, p99) = match c {
            1 => ("burst_p50_c1", "burst_p99_c1"),
            8 => ("burst_p50_c8", "burst_p99_c8"),
            _ => ("burst_p50_c64", "burst_p99_c64"),
        };
        self.record(p50, at(0.5));
        self.record(p99, at(0.99));
    }

    /// Requests the platform answered so far (for the emulator: job-takes and final results,
    /// which is all a trivial burst sends besides the odd ping).
    fn platform_requests(&self) -> u64 {
        match &self.platform {
            Platform::Lean(lean) => lean.requests(),
            Platform::Emulator(_) => {
                let e = self.recorder.lock();
                e.takes + e.finished.len() as u64
            }
        }
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
            let id = self.platform.submit(&json!({ "n": i }));
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

/// Start `kind` with `c` slots on a fresh platform and measure it. Returns its peak RSS.
async fn measure(
    kind: Kind,
    c: usize,
    paths: &Paths,
    quick: bool,
    platform: PlatformKind,
    samples: &mut Samples,
) -> f64 {
    let recorder = Arc::new(Recorder::default());
    let platform = Platform::start(platform, recorder.clone()).await;
    let process = spawn(kind, c, paths, platform.worker_env());
    let spawned = process.spawned;
    let pgid = process.pgid();
    let mut run = Run {
        platform,
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
    let (tput_metric, cpu_metric, platform_metric) = burst_metrics(c);
    let (cpu_before, done_before) = (cpu_seconds(pgid), run.finished_count());
    let (platform_cpu_before, requests_before) =
        (run.platform.cpu_seconds(), run.platform_requests());
    if let Some(rate) = run.burst(c, b, false).await {
        run.record(tput_metric, rate);
    }
    // The burst's CPU per job: less noisy than throughput on a shared machine, since time the
    // worker spends waiting for a core is not in it.
    let jobs = run.finished_count() - done_before;
    if jobs >= 100 {
        let us = (cpu_seconds(pgid) - cpu_before) * 1e6 / jobs as f64;
        run.record(cpu_metric, us);
        let requests = run.platform_requests() - requests_before;
        let platform_us =
            (run.platform.cpu_seconds() - platform_cpu_before) * 1e6 / requests.max(1) as f64;
        run.record(platform_metric, platform_us);
    }
    if c > 1
        && kind != Kind::OursQuiet
        && let Some(rate) = run.burst(c, b, true).await
    {
        run.record(if c == 8 { "sleep_c8" } else { "sleep_c64" }, rate);
    }
    let peak = rss(pgid).1;
    let held = run.recorder.lock().held_max as f64;
    run.record(
        match c {
            1 => "held_c1",
            8 => "held_c8",
            _ => "held_c64",
        },
        held,
    );
    drop(process);
    run.platform.shutdown().await;
    peak
}

/// The metrics of a trivial burst at concurrency `c`: (throughput, the worker's CPU per job,
/// the platform's CPU per request).
fn burst_metrics(c: usize) -> (&'static str, &'static str, &'static str) {
    match c {
        1 => ("tput_c1", "cpu_c1", "platform_cpu_c1"),
        8 => ("tput_c8", "cpu_c8", "platform_cpu_c8"),
        _ => ("tput_c64", "cpu_c64", "platform_cpu_c64"),
    }
}
