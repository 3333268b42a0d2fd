//! A fleet: several worker processes of one endpoint share the emulator's queue while workers
//! are killed mid-job (SIGKILL: spot reclaim, an OOM kill) and replaced, or stopped gracefully
//! (SIGTERM). The emulator re-queues a lost worker's jobs when it stops hearing from it, as
//! RunPod does. Accounting from the platform's side at the end: every job COMPLETED exactly
//! once with its own output, none lost, none completed twice.
//!
//! The short versions run in the test command; the long one (5,000 jobs, a kill every second,
//! 10 % faults on every route) is `cargo test --release --test fleet -- --ignored --nocapture`.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use runpod_emulator::Faults;
use serde_json::{Value, json};
use support::{Platform, WorkerProcess, fixture};

/// How workers leave the fleet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Kill,
    Term,
}

struct Fleet {
    jobs: usize,
    workers: usize,
    /// A worker leaves every `every`, and at least `min_stops` times: also when the jobs
    /// done pass each of `min_stops` evenly spaced marks, so a fast run still has its kills.
    every: Duration,
    min_stops: usize,
    stop: Stop,
    faults: Option<Faults>,
    seed: u64,
}

/// A small PRNG (xorshift), seeded: the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What the fleet did, for the report.
struct Outcome {
    stopped: usize,
    requeued: u64,
    per_worker: HashMap<String, usize>,
    took: Duration,
}

async fn run(fleet: Fleet) -> Outcome {
    let started = Instant::now();
    let platform = Platform::start_with(
        support::builder()
            .take_timeout(Duration::from_millis(500))
            .ping_interval(Duration::from_millis(200))
            .worker_timeout(Duration::from_millis(1200))
            // A job can be on a killed worker more than once.
            .max_requeues(20)
            .faults(fleet.faults.clone()),
    )
    .await;
    let mut rng = Rng(fleet.seed | 1);
    let mut next_id = 0;
    let mut spawn = |platform: &Platform| {
        next_id += 1;
        let id = format!("fleet-{next_id}");
        let mut env = platform.handle.worker_env(&id);
        env.push(("FIXTURE_CONCURRENCY".into(), "2".into()));
        // Short grace: a SIGTERM'd worker finishes its 0–50 ms jobs well within it.
        env.push(("WORKER_SHUTDOWN_GRACE_SECONDS".into(), "10".into()));
        WorkerProcess::spawn(&fixture(), &env, &[])
    };
    // The queue is full before the fleet starts.
    let mut ids = Vec::with_capacity(fleet.jobs);
    for i in 0..fleet.jobs {
        let ms = rng.next() % 51;
        ids.push(
            platform
                .submit(json!({"input": {"sleep": {"ms": ms, "value": i}}}))
                .await,
        );
    }
    let mut workers: Vec<WorkerProcess> = (0..fleet.workers).map(|_| spawn(&platform)).collect();
    let marks: Vec<usize> = (1..=fleet.min_stops)
        .map(|k| fleet.jobs * k / (fleet.min_stops + 1))
        .collect();

    // Every `every`, one worker at random leaves (mid-job: at concurrency 2 with a full queue
    // a worker is almost always running something) and a fresh one takes its place.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut stopped = 0;
    let mut leaving: Vec<WorkerProcess> = Vec::new();
    let mut last_stop = Instant::now();
    loop {
        let stats = platform.handle.stats();
        let done = (stats.completed + stats.failed) as usize;
        if done >= fleet.jobs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not finish: {stats:?}"
        );
        let due = last_stop.elapsed() >= fleet.every
            || marks.get(stopped).is_some_and(|mark| done >= *mark);
        if !due {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        last_stop = Instant::now();
        let victim = (rng.next() % workers.len() as u64) as usize;
        let worker = workers.swap_remove(victim);
        worker.signal(match fleet.stop {
            Stop::Kill => "KILL",
            Stop::Term => "TERM",
        });
        stopped += 1;
        leaving.push(worker);
        workers.push(spawn(&platform));
    }
    // A SIGTERM'd worker drains and exits by itself.
    for mut worker in leaving {
        let status = worker.exit(Duration::from_secs(20)).await;
        if fleet.stop == Stop::Term {
            assert!(status.success(), "a drained worker exits 0: {status}");
        }
    }

    // The platform's accounting.
    let stats = platform.handle.stats();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(stats.completed as usize, fleet.jobs, "{stats:?}");
    assert_eq!(stats.conflicting_finals, 0, "{stats:?}");
    for (i, id) in ids.iter().enumerate() {
        let status = platform.status(id).await;
        assert_eq!(status["status"], "COMPLETED", "{status}");
        assert_eq!(
            status["output"],
            json!(i),
            "job {id} got another job's output"
        );
    }
    // Final posts per job, and per worker, from the recorder.
    let mut finals: HashMap<String, Vec<String>> = HashMap::new();
    for r in platform.requests() {
        // Posts the emulator processed: unfaulted, or faulted only in their answer.
        let processed = r
            .fault
            .as_deref()
            .is_none_or(|f| matches!(f, "slow" | "reset-after" | "late"));
        if !r.path.contains("/job-done/") || !processed {
            continue;
        }
        let body: Value = support::json(&r);
        if body.get("status").and_then(Value::as_str) == Some("IN_PROGRESS") {
            continue;
        }
        let mut segments = r.path.rsplit('/');
        let job = segments.next().unwrap_or_default().to_owned();
        let worker = segments.next().unwrap_or_default().to_owned();
        finals.entry(job).or_default().push(worker);
    }
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let posts = finals.get(id).map(Vec::as_slice).unwrap_or_default();
        assert!(!posts.is_empty(), "job {id}: no final post");
        // A run that was killed never posted; a post retried after a lost answer comes from
        // the same worker (and counts once).
        assert!(
            posts.iter().all(|w| *w == posts[0]),
            "job {id} was finished by two workers: {posts:?}"
        );
        if fleet.faults.is_none() {
            assert_eq!(posts.len(), 1, "job {id}: {posts:?}");
        }
        *per_worker.entry(posts[0].clone()).or_default() += 1;
    }
    if fleet.stop == Stop::Term {
        assert_eq!(stats.requeued, 0, "a graceful drain re-runs no job");
    }
    Outcome {
        stopped,
        requeued: stats.requeued,
        per_worker,
        took: started.elapsed(),
    }
}

fn report(name: &str, jobs: usize, outcome: &Outcome) {
    let mut spread: Vec<_> = outcome.per_worker.iter().collect();
    spread.sort();
    eprintln!(
        "{name}: {jobs} jobs COMPLETED once each in {:.1} s; {} workers stopped, {} jobs \
         re-queued; jobs per worker: {spread:?}",
        outcome.took.as_secs_f64(),
        outcome.stopped,
        outcome.requeued
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_workers_killed_mid_job_completes_every_job_once() {
    let outcome = run(Fleet {
        jobs: 1500,
        workers: 4,
        every: Duration::from_millis(700),
        min_stops: 3,
        stop: Stop::Kill,
        faults: None,
        seed: 7,
    })
    .await;
    assert!(outcome.stopped >= 2, "the test killed workers");
    assert!(outcome.requeued >= 1, "a killed worker's job was re-queued");
    report("SIGKILL fleet", 1500, &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_drained_with_sigterm_re_runs_no_job() {
    let outcome = run(Fleet {
        jobs: 1000,
        workers: 4,
        every: Duration::from_millis(700),
        min_stops: 2,
        stop: Stop::Term,
        faults: None,
        seed: 11,
    })
    .await;
    assert!(outcome.stopped >= 1, "the test stopped workers");
    report("SIGTERM fleet", 1000, &outcome);
}

/// The long version: `cargo test --release --test fleet -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 5,000 jobs with kills every second and 10 % faults on every route"]
async fn five_thousand_jobs_with_kills_and_faults() {
    let outcome = run(Fleet {
        jobs: 5000,
        workers: 4,
        every: Duration::from_secs(1),
        min_stops: 4,
        stop: Stop::Kill,
        faults: Some(
            Faults::mixed(2026, 0.10)
                .slow_max(Duration::from_millis(50))
                .retry_after(Some(0)),
        ),
        seed: 2026,
    })
    .await;
    report("SIGKILL fleet with 10 % faults", 5000, &outcome);
}
