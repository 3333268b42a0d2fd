//! Soak: 100,000 trivial jobs through the echo example against the emulator; the worker's
//! resident memory after warm-up must grow by less than 10 %. Not part of CI (ignored); run
//! with `scripts/soak.sh` and record the figures in BENCHMARKS.md.
//!
//! `SOAK_JOBS` sets the number of jobs (default 100,000).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Platform, WorkerProcess, example};

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
    let mut progress = (0, Instant::now());
    while next <= jobs {
        let done = platform.handle.stats().completed;
        if done > progress.0 {
            progress = (done, Instant::now());
        }
        assert!(
            progress.1.elapsed() < Duration::from_secs(60),
            "the worker stalled at {done}"
        );
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
