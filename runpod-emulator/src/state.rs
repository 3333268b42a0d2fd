//! The emulator's queue and job state machine.
//!
//! One mutex guards everything (jobs, the queue, the workers seen); it is never held across an
//! `await`. Waiters are woken through [`Notify`]s (a job was queued, a stop was requested, a
//! deadline changed) and a per-job [`watch`] of its status (for `runsync`), so long-polls never
//! sleep in a loop.
//!
//! ```text
//!   run/runsync ──► IN_QUEUE ──take──► IN_PROGRESS ──done──► COMPLETED / FAILED
//!                     ▲  │                 │  │
//!      retry, lost ───┘  │ cancel, purge   │  └─ cancel ──► CANCELLED (worker told via job-stop)
//!      worker (×N)       ▼                 └─ ttl / executionTimeout / worker lost again ──► TIMED_OUT
//!                    CANCELLED, TIMED_OUT (ttl)        (N: max_requeues, 1 by default)
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};

/// How long a job may exist before it is TIMED_OUT when the request sets no `policy.ttl`
/// (RunPod's default: 24 hours).
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long the result of a `/run` job stays readable after it finished (RunPod: 30 minutes).
const RUN_RETENTION: Duration = Duration::from_secs(30 * 60);
/// How long the result of a `/runsync` job stays readable after it finished (RunPod: 1 minute).
const SYNC_RETENTION: Duration = Duration::from_secs(60);

/// A job's status, with RunPod's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    InQueue,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::InQueue => "IN_QUEUE",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
            Status::TimedOut => "TIMED_OUT",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        !matches!(self, Status::InQueue | Status::InProgress)
    }
}

/// The emulator's tunables (set through the builder).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// How long job-take and job-stop long-polls are held before answering 204.
    pub(crate) take_timeout: Duration,
    /// A worker not heard from (no ping, no request) for this long is lost; its jobs are
    /// re-queued (up to `max_requeues` times), then TIMED_OUT.
    pub(crate) worker_timeout: Duration,
    /// How often a job is re-queued after losing its worker before it is TIMED_OUT.
    pub(crate) max_requeues: u32,
    /// Delay between webhook attempts (three attempts in all).
    pub(crate) webhook_retry_delay: Duration,
    /// The execution timeout of jobs whose request sets no `policy.executionTimeout`.
    pub(crate) execution_timeout: Option<Duration>,
}

/// One job, from submission until its result expires.
#[derive(Debug)]
struct Job {
    id: String,
    /// The client's request body (`input`, `webhook`, `policy`, …); the worker gets it with `id`.
    request: Map<String, Value>,
    /// Submitted through `/runsync` (its result is kept 1 minute instead of 30).
    sync: bool,
    status: Status,
    submitted: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
    /// The final output, or the latest progress update while IN_PROGRESS.
    output: Option<Value>,
    error: Option<Value>,
    /// Stream chunk outputs, in order; the first `delivered` were already returned by `/stream`.
    chunks: Vec<Value>,
    delivered: usize,
    /// The worker the job is (or was last) assigned to.
    worker: Option<String>,
    /// How often the job was re-queued because its worker was lost.
    lost: u32,
    webhook: Option<String>,
    execution_timeout: Option<Duration>,
    ttl: Duration,
    changed: watch::Sender<Status>,
    /// A digest of the final job-done body, to tell a repeated final result from a different one.
    final_digest: Option<u64>,
}

/// A worker process, as seen from its requests.
#[derive(Debug)]
struct Worker {
    last_seen: Instant,
    /// Long-polls (job-take, job-stop) being held for it right now: it is alive meanwhile.
    open_polls: usize,
    /// Job ids the worker must stop (cancelled, timed out, re-queued), for job-stop.
    stops: Vec<String>,
    /// The last `status=unhealthy` report (`check: reason`).
    unhealthy: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    queue: VecDeque<String>,
    workers: HashMap<String, Worker>,
    completed: u64,
    failed: u64,
    retried: u64,
    /// Jobs put back in the queue because their worker was lost.
    requeued: u64,
    /// Final job-done posts for jobs already final (see `EmulatorStats`).
    duplicate_finals: u64,
    conflicting_finals: u64,
    /// The deadline the reaper sleeps until (the last sweep's answer, or a sooner one
    /// [`State::schedule`] woke it for); `None`: no deadline pending.
    next_sweep: Option<Instant>,
}

/// A terminal job's webhook delivery, to start once the lock is released.
#[derive(Debug)]
pub(crate) struct WebhookCall {
    pub(crate) url: String,
    pub(crate) body: Value,
}

/// What a job-done or job-stream post led to.
#[derive(Debug)]
pub(crate) enum Report {
    /// Recorded.
    Accepted,
    /// The job is no longer running on this worker (cancelled, timed out, finished); dropped.
    Ignored(String),
    /// No such job, or the job is assigned to another worker.
    NotFound(String),
    /// The body is not what the protocol says.
    BadRequest(String),
}

/// A client request that could not be served.
#[derive(Debug)]
pub(crate) enum Refused {
    NotFound(String),
    BadRequest(String),
}

/// The shared state of one emulator.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) settings: Settings,
    inner: Mutex<Inner>,
    /// A job entered the queue.
    queued: Notify,
    /// A worker got a job to stop.
    stops: Notify,
    /// A deadline may have changed: wakes the reaper.
    timers: Notify,
}

impl State {
    pub(crate) fn new(settings: Settings) -> State {
        State {
            settings,
            inner: Mutex::new(Inner::default()),
            queued: Notify::new(),
            stops: Notify::new(),
            timers: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below leaves the state consistent before it can panic; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn queued(&self) -> &Notify {
        &self.queued
    }

    pub(crate) fn stops(&self) -> &Notify {
        &self.stops
    }

    pub(crate) fn timers(&self) -> &Notify {
        &self.timers
    }

    /* ---- client side ---- */

    /// Queue a job from a `/run` or `/runsync` body. Returns its status body and a receiver of
    /// its status changes.
    pub(crate) fn submit(
        &self,
        request: Value,
        sync: bool,
    ) -> Result<(Value, watch::Receiver<Status>), Refused> {
        let Value::Object(mut request) = request else {
            return Err(Refused::BadRequest(
                "the request body must be a JSON object like {\"input\": {...}}".into(),
            ));
        };
        if !request.contains_key("input") {
            return Err(Refused::BadRequest(
                "the request has no `input`: send {\"input\": {...}}".into(),
            ));
        }
        let webhook = match request.get("webhook") {
            None | Some(Value::Null) => None,
            Some(Value::String(url))
                if url.starts_with("http://") || url.starts_with("https://") =>
            {
                Some(url.clone())
            }
            Some(other) => {
                return Err(Refused::BadRequest(format!(
                    "`webhook` must be an http(s) URL string, not {other}"
                )));
            }
        };
        let policy = request.get("policy").cloned().unwrap_or(Value::Null);
        if !policy.is_null() && !policy.is_object() {
            return Err(Refused::BadRequest("`policy` must be an object".into()));
        }
        let execution_timeout =
            policy_ms(&policy, "executionTimeout")?.or(self.settings.execution_timeout);
        let ttl = policy_ms(&policy, "ttl")?.unwrap_or(DEFAULT_TTL);
        // The id is ours: a client-sent `id` must not confuse the worker.
        request.remove("id");

        let id = new_job_id(sync);
        let (changed, rx) = watch::channel(Status::InQueue);
        let job = Job {
            id: id.clone(),
            request,
            sync,
            status: Status::InQueue,
            submitted: Instant::now(),
            started: None,
            finished: None,
            output: None,
            error: None,
            chunks: Vec::new(),
            delivered: 0,
            worker: None,
            lost: 0,
            webhook,
            execution_timeout,
            ttl,
            changed,
            final_digest: None,
        };
        let view = {
            let mut inner = self.lock();
            let view = view(&job);
            self.schedule(&mut inner, job.submitted + job.ttl);
            inner.jobs.insert(id.clone(), job);
            inner.queue.push_back(id.clone());
            view
        };
        tracing::info!("emulator: job {id} queued");
        self.queued.notify_waiters();
        Ok((view, rx))
    }

    /// The status body of a job (`/status`).
    pub(crate) fn status(&self, id: &str) -> Option<Value> {
        self.lock().jobs.get(id).map(view)
    }

    /// The status body plus the stream chunks not delivered yet (`/stream`). A job that
    /// finished without streaming delivers its output as the one chunk.
    pub(crate) fn stream(&self, id: &str) -> Option<Value> {
        let mut inner = self.lock();
        let job = inner.jobs.get_mut(id)?;
        if job.status.is_terminal()
            && job.chunks.is_empty()
            && job.delivered == 0
            && let Some(output) = &job.output
        {
            job.chunks.push(output.clone());
        }
        let fresh: Vec<Value> = job.chunks[job.delivered..]
            .iter()
            .map(|chunk| json!({ "output": chunk }))
            .collect();
        job.delivered = job.chunks.len();
        let mut body = view(job);
        body["stream"] = Value::Array(fresh);
        Some(body)
    }

    /// Cancel a queued or running job; a running one is listed in its worker's job-stop.
    pub(crate) fn cancel(&self, id: &str) -> Option<Value> {
        let (body, hook) = {
            let mut inner = self.lock();
            let status = inner.jobs.get(id)?.status;
            let hook = if status.is_terminal() {
                None
            } else {
                self.finish(&mut inner, id, Status::Cancelled, None)
            };
            (view(inner.jobs.get(id)?), hook)
        };
        tracing::info!("emulator: job {id} cancelled");
        self.after(hook);
        Some(body)
    }

    /// Put a FAILED, TIMED_OUT or CANCELLED job back in the queue, under the same id.
    pub(crate) fn retry(&self, id: &str) -> Result<Value, Refused> {
        let body = {
            let mut inner = self.lock();
            let Some(job) = inner.jobs.get_mut(id) else {
                return Err(Refused::NotFound(format!("no job `{id}`")));
            };
            if !matches!(
                job.status,
                Status::Failed | Status::TimedOut | Status::Cancelled
            ) {
                return Err(Refused::BadRequest(format!(
                    "job `{id}` is {}; only FAILED, TIMED_OUT or CANCELLED jobs can be retried",
                    job.status.as_str()
                )));
            }
            reset(job);
            job.submitted = Instant::now();
            job.lost = 0;
            let body = view(job);
            inner.queue.push_back(id.to_owned());
            inner.retried += 1;
            body
        };
        tracing::info!("emulator: job {id} re-queued by retry");
        self.queued.notify_waiters();
        self.timers.notify_one();
        Ok(body)
    }

    /// Cancel every queued job; returns how many there were.
    pub(crate) fn purge(&self) -> usize {
        let hooks: Vec<Option<WebhookCall>> = {
            let mut inner = self.lock();
            let ids: Vec<String> = inner.queue.drain(..).collect();
            let mut hooks = Vec::new();
            for id in ids {
                if inner.jobs.get(&id).map(|j| j.status) == Some(Status::InQueue) {
                    hooks.push(self.finish(&mut inner, &id, Status::Cancelled, None));
                }
            }
            hooks
        };
        let removed = hooks.len();
        for hook in hooks {
            self.after(hook);
        }
        tracing::info!("emulator: purged {removed} queued job(s)");
        removed
    }

    /// `/health`: job counters and the workers seen recently.
    pub(crate) fn health(&self) -> Value {
        let now = Instant::now();
        let inner = self.lock();
        let in_queue = inner
            .jobs
            .values()
            .filter(|j| j.status == Status::InQueue)
            .count();
        let mut busy = HashSet::new();
        for job in inner.jobs.values() {
            if job.status == Status::InProgress
                && let Some(w) = &job.worker
            {
                busy.insert(w.as_str());
            }
        }
        let (mut idle, mut running, mut unhealthy) = (0, 0, 0);
        for (id, worker) in &inner.workers {
            if !self.alive(worker, now) {
                continue;
            }
            if worker.unhealthy.is_some() {
                unhealthy += 1;
            } else if busy.contains(id.as_str()) {
                running += 1;
            } else {
                idle += 1;
            }
        }
        let in_progress = inner
            .jobs
            .values()
            .filter(|j| j.status == Status::InProgress)
            .count();
        json!({
            "jobs": {
                "completed": inner.completed,
                "failed": inner.failed,
                "inProgress": in_progress,
                "inQueue": in_queue,
                "retried": inner.retried,
            },
            "workers": {
                "idle": idle,
                "initializing": 0,
                "ready": idle,
                "running": running,
                "throttled": 0,
                "unhealthy": unhealthy,
            },
        })
    }

    /// Counters for tests (`EmulatorHandle::stats`).
    pub(crate) fn stats(&self) -> super::EmulatorStats {
        let inner = self.lock();
        super::EmulatorStats {
            completed: inner.completed,
            failed: inner.failed,
            duplicate_finals: inner.duplicate_finals,
            conflicting_finals: inner.conflicting_finals,
            requeued: inner.requeued,
            ..Default::default()
        }
    }

    /* ---- worker side ---- */

    /// Mark a long-poll of `worker` as open until the guard is dropped.
    pub(crate) fn open_poll<'a>(&'a self, worker: &'a str) -> PollGuard<'a> {
        {
            let mut inner = self.lock();
            let w = worker_entry(&mut inner, worker);
            w.last_seen = Instant::now();
            w.open_polls += 1;
        }
        PollGuard {
            state: self,
            worker,
        }
    }

    /// Hand up to `max` queued jobs to `worker` (job-take). Each is the client's request with
    /// the job `id`.
    pub(crate) fn take(&self, worker: &str, max: usize) -> Vec<Value> {
        let mut taken = Vec::new();
        let mut deadlines = Vec::new();
        {
            let mut inner = self.lock();
            let now = Instant::now();
            worker_entry(&mut inner, worker).last_seen = now;
            while taken.len() < max {
                let Some(id) = inner.queue.pop_front() else {
                    break;
                };
                let Some(job) = inner.jobs.get_mut(&id) else {
                    continue;
                };
                if job.status != Status::InQueue {
                    continue;
                }
                job.status = Status::InProgress;
                job.started = Some(now);
                if let Some(limit) = job.execution_timeout {
                    deadlines.push(now + limit);
                }
                job.worker = Some(worker.to_owned());
                job.changed.send_replace(Status::InProgress);
                let mut payload = Map::with_capacity(job.request.len() + 1);
                payload.insert("id".into(), Value::String(id.clone()));
                payload.extend(job.request.iter().map(|(k, v)| (k.clone(), v.clone())));
                taken.push(Value::Object(payload));
            }
            // A retried job handed to a worker that was told to stop its earlier run: that old
            // stop must not stop the new one.
            let ids: Vec<&str> = taken.iter().filter_map(|j| j["id"].as_str()).collect();
            worker_entry(&mut inner, worker)
                .stops
                .retain(|s| !ids.contains(&s.as_str()));
            if let Some(&soonest) = deadlines.iter().min() {
                self.schedule(&mut inner, soonest);
            }
        }
        for job in &taken {
            tracing::info!(
                "emulator: job {} taken by worker {worker}",
                job["id"].as_str().unwrap_or_default()
            );
        }
        taken
    }

    /// The ids `worker` must stop (job-stop); empties its list.
    pub(crate) fn take_stops(&self, worker: &str) -> Vec<String> {
        let mut inner = self.lock();
        let w = worker_entry(&mut inner, worker);
        w.last_seen = Instant::now();
        std::mem::take(&mut w.stops)
    }

    /// A job-done post: a progress update (`status: IN_PROGRESS`) or the final result.
    pub(crate) fn done(&self, worker: &str, id: &str, body: Value, is_stream: bool) -> Report {
        let Value::Object(mut body) = body else {
            return Report::BadRequest(
                "a job-done body must be a JSON object like {\"output\": ...}".into(),
            );
        };
        let (report, hook) = {
            let mut inner = self.lock();
            worker_entry(&mut inner, worker).last_seen = Instant::now();
            let progress = body.get("status").and_then(Value::as_str) == Some("IN_PROGRESS");
            let digest = digest(&body);
            // The same worker posting a final result again: a retry whose first answer was lost.
            if let Some(job) = inner.jobs.get(id)
                && !progress
                && job.worker.as_deref() == Some(worker)
                && matches!(job.status, Status::Completed | Status::Failed)
            {
                let status = job.status;
                let conflicting = job.final_digest != Some(digest);
                inner.duplicate_finals += 1;
                if conflicting {
                    inner.conflicting_finals += 1;
                    tracing::warn!(
                        "emulator: job {id}: worker {worker} posted a different final result after the first; ignored"
                    );
                } else {
                    tracing::info!(
                        "emulator: job {id}: worker {worker} posted its final result again; ignored"
                    );
                }
                return Report::Ignored(format!(
                    "job `{id}` is already {}; the repeated result was ignored",
                    status.as_str()
                ));
            }
            let job = match running_job(&mut inner, worker, id) {
                Ok(job) => job,
                Err(report) => return report,
            };
            if progress {
                job.output = body.remove("output");
                job.changed.send_replace(Status::InProgress);
                tracing::debug!("emulator: job {id}: progress update");
                return Report::Accepted;
            }
            if body.get("stopPod").and_then(Value::as_bool) == Some(true) {
                tracing::info!(
                    "emulator: job {id}: worker {worker} asked to be recycled (stopPod); the emulator keeps serving it"
                );
            }
            let error = body.remove("error").filter(|e| match e {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                _ => true,
            });
            let mut output = body.remove("output");
            let empty = match &output {
                None | Some(Value::Null) => true,
                Some(Value::Array(items)) => items.is_empty(),
                _ => false,
            };
            if empty && (is_stream || !job.chunks.is_empty()) {
                output = Some(Value::Array(job.chunks.clone()));
            }
            job.output = output;
            job.final_digest = Some(digest);
            let status = if error.is_some() {
                Status::Failed
            } else {
                Status::Completed
            };
            tracing::info!("emulator: job {id} {} (worker {worker})", status.as_str());
            let hook = self.finish(&mut inner, id, status, error);
            (Report::Accepted, hook)
        };
        self.after(hook);
        report
    }

    /// A job-stream post: one chunk (`{"output": chunk}`).
    pub(crate) fn stream_chunk(&self, worker: &str, id: &str, body: Value) -> Report {
        let chunk = match body {
            Value::Object(mut body) if body.contains_key("output") => {
                body.remove("output").unwrap_or(Value::Null)
            }
            _ => {
                return Report::BadRequest(
                    "a job-stream body must be a JSON object like {\"output\": ...}".into(),
                );
            }
        };
        let mut inner = self.lock();
        worker_entry(&mut inner, worker).last_seen = Instant::now();
        match running_job(&mut inner, worker, id) {
            Ok(job) => {
                job.chunks.push(chunk);
                job.changed.send_replace(Status::InProgress);
                Report::Accepted
            }
            Err(report) => report,
        }
    }

    /// A heartbeat. `job_ids` are the jobs the worker says it holds: a job assigned to it for
    /// longer than the worker timeout that it no longer lists was lost; a listed job that must
    /// stop (cancelled, timed out, given to another worker) is announced on job-stop again, since
    /// a stop that arrives before the worker started the job can be missed.
    pub(crate) fn ping(&self, worker: &str, job_ids: &[&str], unhealthy: Option<String>) {
        let now = Instant::now();
        let hooks: Vec<Option<WebhookCall>> = {
            let mut inner = self.lock();
            let mut stale: Vec<String> = job_ids
                .iter()
                .filter(|id| {
                    inner.jobs.get(**id).is_some_and(|j| {
                        j.worker.as_deref() != Some(worker)
                            || matches!(j.status, Status::Cancelled | Status::TimedOut)
                    })
                })
                .map(|id| id.to_string())
                .collect();
            let w = worker_entry(&mut inner, worker);
            w.last_seen = now;
            if let Some(reason) = &unhealthy {
                tracing::warn!("emulator: worker {worker} reports itself unhealthy: {reason}");
            }
            w.unhealthy = unhealthy;
            stale.retain(|id| !w.stops.contains(id));
            if !stale.is_empty() {
                tracing::debug!(
                    "emulator: worker {worker} still runs {stale:?}; telling it to stop again"
                );
                w.stops.extend(stale);
                self.stops.notify_waiters();
            }
            let grace = self.settings.worker_timeout;
            let lost: Vec<String> = inner
                .jobs
                .values()
                .filter(|j| {
                    j.status == Status::InProgress
                        && j.worker.as_deref() == Some(worker)
                        && !job_ids.contains(&j.id.as_str())
                        && j.started.is_some_and(|s| now.duration_since(s) > grace)
                })
                .map(|j| j.id.clone())
                .collect();
            lost.iter()
                .map(|id| {
                    self.lose(
                        &mut inner,
                        id,
                        format!("worker {worker} no longer reports job {id} in its pings"),
                    )
                })
                .collect()
        };
        for hook in hooks {
            self.after(hook);
        }
    }

    /* ---- deadlines ---- */

    /// Apply every deadline that passed (ttl, execution timeout, lost worker, result
    /// retention) and return the next one.
    pub(crate) fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut hooks = Vec::new();
        let mut next: Option<Instant> = None;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        {
            let mut inner = self.lock();
            let mut expired = Vec::new();
            let mut timed_out = Vec::new();
            let mut lost = Vec::new();
            for job in inner.jobs.values() {
                if let Some(finished) = job.finished {
                    let keep = if job.sync {
                        SYNC_RETENTION
                    } else {
                        RUN_RETENTION
                    };
                    if now >= finished + keep {
                        expired.push(job.id.clone());
                    } else {
                        soonest(finished + keep);
                    }
                    continue;
                }
                let ttl_at = job.submitted + job.ttl;
                if now >= ttl_at {
                    timed_out.push((
                        job.id.clone(),
                        format!("ttl of {} ms exceeded", ms(job.ttl)),
                    ));
                    continue;
                }
                soonest(ttl_at);
                let (Some(started), Some(worker)) = (job.started, job.worker.as_deref()) else {
                    continue;
                };
                if let Some(limit) = job.execution_timeout {
                    if now >= started + limit {
                        timed_out.push((
                            job.id.clone(),
                            format!("executionTimeout of {} ms exceeded", ms(limit)),
                        ));
                        continue;
                    }
                    soonest(started + limit);
                }
                match inner.workers.get(worker) {
                    Some(w) if w.open_polls > 0 => {}
                    Some(w) if now < w.last_seen + self.settings.worker_timeout => {
                        soonest(w.last_seen + self.settings.worker_timeout)
                    }
                    _ => lost.push((
                        job.id.clone(),
                        format!(
                            "worker {worker} stopped responding (nothing heard for {} ms)",
                            ms(self.settings.worker_timeout)
                        ),
                    )),
                }
            }
            for id in expired {
                inner.jobs.remove(&id);
            }
            for (id, why) in timed_out {
                tracing::warn!("emulator: job {id} timed out: {why}");
                hooks.push(self.finish(
                    &mut inner,
                    &id,
                    Status::TimedOut,
                    Some(Value::String(format!("job timed out: {why}"))),
                ));
            }
            for (id, why) in lost {
                hooks.push(self.lose(&mut inner, &id, why));
            }
            // Forget workers long gone that hold no job.
            let forget = self.settings.worker_timeout * 10;
            inner
                .workers
                .retain(|_, w| w.open_polls > 0 || now < w.last_seen + forget);
            inner.next_sweep = next;
        }
        for hook in hooks {
            self.after(hook);
        }
        next
    }

    /* ---- helpers ---- */

    /// A deadline at `at` now exists: wake the reaper if that is sooner than the one it sleeps
    /// until. A later one is found by the sweep that the sooner deadline triggers anyway. A
    /// sweep visits every job (results are kept 30 minutes), so waking it on every take and
    /// result made the emulator's cost per job grow with the jobs it holds.
    fn schedule(&self, inner: &mut Inner, at: Instant) {
        if inner.next_sweep.is_none_or(|next| at < next) {
            inner.next_sweep = Some(at);
            self.timers.notify_one();
        }
    }

    fn alive(&self, worker: &Worker, now: Instant) -> bool {
        worker.open_polls > 0 || now < worker.last_seen + self.settings.worker_timeout
    }

    /// A running job's worker is gone: re-queue it (`max_requeues` times, once by default),
    /// TIMED_OUT after that.
    fn lose(&self, inner: &mut Inner, id: &str, why: String) -> Option<WebhookCall> {
        let job = inner.jobs.get_mut(id)?;
        if job.lost >= self.settings.max_requeues {
            let times = job.lost;
            tracing::warn!(
                "emulator: job {id}: {why}; it was already re-queued {times} time(s): TIMED_OUT"
            );
            return self.finish(
                inner,
                id,
                Status::TimedOut,
                Some(Value::String(format!(
                    "job timed out: {why}, and it was already re-queued {times} time(s)"
                ))),
            );
        }
        tracing::warn!("emulator: job {id}: {why}; re-queueing it");
        job.lost += 1;
        let worker = job.worker.clone();
        reset(job);
        if let Some(worker) = worker {
            // In case it is only slow: it must not finish the job too.
            self.tell_stop(inner, &worker, id);
        }
        inner.queue.push_front(id.to_owned());
        inner.retried += 1;
        inner.requeued += 1;
        self.queued.notify_waiters();
        None
    }

    /// Move a job to a terminal status. A running job's worker is told to stop it (unless it
    /// finished it itself). Returns the webhook call to make.
    fn finish(
        &self,
        inner: &mut Inner,
        id: &str,
        status: Status,
        error: Option<Value>,
    ) -> Option<WebhookCall> {
        let job = inner.jobs.get_mut(id)?;
        let retention = if job.sync {
            SYNC_RETENTION
        } else {
            RUN_RETENTION
        };
        let was = job.status;
        job.status = status;
        job.finished = Some(Instant::now());
        if error.is_some() {
            job.error = error;
        }
        if matches!(status, Status::Cancelled | Status::TimedOut) {
            // A progress update is not a result.
            job.output = None;
        }
        job.changed.send_replace(status);
        let hook = job.webhook.clone().map(|url| WebhookCall {
            url,
            body: view(job),
        });
        let worker = job.worker.clone();
        match status {
            Status::Completed => inner.completed += 1,
            Status::Failed => inner.failed += 1,
            _ => {}
        }
        if was == Status::InQueue {
            inner.queue.retain(|q| q != id);
        }
        if was == Status::InProgress
            && matches!(status, Status::Cancelled | Status::TimedOut)
            && let Some(worker) = worker
        {
            self.tell_stop(inner, &worker, id);
        }
        self.schedule(inner, Instant::now() + retention);
        hook
    }

    /// Put `id` on `worker`'s job-stop list (once).
    fn tell_stop(&self, inner: &mut Inner, worker: &str, id: &str) {
        let stops = &mut worker_entry(inner, worker).stops;
        if !stops.iter().any(|s| s == id) {
            stops.push(id.to_owned());
            self.stops.notify_waiters();
        }
    }

    /// Side effects after the lock is released.
    fn after(&self, hook: Option<WebhookCall>) {
        if let Some(call) = hook {
            super::webhook::deliver(call, self.settings.webhook_retry_delay);
        }
    }
}

/// Holds a worker's long-poll open; see [`State::open_poll`].
#[derive(Debug)]
pub(crate) struct PollGuard<'a> {
    state: &'a State,
    worker: &'a str,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        {
            let mut inner = self.state.lock();
            let w = worker_entry(&mut inner, self.worker);
            let now = Instant::now();
            w.last_seen = now;
            w.open_polls = w.open_polls.saturating_sub(1);
            if w.open_polls == 0 {
                // From now on the worker can be lost (if it holds jobs).
                let at = now + self.state.settings.worker_timeout;
                self.state.schedule(&mut inner, at);
            }
        }
    }
}

fn worker_entry<'a>(inner: &'a mut Inner, worker: &str) -> &'a mut Worker {
    inner.workers.entry(worker.to_owned()).or_insert_with(|| {
        tracing::info!("emulator: worker {worker} connected");
        Worker {
            last_seen: Instant::now(),
            open_polls: 0,
            stops: Vec::new(),
            unhealthy: None,
        }
    })
}

/// The job `id` if it is running on `worker`, else why a report about it is refused.
fn running_job<'a>(inner: &'a mut Inner, worker: &str, id: &str) -> Result<&'a mut Job, Report> {
    let Some(job) = inner.jobs.get_mut(id) else {
        return Err(Report::NotFound(format!("no job `{id}`")));
    };
    if job.worker.as_deref() != Some(worker) {
        return Err(Report::NotFound(format!(
            "job `{id}` is not assigned to worker `{worker}`"
        )));
    }
    if job.status != Status::InProgress {
        tracing::info!(
            "emulator: job {id}: ignoring a report from worker {worker}: the job is {}",
            job.status.as_str()
        );
        return Err(Report::Ignored(format!(
            "job `{id}` is {}; the report was ignored",
            job.status.as_str()
        )));
    }
    Ok(job)
}

/// Back to IN_QUEUE, as if never taken.
fn reset(job: &mut Job) {
    job.status = Status::InQueue;
    job.started = None;
    job.finished = None;
    job.output = None;
    job.error = None;
    job.chunks.clear();
    job.delivered = 0;
    job.worker = None;
    job.final_digest = None;
    job.changed.send_replace(Status::InQueue);
}

/// A digest of a job-done body (its compact JSON), to compare final results cheaply.
fn digest(body: &Map<String, Value>) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(serde_json::to_string(body).unwrap_or_default().as_bytes());
    h.finish()
}

/// A job's status body: `id`, `status`, `delayTime` once started, `executionTime` once
/// finished, `workerId`, `output` / `error`.
fn view(job: &Job) -> Value {
    let mut body = Map::new();
    body.insert("id".into(), Value::String(job.id.clone()));
    body.insert("status".into(), Value::String(job.status.as_str().into()));
    if let Some(started) = job.started {
        body.insert(
            "delayTime".into(),
            json!(ms(started.duration_since(job.submitted))),
        );
        if let Some(finished) = job.finished {
            body.insert(
                "executionTime".into(),
                json!(ms(finished.duration_since(started))),
            );
        }
    }
    if let Some(worker) = &job.worker {
        body.insert("workerId".into(), Value::String(worker.clone()));
    }
    if job.lost > 0 {
        body.insert("retries".into(), json!(job.lost));
    }
    if let Some(output) = &job.output {
        body.insert("output".into(), output.clone());
    }
    if let Some(error) = &job.error {
        body.insert("error".into(), error.clone());
    }
    Value::Object(body)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `policy.<name>` in milliseconds, if set.
fn policy_ms(policy: &Value, name: &str) -> Result<Option<Duration>, Refused> {
    match policy.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(Duration::from_millis(n))),
            _ => Err(Refused::BadRequest(format!(
                "`policy.{name}` must be a positive number of milliseconds, not {v}"
            ))),
        },
    }
}

/// A random, uuid-shaped job id with RunPod's suffix (`…-e1`, `sync-…-e1` for runsync).
pub(crate) fn new_job_id(sync: bool) -> String {
    let hex = format!("{:032x}", fastrand::u128(..));
    format!(
        "{}{}-{}-{}-{}-{}-e1",
        if sync { "sync-" } else { "" },
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(Settings {
            take_timeout: Duration::from_millis(100),
            worker_timeout: Duration::from_secs(3),
            max_requeues: 1,
            webhook_retry_delay: Duration::from_millis(10),
            execution_timeout: None,
        })
    }

    #[test]
    fn job_ids_are_unique_and_uuid_shaped() {
        let a = new_job_id(false);
        let b = new_job_id(true);
        assert_ne!(a, new_job_id(false));
        assert_eq!(a.len(), 36 + 3);
        assert!(b.starts_with("sync-") && b.ends_with("-e1"));
        assert_eq!(a.matches('-').count(), 5);
    }

    #[test]
    fn progress_then_result() {
        let s = state();
        let (queued, _) = s.submit(json!({"input": 1}), false).unwrap();
        let id = queued["id"].as_str().unwrap();
        assert_eq!(queued["status"], "IN_QUEUE");
        let jobs = s.take("w", 5);
        assert_eq!(jobs, vec![json!({"id": id, "input": 1})]);
        assert!(matches!(
            s.done(
                "w",
                id,
                json!({"status": "IN_PROGRESS", "output": 0.5}),
                false
            ),
            Report::Accepted
        ));
        assert_eq!(s.status(id).unwrap()["output"], 0.5);
        assert!(matches!(
            s.done("other", id, json!({"output": 1}), false),
            Report::NotFound(_)
        ));
        assert!(matches!(
            s.done("w", id, json!({"output": 2}), false),
            Report::Accepted
        ));
        let done = s.status(id).unwrap();
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(done["output"], 2);
        assert!(done["executionTime"].is_u64() && done["delayTime"].is_u64());
        // A late progress post does not reopen the job.
        assert!(matches!(
            s.done(
                "w",
                id,
                json!({"status": "IN_PROGRESS", "output": 0.9}),
                false
            ),
            Report::Ignored(_)
        ));
    }

    #[test]
    fn streamed_output_is_aggregated_when_the_final_output_is_empty() {
        let s = state();
        let (queued, _) = s.submit(json!({"input": null}), false).unwrap();
        let id = queued["id"].as_str().unwrap();
        s.take("w", 1);
        for i in 0..3 {
            s.stream_chunk("w", id, json!({ "output": i }));
        }
        s.done("w", id, json!({"output": []}), true);
        assert_eq!(s.status(id).unwrap()["output"], json!([0, 1, 2]));
    }

    #[test]
    fn empty_string_errors_are_not_failures() {
        let s = state();
        let (queued, _) = s.submit(json!({"input": null}), false).unwrap();
        let id = queued["id"].as_str().unwrap();
        s.take("w", 1);
        s.done("w", id, json!({"error": ""}), false);
        assert_eq!(s.status(id).unwrap()["status"], "COMPLETED");
    }
}
