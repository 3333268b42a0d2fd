//! Soak: 100,000 trivial jobs through the echo example against the emulator; the worker's
//! resident memory after warm-up must grow by less than 10 %. And the release soak: a million
//! mixed jobs (echo, failing, panicking, progress, cancelled, streams) whose workers' memory
//! grows less than 5 % and whose file descriptors and threads stay bounded. Not part of CI
//! (ignored); run with `scripts/soak.sh` (`scripts/soak.sh mixed`) and record the figures in
//! BENCHMARKS.md.
//!
//! `SOAK_JOBS` sets the number of jobs (default 100,000; mixed: 1,000,000).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Platform, WorkerProcess, example};

/// Fails the soak when the count of finished jobs has not moved for a minute.
struct Watchdog {
    best: u64,
    since: Instant,
}

impl Watchdog {
    fn new() -> Watchdog {
        Watchdog {
            best: 0,
            since: Instant::now(),
        }
    }

    fn saw(&mut self, done: u64) {
        if done > self.best {
            (self.best, self.since) = (done, Instant::now());
        }
        assert!(
            self.since.elapsed() < Duration::from_secs(60),
            "the worker stalled at {done}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with scripts/soak.sh"]
async fn soak_memory_stays_flat() {
    let jobs: u64 = std::env::var("SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let warm_up = jobs / 10;
    let step = (jobs / 20).max(1);
    // No recording: the emulator keeps only the jobs.
    let platform = Arc::new(Platform::start_with(support::builder().record_requests(false)).await);
    let worker = WorkerProcess::spawn(&example("echo"), &platform.env(), &[]);
    let started = Instant::now();
    // Submit in the background, staying at most one step ahead of the worker.
    let submitter = tokio::spawn({
        let platform = platform.clone();
        async move {
            for n in 0..jobs {
                while n >= platform.handle.stats().completed + step {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                platform
                    .submit(json!({"input": {"n": n, "text": "soak"}}))
                    .await;
            }
        }
    });
    let mut baseline = None;
    let mut samples = Vec::new();
    let mut next = step;
    let mut watchdog = Watchdog::new();
    while next <= jobs {
        let done = platform.handle.stats().completed;
        watchdog.saw(done);
        if done < next {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let rss = worker.rss_kb().expect("the worker's RSS");
        eprintln!(
            "soak: {done:>7} jobs  {:>6.1} s  RSS {rss} kB",
            started.elapsed().as_secs_f64()
        );
        if done >= warm_up && baseline.is_none() {
            baseline = Some(rss);
        }
        samples.push((done, rss));
        next += step;
    }
    submitter.await.unwrap();
    let stats = platform.handle.stats();
    assert_eq!((stats.completed, stats.failed), (jobs, 0));
    let baseline = baseline.unwrap();
    let last = samples.last().unwrap().1;
    let peak = samples.iter().map(|s| s.1).max().unwrap();
    let growth = (last as f64 - baseline as f64) / baseline as f64 * 100.0;
    let elapsed = started.elapsed();
    eprintln!(
        "soak: {jobs} jobs in {:.1} s ({:.0} jobs/s); RSS after warm-up ({warm_up} jobs) {baseline} kB, \
         at the end {last} kB ({growth:+.1} %), peak {peak} kB",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    assert!(
        (last as f64) < baseline as f64 * 1.10,
        "RSS grew from {baseline} kB to {last} kB after warm-up"
    );
}

/// Open file descriptors and threads of a process (Linux `/proc`).
fn fds_and_threads(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    (fds, threads)
}

/// One worker's samples: (jobs done, RSS kB, fds, threads).
#[derive(Default)]
struct Samples(Vec<(u64, u64, usize, usize)>);

impl Samples {
    fn take(&mut self, name: &str, done: u64, worker: &WorkerProcess) {
        let rss = worker.rss_kb().expect("the worker's RSS");
        let (fds, threads) = fds_and_threads(worker.id());
        eprintln!("soak {name}: {done:>8} jobs  RSS {rss} kB  fds {fds}  threads {threads}");
        self.0.push((done, rss, fds, threads));
    }

    /// Check growth after the warm-up (the first tenth of the samples).
    fn check(&self, name: &str) {
        let warm = &self.0[self.0.len() / 10];
        let last = self.0.last().unwrap();
        let peak = self.0.iter().map(|s| s.1).max().unwrap();
        let growth = (last.1 as f64 - warm.1 as f64) / warm.1 as f64 * 100.0;
        let fd_range = (
            self.0.iter().map(|s| s.2).min().unwrap(),
            self.0.iter().map(|s| s.2).max().unwrap(),
        );
        let thread_range = (
            self.0.iter().map(|s| s.3).min().unwrap(),
            self.0.iter().map(|s| s.3).max().unwrap(),
        );
        eprintln!(
            "soak {name}: RSS after warm-up {} kB, at the end {} kB ({growth:+.1} %), peak {peak} kB; \
             fds {fd_range:?}, threads {thread_range:?}",
            warm.1, last.1
        );
        assert!(growth < 5.0, "{name}: RSS grew {growth:.1} % after warm-up");
        assert!(
            fd_range.1 <= fd_range.0 + 4,
            "{name}: file descriptors grew: {fd_range:?}"
        );
        // Blocking-pool threads come and go (idle ones exit after 10 s): bounded, not fixed.
        assert!(
            thread_range.1 <= thread_range.0 + 12,
            "{name}: threads grew: {thread_range:?}"
        );
    }
}

/// The release soak: `SOAK_JOBS` (default 1,000,000) mixed jobs at concurrency 8 on the
/// fixture worker (echo 75 %, failing 5 %, panicking 5 %, progress updates 5 %, cancelled while
/// running 5 %, logging then failing 5 %) and, beside it on a second emulator, one streaming job
/// for every 10 (the stream fixture, 5 items each). Run with `scripts/soak.sh mixed`
/// (`SOAK_KIND=panic` and so on: one kind of job only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with scripts/soak.sh mixed"]
async fn soak_mixed_jobs_stay_flat() {
    let jobs: u64 = std::env::var("SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let step = (jobs / 20).max(1);
    let platform = Arc::new(Platform::start_with(support::builder().record_requests(false)).await);
    let streams = Arc::new(Platform::start_with(support::builder().record_requests(false)).await);
    let mut env = platform.env();
    env.push(("FIXTURE_CONCURRENCY".into(), "8".into()));
    env.push(("WORKER_CANCEL_GRACE_MS".into(), "0".into()));
    // A heap profile of the worker: `SOAK_HEAPTRACK=/tmp/soak.raw` (Debian's heaptrack), then
    // `/usr/lib/heaptrack/libexec/heaptrack_interpret < /tmp/soak.raw | gzip > soak.gz` and
    // `heaptrack_print -f soak.gz`. The worker is stopped with SIGTERM so the profile is whole.
    if let Ok(out) = std::env::var("SOAK_HEAPTRACK") {
        env.push((
            "LD_PRELOAD".into(),
            "/usr/lib/heaptrack/libheaptrack_preload.so".into(),
        ));
        env.push(("DUMP_HEAPTRACK_OUTPUT".into(), out));
    }
    for name in ["RUNPOD_LOG_CAPTURE", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES"] {
        // Passed through for experiments on the growth (scripts/soak.sh sets the images'
        // GLIBC_TUNABLES unless it is set, to empty for glibc's defaults).
        if let Ok(value) = std::env::var(name) {
            env.push((name.into(), value));
        }
    }
    let mut worker = WorkerProcess::spawn(&support::fixture(), &env, &[]);
    let streamer = WorkerProcess::spawn(
        &std::path::PathBuf::from(env!("CARGO_BIN_EXE_stream-fixture")),
        &streams.env(),
        &[],
    );
    let stream_jobs = jobs / 10;
    // `SOAK_KIND` runs one kind of job only (fail, panic, progress, cancel, logged, echo), to
    // find which one a growth comes with.
    let forced = std::env::var("SOAK_KIND").ok().map(|k| {
        ["fail", "panic", "progress", "cancel", "logged", "echo"]
            .iter()
            .position(|name| *name == k)
            .unwrap_or_else(|| panic!("SOAK_KIND={k}: not a kind of job")) as u64
    });
    let kind_of = move |n: u64| forced.unwrap_or(n % 20);
    let started = Instant::now();
    let final_count = |p: &Platform| {
        let s = p.handle.stats();
        s.completed + s.failed
    };
    let cancelled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let submitter = tokio::spawn({
        let (platform, streams, cancelled) = (platform.clone(), streams.clone(), cancelled.clone());
        async move {
            for n in 0..jobs {
                while n >= final_count(&platform) + cancelled.lock().unwrap().len() as u64 + step {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let input = match kind_of(n) {
                    0 => json!({"fail": {"message": "soak failure"}}),
                    1 => json!({"panic": {"message": "soak panic"}}),
                    2 => json!({"progress": {"updates": 3, "value": n}}),
                    3 => json!({"sleep": {"ms": 20, "value": n}}),
                    4 => {
                        json!({"logged": {"lines": ["a line", "warn: another"], "then": {"fail": {"message": "x"}}}})
                    }
                    _ => json!({"echo": {"value": n}}),
                };
                let id = platform.submit(json!({ "input": input })).await;
                if kind_of(n) == 3 {
                    // Cancelled while it runs (or still queued).
                    platform.cancel(&id).await;
                    cancelled.lock().unwrap().push(id);
                }
                if n % 10 == 0 {
                    streams.submit(json!({"input": 5})).await;
                }
            }
        }
    });
    let (mut ours, mut theirs) = (Samples::default(), Samples::default());
    let mut next = step;
    let mut watchdog = Watchdog::new();
    while next <= jobs {
        let done = final_count(&platform) + cancelled.lock().unwrap().len() as u64;
        watchdog.saw(done);
        if done < next {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        ours.take("mixed", done, &worker);
        theirs.take("stream", final_count(&streams), &streamer);
        next += step;
    }
    submitter.await.unwrap();
    // Every job accounted for: completed, failed, or cancelled (a cancel is final at once; one
    // that came after the job finished leaves it COMPLETED).
    let cancelled = cancelled.lock().unwrap().clone();
    let mut cancelled_final = 0;
    for id in &cancelled {
        let status = platform.status(id).await;
        match status["status"].as_str() {
            Some("CANCELLED") => cancelled_final += 1,
            Some("COMPLETED") => {}
            other => panic!("cancelled job {id}: {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while final_count(&platform) + cancelled_final < jobs || final_count(&streams) < stream_jobs {
        assert!(
            Instant::now() < deadline,
            "jobs were lost: {:?}",
            platform.handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = platform.handle.stats();
    assert_eq!(
        stats.completed + stats.failed + cancelled_final,
        jobs,
        "every job is completed, failed or cancelled, once: {stats:?}, {cancelled_final} cancelled"
    );
    let failing = (0..jobs)
        .filter(|&n| matches!(kind_of(n), 0 | 1 | 4))
        .count() as u64;
    assert_eq!(stats.failed, failing);
    assert_eq!(streams.handle.stats().completed, stream_jobs);
    let elapsed = started.elapsed();
    eprintln!(
        "soak mixed: {jobs} jobs ({} failed, {cancelled_final} cancelled) and {stream_jobs} streams \
         in {:.1} s ({:.0} jobs/s)",
        stats.failed,
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    if std::env::var_os("SOAK_HEAPTRACK").is_some() {
        worker.signal("TERM");
        worker.exit(Duration::from_secs(60)).await;
    }
    ours.check("mixed");
    theirs.check("stream");
}
