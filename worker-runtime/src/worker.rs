//! The production loop: take jobs while slots are free, run each on its own task, post its
//! result, and keep the set of in-flight jobs that `job_in_progress`, the heartbeat and the
//! job-stop channel read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::value::RawValue;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::client::{self, RetryPolicy, Stop, Take};
use crate::config::PlatformConfig;
use crate::control::{BoxFuture, Control, Outbound};
use crate::handler::{Handler, Outcome, OutcomeKind};
use crate::job::Job;
use crate::limits::{Limits, human_size};
use crate::logging::job_span;
use crate::protocol::{DoneBody, Urls, VERSION};
use crate::report::{ErrorReport, Failure};
use crate::shutdown::{Shutdown, ShutdownTrigger};

/// The jobs taken and not yet reported, in the order they were taken.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    jobs: Mutex<Vec<Job>>,
    added: Notify,
}

impl InFlight {
    fn insert(&self, job: &Job) {
        self.lock().push(job.clone());
        self.added.notify_waiters();
    }

    fn remove(&self, id: &str) {
        let mut jobs = self.lock();
        if let Some(pos) = jobs.iter().position(|j| j.id() == id) {
            jobs.remove(pos);
        }
    }

    fn get(&self, id: &str) -> Option<Job> {
        self.lock().iter().find(|j| j.id() == id).cloned()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The ids, for the heartbeat.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        self.lock().iter().map(|j| j.id().to_owned()).collect()
    }

    /// Resolves once at least one job is in flight.
    async fn wait_non_empty(&self) {
        loop {
            let added = self.added.notified();
            if !self.is_empty() {
                return;
            }
            added.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        // A panic while holding this lock cannot leave the list inconsistent; keep going.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How many jobs may run at once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Concurrency {
    Fixed(usize),
    /// The Python SDK's `concurrency_modifier`: given the current value, returns the next.
    Dynamic(fn(usize) -> usize),
}

/// The loop's options (from `#[worker::handler(…)]` or the `Worker` builder).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopOptions {
    pub(crate) concurrency: Concurrency,
    /// Every job asks the platform to recycle the worker (`stopPod: true`), then the worker exits.
    pub(crate) refresh_worker: bool,
    /// A streaming job's final output is every item instead of `[]`.
    pub(crate) aggregate_stream: bool,
}

/// What every job task shares.
struct Shared<H> {
    handler: H,
    cfg: PlatformConfig,
    client: Client,
    in_flight: Arc<InFlight>,
    outbound: Arc<dyn Outbound>,
    options: LoopOptions,
    retry: RetryPolicy,
    limits: Limits,
    stop_taking: ShutdownTrigger,
    shutdown: Shutdown,
    /// Results being posted after their job gave its slot back. Bounded, so a platform that
    /// does not take results cannot make the worker pile up finished jobs: once it is full, a
    /// finished job keeps its slot until it can post.
    posting: Arc<Semaphore>,
}

/// Back-off between failed requests: doubles from 100 ms to 10 s, reset by success.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    fn new() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }
    fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }
    fn step(&mut self) -> Duration {
        let delay = client::jitter(self.next);
        self.next = (self.next * 2).min(Backoff::MAX);
        delay
    }
}

/// The job slots: a semaphore whose size can change while jobs hold permits. Shrinking takes
/// effect as running jobs finish (their permits are forgotten instead of returned).
struct Slots {
    semaphore: Arc<Semaphore>,
    size: usize,
    /// Permits to remove as soon as they come back.
    debt: usize,
}

impl Slots {
    fn new(size: usize) -> Slots {
        Slots {
            semaphore: Arc::new(Semaphore::new(size)),
            size,
            debt: 0,
        }
    }

    fn resize(&mut self, want: usize) {
        let want = want.max(1);
        if want > self.size {
            let grow = want - self.size;
            let repaid = grow.min(self.debt);
            self.debt -= repaid;
            self.semaphore.add_permits(grow - repaid);
        } else {
            self.debt += self.size - want;
        }
        if want != self.size {
            tracing::info!("concurrency changed from {} to {want}", self.size);
        }
        self.size = want;
        self.debt -= self.semaphore.forget_permits(self.debt);
    }

    /// Keep `permit` unless a shrink still owes permits.
    fn keep(&mut self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        if self.debt > 0 {
            permit.forget();
            self.debt -= 1;
            None
        } else {
            Some(permit)
        }
    }
}

/// Run the production loop until `shutdown` fires (or a job asks for a refresh), then let
/// in-flight jobs finish and post their results.
pub(crate) async fn run<H: Handler>(
    handler: H,
    cfg: PlatformConfig,
    client: Client,
    in_flight: Arc<InFlight>,
    options: LoopOptions,
    limits: Limits,
    (stop_taking, shutdown): (ShutdownTrigger, Shutdown),
) {
    let retry = RetryPolicy {
        total: limits.post_retry,
        ..RetryPolicy::default()
    };
    let outbound = Arc::new(HttpOutbound {
        client: client.clone(),
        urls: cfg.urls.clone(),
        retry,
    });
    let (mut current, modifier) = match options.concurrency {
        Concurrency::Fixed(n) => (n.max(1), None),
        Concurrency::Dynamic(f) => (f(1).max(1), Some(f)),
    };
    let shared = Arc::new(Shared {
        handler,
        cfg,
        client,
        in_flight,
        outbound,
        options,
        retry,
        limits,
        stop_taking,
        shutdown: shutdown.clone(),
        posting: Arc::new(Semaphore::new(current.max(8))),
    });
    let mut slots = Slots::new(current);
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new();
    tracing::info!(
        "worker {} started: taking jobs with concurrency {current}",
        shared.cfg.worker_id
    );
    let stops = tokio::spawn(watch_stops(shared.clone(), shutdown.clone()));

    'taking: loop {
        if let Some(modifier) = modifier {
            current = modifier(current).max(1);
            slots.resize(current);
        }
        // Wait for a free slot, then claim every other free one: that many jobs are asked for.
        // A dynamic concurrency is re-read while waiting, so a raise applies at once.
        let first = loop {
            let recheck = async {
                match modifier {
                    Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                permit = slots.semaphore.clone().acquire_owned() => match permit {
                    Ok(p) => match slots.keep(p) {
                        Some(p) => break p,
                        None => continue,
                    },
                    Err(_) => break 'taking,
                },
                () = shutdown.requested() => break 'taking,
                () = recheck => {
                    if let Some(modifier) = modifier {
                        current = modifier(current).max(1);
                        slots.resize(current);
                    }
                }
            }
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.semaphore.clone().try_acquire_owned() {
            if let Some(p) = slots.keep(p) {
                permits.push(p);
            }
        }
        // Reap finished job tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}

        let free = permits.len();
        let job_in_progress = !shared.in_flight.is_empty();
        let taken = tokio::select! {
            taken = client::take(&shared.client, &shared.cfg, free, job_in_progress) => taken,
            () = shutdown.requested() => break,
        };
        match taken {
            Ok(Take::Jobs(jobs)) => {
                backoff.reset();
                if !jobs.is_empty() {
                    tracing::debug!("took {} job(s)", jobs.len());
                }
                for job in jobs {
                    job.control()
                        .attach(shared.outbound.clone(), shared.options.aggregate_stream);
                    // More jobs than free slots (a batch answer may do that): the extra ones wait
                    // for a slot inside their task, and count as in progress meanwhile.
                    let permit = permits.pop();
                    shared.in_flight.insert(&job);
                    tasks.spawn(run_job(
                        shared.clone(),
                        job,
                        permit,
                        slots.semaphore.clone(),
                    ));
                }
            }
            Ok(Take::TooManyRequests(wait)) => {
                // Retry-After, but never faster than the back-off (a `Retry-After: 0` answered
                // forever must not make a hot loop); 5 s without one, as the Python SDK.
                let step = backoff.step();
                let wait = wait.map_or(Duration::from_secs(5), |w| w.max(step));
                tracing::warn!(
                    "job-take: the platform answered 429 Too Many Requests; waiting {wait:?}"
                );
                drop(permits);
                shutdown.sleep(wait).await;
            }
            Err(e) => {
                let wait = backoff.step();
                tracing::error!("Failed to get job: {e}; retrying in {wait:?}");
                drop(permits);
                shutdown.sleep(wait).await;
            }
        }
    }

    if !tasks.is_empty() {
        tracing::info!(
            "stopping: waiting for {} job(s) in flight to finish",
            tasks.len()
        );
    }
    while tasks.join_next().await.is_some() {}
    stops.abort();
    tracing::info!("worker stopped");
}

/// The job-stop long-poll, while jobs are in flight: cancel the jobs the platform lists.
async fn watch_stops<H: Handler>(shared: Arc<Shared<H>>, shutdown: Shutdown) {
    let Some(url) = shared.cfg.urls.stop() else {
        tracing::warn!("the job-take URL has no /job-take/ segment: per-job cancellation is off");
        return;
    };
    let mut backoff = Backoff::new();
    loop {
        tokio::select! {
            () = shared.in_flight.wait_non_empty() => {}
            () = shutdown.requested() => return,
        }
        let asked = Instant::now();
        let answer = tokio::select! {
            answer = client::stop(&shared.client, &url) => answer,
            () = shutdown.requested() => return,
        };
        match answer {
            Ok(Stop::Jobs(ids)) => {
                backoff.reset();
                let none = ids.is_empty();
                for id in ids {
                    match shared.in_flight.get(&id) {
                        Some(job) => {
                            job_span(&job).in_scope(|| tracing::info!("Stopping job."));
                            job.control().cancel();
                        }
                        None => tracing::debug!("job-stop listed {id}, which is not running here"),
                    }
                }
                // A platform that answers at once instead of long-polling is asked at most once a second.
                if none {
                    shutdown
                        .sleep(Duration::from_secs(1).saturating_sub(asked.elapsed()))
                        .await;
                }
            }
            Ok(Stop::TooManyRequests) => shutdown.sleep(Duration::from_secs(5)).await,
            Err(e) => {
                let wait = backoff.step();
                tracing::warn!("job-stop request failed: {e}; retrying in {wait:?}");
                shutdown.sleep(wait).await;
            }
        }
    }
}

async fn run_job<H: Handler>(
    shared: Arc<Shared<H>>,
    job: Job,
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
) {
    let id = job.id().to_owned();
    let span = job_span(&job);
    async {
        let slot = match permit {
            Some(p) => p,
            None => match slots.acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let control = job.control().clone();
        let outcome = if control.is_cancelled() {
            None
        } else {
            tracing::info!("Started.");
            // A cancelled job's handler future is dropped: async work stops at its next await.
            tokio::select! {
                biased;
                () = control.cancelled() => None,
                () = shared.shutdown.grace_expired() => Some(Outcome::failed(Failure::new(
                    "WorkerShutdown",
                    format!(
                        "worker shutting down: the job did not finish within the {:?} grace period \
                         (WORKER_SHUTDOWN_GRACE_SECONDS)",
                        shared.limits.shutdown_grace
                    ),
                ))),
                outcome = shared.handler.call(job) => Some(outcome),
            }
        };
        control.close_progress().await;
        let Some(outcome) = outcome else {
            tracing::info!("Job stopped.");
            return;
        };
        log_outcome(&outcome);
        let stop_pod = shared.options.refresh_worker || control.refresh_requested();
        let reporter = (shared.cfg.hostname.as_str(), shared.cfg.report_worker_id());
        let (_, bytes, is_stream) =
            encode_final(outcome, &control, stop_pod, reporter, shared.limits.max_output_bytes);
        let url = shared.cfg.urls.done(&id, is_stream);
        if stop_pod {
            tracing::info!("the worker asked to be refreshed: taking no new jobs, exiting once running jobs finish");
            shared.stop_taking.trigger();
        }
        // The handler is done: give the slot back so the next job-take overlaps this post. The
        // job stays in flight (job_in_progress=1, in pings) until its result is posted.
        let posting = shared.posting.clone().acquire_owned().await;
        drop(slot);
        match client::post(&shared.client, &url, &id, bytes, shared.retry).await {
            Ok(()) => tracing::info!("Finished."),
            Err(e) if e.is_retryable() => tracing::error!(
                "Failed to return job results: {e}; gave up after retrying for {:?} \
                 (WORKER_POST_RETRY_SECONDS)",
                shared.retry.total
            ),
            Err(e) => tracing::error!(
                "Failed to return job results: the platform refused them ({e}); not retried"
            ),
        }
        drop(posting);
    }
    .instrument(span)
    .await;
    shared.in_flight.remove(&id);
}

/// Log a failed job with its report, so the worker's own logs explain it too.
pub(crate) fn log_outcome(outcome: &Outcome) {
    if let OutcomeKind::Failed(failure) = &outcome.kind {
        tracing::error!(
            "job failed: {}: {}",
            failure.error_type,
            failure.error_message
        );
        tracing::debug!("{}", failure.error_traceback);
    }
}

/// A job's final job-done post.
pub(crate) struct FinalBody<'a> {
    outcome: &'a Outcome,
    /// The streamed items, when a streaming job aggregates them (else `[]`).
    stream: Option<Box<RawValue>>,
    pub(crate) is_stream: bool,
    stop_pod: bool,
}

impl<'a> FinalBody<'a> {
    pub(crate) fn new(outcome: &'a Outcome, control: &Control, stop_pod: bool) -> FinalBody<'a> {
        let state = control.stream();
        let stream = state.started.then(|| {
            let items: Vec<&str> = if control.aggregates() {
                state.items.iter().map(|i| i.get()).collect()
            } else {
                Vec::new()
            };
            RawValue::from_string(format!("[{}]", items.join(","))).unwrap_or_else(|_| empty_list())
        });
        FinalBody {
            outcome,
            is_stream: stream.is_some(),
            stream,
            stop_pod,
        }
    }

    /// `{"output": …}`, or `{"error": "<report JSON>"}`, plus `stopPod`.
    pub(crate) fn to_bytes(&self, hostname: &str, worker_id: &str) -> Vec<u8> {
        self.encode(&self.outcome.kind, hostname, worker_id)
    }

    fn encode(&self, kind: &OutcomeKind, hostname: &str, worker_id: &str) -> Vec<u8> {
        let body = match kind {
            OutcomeKind::Output(raw) => DoneBody {
                output: Some(self.stream.as_deref().unwrap_or(raw)),
                error: None,
                stop_pod: self.stop_pod,
            },
            OutcomeKind::Failed(failure) => DoneBody {
                output: None,
                error: Some(report_json(failure, hostname, worker_id)),
                stop_pod: self.stop_pod,
            },
        };
        // Serializing a RawValue and strings cannot fail.
        serde_json::to_vec(&body)
            .unwrap_or_else(|_| b"{\"error\":\"the worker could not encode its result\"}".to_vec())
    }
}

/// Encode a job's final post. A body over `max_bytes` is replaced by a failure that says how
/// large it was (the platform would reject it with a 400 nobody sees); the outcome returned is
/// the one posted.
pub(crate) fn encode_final(
    outcome: Outcome,
    control: &Control,
    stop_pod: bool,
    (hostname, worker_id): (&str, &str),
    max_bytes: usize,
) -> (Outcome, Vec<u8>, bool) {
    let body = FinalBody::new(&outcome, control, stop_pod);
    let (bytes, is_stream) = (body.to_bytes(hostname, worker_id), body.is_stream);
    if bytes.len() <= max_bytes {
        return (outcome, bytes, is_stream);
    }
    let failure = Failure::new(
        "OutputTooLarge",
        format!(
            "the job's result is {} ({} bytes), more than the {} the platform accepts \
             (WORKER_MAX_OUTPUT_BYTES); return less, or upload large data to storage and return its URL",
            human_size(bytes.len()),
            bytes.len(),
            human_size(max_bytes)
        ),
    );
    log_outcome(&Outcome::failed(failure.clone()));
    let outcome = Outcome::failed(failure);
    let bytes = FinalBody::new(&outcome, control, stop_pod).to_bytes(hostname, worker_id);
    (outcome, bytes, is_stream)
}

fn empty_list() -> Box<RawValue> {
    RawValue::from_string("[]".to_owned()).expect("`[]` is JSON")
}

fn report_json(failure: &Failure, hostname: &str, worker_id: &str) -> String {
    let report = ErrorReport {
        error_type: &failure.error_type,
        error_message: &failure.error_message,
        error_traceback: &failure.error_traceback,
        hostname,
        worker_id,
        runpod_version: VERSION,
    };
    serde_json::to_string(&report).unwrap_or_else(|_| failure.error_message.clone())
}

/// Progress updates and stream chunks to the platform.
struct HttpOutbound {
    client: Client,
    urls: Urls,
    retry: RetryPolicy,
}

impl Outbound for HttpOutbound {
    fn progress(&self, job_id: &str, body: Vec<u8>) -> BoxFuture<'_, ()> {
        let url = self.urls.done(job_id, false);
        let job_id = job_id.to_owned();
        // Progress is advisory: retry briefly, then let the next update (or the result) win.
        let retry = RetryPolicy {
            total: Duration::from_secs(10),
            ..self.retry
        };
        Box::pin(async move {
            if let Err(e) = client::post(&self.client, &url, &job_id, body, retry).await {
                tracing::warn!("a progress update was not delivered: {e}");
            }
        })
    }

    fn chunk(&self, job_id: &str, body: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let url = self.urls.stream(job_id);
        let job_id = job_id.to_owned();
        Box::pin(async move {
            let Some(url) = url else {
                return Err(
                    "RUNPOD_WEBHOOK_POST_STREAM is not set, so this worker cannot stream; \
                            RunPod sets it for every worker"
                        .to_owned(),
                );
            };
            client::post(&self.client, &url, &job_id, body, self.retry)
                .await
                .map_err(|e| format!("a stream chunk could not be delivered: {e}"))
        })
    }
}
