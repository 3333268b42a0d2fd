//! The real job loop against the emulator (the runpod-emulator crate, a dev-dependency), in
//! process: these run with and without the `serve-api` feature.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use runpod_emulator::{Emulator, EmulatorHandle};

use crate::config::PlatformConfig;
use crate::handler::handler_fn;
use crate::job::Job;
use crate::job_loop::{self, Concurrency, InFlight, LoopOptions};
use crate::limits::Limits;
use crate::shutdown;

async fn post(url: impl reqwest::IntoUrl, body: Value) -> Value {
    // A client per call: a shared one would outlive the test's runtime.
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn emulator() -> EmulatorHandle {
    Emulator::builder()
        .bind("127.0.0.1:0")
        .take_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_loop_runs_jobs_from_the_emulator() {
    let echo = handler_fn(|input: Value, job: Job| async move {
        if input == json!("fail") {
            return Err(std::io::Error::other(format!("failing {}", job.id())));
        }
        Ok(json!({ "echo": input }))
    });
    let h = Harness::start(echo, options(Concurrency::Fixed(2))).await;

    let done = post(format!("{}/runsync", h.base), json!({"input": {"x": 1}})).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["output"], json!({"echo": {"x": 1}}));
    assert_eq!(done["workerId"], "w-features");
    assert!(done["delayTime"].is_u64() && done["executionTime"].is_u64());

    let failed = post(format!("{}/runsync", h.base), json!({"input": "fail"})).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let report: Value = serde_json::from_str(failed["error"].as_str().unwrap()).unwrap();
    let message = report["error_message"].as_str().unwrap();
    assert!(message.starts_with("failing sync-"), "{message}");
    h.stop().await;
}

/* ---- the loop's features against the emulator: streaming, progress, cancel, refresh, concurrency ---- */

/// The loop running `handler` against a fresh emulator.
struct Harness {
    emulator: EmulatorHandle,
    base: String,
    trigger: shutdown::ShutdownTrigger,
    loop_task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start<H: crate::handler::Handler>(handler: H, options: LoopOptions) -> Harness {
        Harness::start_on(emulator().await, handler, options).await
    }

    async fn start_on<H: crate::handler::Handler>(
        emulator: EmulatorHandle,
        handler: H,
        options: LoopOptions,
    ) -> Harness {
        let cfg = PlatformConfig::from_env(&emulator.worker_env("w-features")).unwrap();
        let client = crate::platform_client::build(&cfg.api_key).unwrap();
        let (trigger, stop) = shutdown::channel();
        let loop_task = tokio::spawn(job_loop::run(
            handler,
            (cfg, client),
            Arc::new(InFlight::default()),
            options,
            Limits::default(),
            (trigger.clone(), stop),
            Default::default(),
        ));
        let base = emulator.endpoint_url();
        Harness {
            emulator,
            base,
            trigger,
            loop_task,
        }
    }

    async fn run(&self, input: Value) -> String {
        let queued = post(&format!("{}/run", self.base), json!({ "input": input })).await;
        queued["id"].as_str().unwrap().to_owned()
    }

    /// Submit `n` jobs at once (one after the other would pace them by the request time).
    async fn run_many(&self, n: usize, input: Value) -> Vec<String> {
        let submit: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(post(
                    format!("{}/run", self.base),
                    json!({ "input": input }),
                ))
            })
            .collect();
        let mut ids = Vec::new();
        for task in submit {
            ids.push(task.await.unwrap()["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    async fn get(&self, path: &str) -> Value {
        let response = reqwest::get(format!("{}/{path}", self.base)).await.unwrap();
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    async fn status(&self, id: &str) -> Value {
        self.get(&format!("status/{id}")).await
    }

    /// Poll `/status` until `done` holds (or panic after 10 s).
    async fn wait(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status(id).await;
            if done(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out; last status {status}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finished(&self, id: &str) -> Value {
        self.wait(id, |s| {
            ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
                .contains(&s["status"].as_str().unwrap_or(""))
        })
        .await
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), self.loop_task)
            .await
            .expect("the loop stops")
            .unwrap();
        self.emulator.shutdown().await;
    }
}

fn options(concurrency: Concurrency) -> LoopOptions {
    LoopOptions {
        concurrency,
        refresh_worker: false,
        aggregate_stream: false,
        exit_on_refresh: true,
    }
}

fn streamer() -> impl crate::handler::Handler {
    handler_fn(|n: u32, job: Job| async move {
        let stream = crate::StreamSender::new(&job);
        for i in 0..n {
            stream.send(json!({ "token": i })).await?;
        }
        Ok::<_, crate::StreamError>(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_reach_the_client_and_the_final_output_is_empty() {
    let h = Harness::start(streamer(), options(Concurrency::Fixed(1))).await;
    let id = h.run(json!(3)).await;
    let done = h.finished(&id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    // The emulator (like RunPod) shows a stream's chunks as its output when the final is `[]`.
    assert_eq!(
        done["output"],
        json!([{"token": 0}, {"token": 1}, {"token": 2}])
    );
    let stream = h.get(&format!("stream/{id}")).await;
    assert_eq!(
        stream["stream"],
        json!([{"output": {"token": 0}}, {"output": {"token": 1}}, {"output": {"token": 2}}])
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_mid_stream_fails_the_job_and_keeps_the_chunks_sent() {
    let failing = handler_fn(|n: u32, job: Job| async move {
        let stream = crate::StreamSender::new(&job);
        for i in 0..n {
            stream.send(i).await.map_err(|e| e.to_string())?;
        }
        Err::<(), _>(format!("ran out after {n}"))
    });
    let h = Harness::start(failing, options(Concurrency::Fixed(1))).await;
    let id = h.run(json!(2)).await;
    let done = h.finished(&id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let report: Value = serde_json::from_str(done["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_message"], "ran out after 2");
    let stream = h.get(&format!("stream/{id}")).await;
    assert_eq!(stream["stream"], json!([{"output": 0}, {"output": 1}]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_streams_post_every_item_as_the_final_output() {
    let mut opts = options(Concurrency::Fixed(1));
    opts.aggregate_stream = true;
    let h = Harness::start(streamer(), opts).await;
    let id = h.run(json!(2)).await;
    assert_eq!(
        h.finished(&id).await["output"],
        json!([{"token": 0}, {"token": 1}])
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_while_running_and_never_replaces_the_result() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let progressing = handler_fn(move |_: Value, job: Job| {
        let mut release = release_rx.clone();
        async move {
            job.progress(&json!({"step": 1}));
            let _ = release.wait_for(|go| *go).await;
            // A burst of updates right before returning: none may land after the result.
            for step in 2..200 {
                job.progress(&json!({ "step": step }));
            }
            Ok::<_, std::io::Error>(json!("final"))
        }
    });
    let h = Harness::start(progressing, options(Concurrency::Fixed(1))).await;
    let id = h.run(json!({})).await;
    let running = h.wait(&id, |s| s["output"] == json!({"step": 1})).await;
    assert_eq!(running["status"], "IN_PROGRESS");
    release_tx.send(true).unwrap();
    assert_eq!(h.finished(&id).await["output"], "final");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.status(&id).await["output"],
        "final",
        "a progress update arrived after the result"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_100ms_jobs_run_side_by_side() {
    // Each job records when it ran; with 8 slots, all 8 run at the same time.
    let spans = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = spans.clone();
    let sleeper = handler_fn(move |ms: u64, _job: Job| {
        let seen = seen.clone();
        async move {
            let start = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            seen.lock()
                .unwrap()
                .push((start, std::time::Instant::now()));
            Ok::<_, std::io::Error>(ms)
        }
    });
    let h = Harness::start(sleeper, options(Concurrency::Fixed(8))).await;
    let ids = h.run_many(8, json!(100)).await;
    for id in &ids {
        assert_eq!(h.finished(id).await["status"], "COMPLETED");
    }
    let spans = spans.lock().unwrap().clone();
    let last_start = spans.iter().map(|s| s.0).max().unwrap();
    let first_end = spans.iter().map(|s| s.1).min().unwrap();
    let first_start = spans.iter().map(|s| s.0).min().unwrap();
    let last_end = spans.iter().map(|s| s.1).max().unwrap();
    let rel: Vec<_> = spans
        .iter()
        .map(|s| (s.0 - first_start, s.1 - first_start))
        .collect();
    assert!(
        last_start < first_end,
        "the 8 jobs did not all run at once: {rel:?}"
    );
    assert!(
        last_end - first_start < Duration::from_millis(800),
        "{:?}",
        last_end - first_start
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_concurrency_raise_applies_while_jobs_run() {
    fn four(_: usize) -> usize {
        4
    }
    // Each job waits until all four run at once (or gives up after 20 s): with the raise to 4
    // they all finish; stuck at 1, the first would give up and report how many it saw.
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = running.clone();
    let gathering = handler_fn(move |_: Value, _job: Job| {
        let running = counter.clone();
        async move {
            use std::sync::atomic::Ordering;
            running.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while running.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, std::io::Error>(running.load(Ordering::SeqCst))
        }
    });
    let h = Harness::start(gathering, options(Concurrency::dynamic(four))).await;
    let ids = h.run_many(4, json!(null)).await;
    for id in &ids {
        let done = h.finished(id).await;
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(done["output"], 4, "jobs running at once: {done}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_of_two_running_jobs_stops_only_that_one() {
    let finished = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = finished.clone();
    let sleeper = handler_fn(move |ms: u64, job: Job| {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            seen.lock().unwrap().push(job.id().to_owned());
            Ok::<_, std::io::Error>(ms)
        }
    });
    let h = Harness::start(sleeper, options(Concurrency::Fixed(2))).await;
    let doomed = h.run(json!(1500)).await;
    let kept = h.run(json!(700)).await;
    h.wait(&doomed, |s| s["status"] == "IN_PROGRESS").await;
    h.wait(&kept, |s| s["status"] == "IN_PROGRESS").await;
    let cancelled = post(&format!("{}/cancel/{doomed}", h.base), json!({})).await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    assert_eq!(h.finished(&kept).await["status"], "COMPLETED");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(h.status(&doomed).await["status"], "CANCELLED");
    assert_eq!(
        *finished.lock().unwrap(),
        vec![kept],
        "the cancelled handler must not run to the end"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_request_posts_stop_pod_and_ends_the_loop() {
    let refresher = handler_fn(|input: Value, job: Job| async move {
        if input == json!("refresh") {
            job.refresh_worker();
        }
        Ok::<_, std::io::Error>(input)
    });
    let h = Harness::start(refresher, options(Concurrency::Fixed(1))).await;
    let plain = h.run(json!("plain")).await;
    assert_eq!(h.finished(&plain).await["output"], "plain");
    let refresh = h.run(json!("refresh")).await;
    assert_eq!(h.finished(&refresh).await["output"], "refresh");
    tokio::time::timeout(Duration::from_secs(5), h.loop_task)
        .await
        .expect("the loop ends after a refresh")
        .unwrap();
    h.emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_under_the_local_api_keeps_the_loop_serving() {
    let refresher = handler_fn(|input: Value, job: Job| async move {
        job.refresh_worker();
        Ok::<_, std::io::Error>(input)
    });
    let mut opts = options(Concurrency::Fixed(1));
    opts.exit_on_refresh = false;
    let h = Harness::start(refresher, opts).await;
    for n in 0..3 {
        let id = h.run(json!(n)).await;
        assert_eq!(
            h.finished(&id).await["output"],
            n,
            "job {n} after a refresh"
        );
    }
    assert!(!h.loop_task.is_finished());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_handler_gets_to_clean_up() {
    let cleaned = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = cleaned.clone();
    let careful = handler_fn(move |input: Value, job: Job| {
        let seen = seen.clone();
        async move {
            if input == json!("quick") {
                return Ok("quick");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
                () = job.cancelled() => {
                    // Clean-up that itself awaits, as releasing a remote resource does.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    seen.lock().unwrap().push(job.id().to_owned());
                }
            }
            Ok::<_, std::io::Error>("cleaned up")
        }
    });
    let h = Harness::start(careful, options(Concurrency::Fixed(1))).await;
    let id = h.run(json!({})).await;
    h.wait(&id, |s| s["status"] == "IN_PROGRESS").await;
    let cancelled = post(&format!("{}/cancel/{id}", h.base), json!({})).await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cleaned.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the clean-up branch never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*cleaned.lock().unwrap(), vec![id.clone()]);
    // Its outcome is not posted: the job stays cancelled, and the next job runs.
    let next = h.run(json!("quick")).await;
    assert_eq!(h.finished(&next).await["output"], "quick");
    assert_eq!(h.status(&id).await["status"], "CANCELLED");
    h.stop().await;
}

/// Counts, from the platform's side, the jobs handed out and not yet answered.
#[derive(Debug, Default)]
struct Outstanding {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl runpod_emulator::Observer for Outstanding {
    fn job_handed(&self, _: &str) {
        use std::sync::atomic::Ordering;
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }
    fn job_finished(&self, _: &str) {
        self.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_jobs_held_than_the_concurrency() {
    for concurrency in [1, 8, 64] {
        for failing_posts in [0, 2] {
            let outstanding = Arc::new(Outstanding::default());
            let emulator = Emulator::builder()
                .bind("127.0.0.1:0")
                .take_timeout(Duration::from_millis(500))
                .observer(outstanding.clone())
                .faults(
                    (failing_posts > 0)
                        .then(|| runpod_emulator::Faults::new(1).fail_done_times(failing_posts)),
                )
                .build()
                .await
                .unwrap();
            let echo =
                handler_fn(|input: Value, _job: Job| async move { Ok::<_, std::io::Error>(input) });
            let h =
                Harness::start_on(emulator, echo, options(Concurrency::Fixed(concurrency))).await;
            let ids = h.run_many(3 * concurrency + 5, json!(1)).await;
            for id in &ids {
                assert_eq!(h.finished(id).await["status"], "COMPLETED");
            }
            let most = outstanding.most.load(std::sync::atomic::Ordering::SeqCst);
            assert!(
                most <= concurrency,
                "{most} jobs held at concurrency {concurrency} (job-done failing {failing_posts} times first)"
            );
            h.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_blocking_job_keeps_its_slot_until_its_thread_returns() {
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = log.clone();
    struct Stubborn(Arc<std::sync::Mutex<Vec<String>>>);
    impl crate::handler::Handler for Stubborn {
        fn call(&self, job: Job) -> crate::handler::Invocation {
            let log = self.0.clone();
            crate::handler::Invocation::blocking(move || {
                let ms: u64 = serde_json::from_value(job.input().clone()).unwrap();
                log.lock().unwrap().push(format!("start {ms}"));
                // Ignores cancellation.
                std::thread::sleep(Duration::from_millis(ms));
                log.lock().unwrap().push(format!("end {ms}"));
                crate::handler::Outcome::output(&ms)
            })
        }
    }
    let h = Harness::start(Stubborn(seen), options(Concurrency::Fixed(1))).await;
    let first = h.run(json!(1500)).await;
    h.wait(&first, |s| s["status"] == "IN_PROGRESS").await;
    let second = h.run(json!(1)).await;
    let cancelled = post(&format!("{}/cancel/{first}", h.base), json!({})).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(h.finished(&second).await["status"], "COMPLETED");
    assert_eq!(
        *log.lock().unwrap(),
        ["start 1500", "end 1500", "start 1", "end 1"],
        "the second job started beside the first one's thread"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_takes_answered_at_once_do_not_make_a_hot_loop() {
    // An emulator that answers an empty job-take at once instead of holding it.
    let emulator = Emulator::builder()
        .bind("127.0.0.1:0")
        .take_timeout(Duration::ZERO)
        .record_requests(true)
        .build()
        .await
        .unwrap();
    let echo = handler_fn(|input: Value, _job: Job| async move { Ok::<_, std::io::Error>(input) });
    let h = Harness::start_on(emulator, echo, options(Concurrency::Fixed(1))).await;
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let takes = h
        .emulator
        .worker_requests()
        .iter()
        .filter(|r| r.path.contains("/job-take"))
        .count();
    let per_second = takes as f64 / started.elapsed().as_secs_f64();
    assert!(
        per_second <= 12.0,
        "{takes} job-takes in {:?}",
        started.elapsed()
    );
    // Jobs still run at once.
    let id = h.run(json!("quick")).await;
    assert_eq!(h.finished(&id).await["output"], "quick");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_error_reaches_the_client_as_it_is() {
    let picky = handler_fn(|input: Value, _job: Job| async move {
        match input.as_str() {
            Some("string") => Err(crate::Failure::exact("bad thing")),
            Some("json") => Err(crate::Failure::exact(&json!({"code": 7}))),
            _ => Ok(input),
        }
    });
    let h = Harness::start(picky, options(Concurrency::Fixed(1))).await;
    let id = h.run(json!("string")).await;
    let done = h.finished(&id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(
        done["error"], "bad thing",
        "the error as the handler chose it"
    );
    let id = h.run(json!("json")).await;
    assert_eq!(h.finished(&id).await["error"], json!({"code": 7}));
    h.stop().await;
}
