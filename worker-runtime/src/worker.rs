//! The production loop: take jobs while slots are free, run each on its own task, post its
//! result, and keep the set of in-flight job ids that `job_in_progress` and the heartbeat read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::client::{self, RetryPolicy, Take};
use crate::config::PlatformConfig;
use crate::handler::{Handler, Outcome, OutcomeKind};
use crate::job::Job;
use crate::logging::job_span;
use crate::protocol::{DoneBody, VERSION};
use crate::report::{ErrorReport, Failure};
use crate::shutdown::Shutdown;

/// The ids of jobs taken and not yet reported, in the order they were taken.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    ids: Mutex<Vec<String>>,
}

impl InFlight {
    fn insert(&self, id: &str) {
        self.lock().push(id.to_owned());
    }

    fn remove(&self, id: &str) {
        let mut ids = self.lock();
        if let Some(pos) = ids.iter().position(|x| x == id) {
            ids.remove(pos);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn snapshot(&self) -> Vec<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A panic while holding this lock cannot leave the list inconsistent; keep going.
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What every job task shares.
struct Shared<H> {
    handler: H,
    cfg: PlatformConfig,
    client: Client,
    in_flight: Arc<InFlight>,
    retry: RetryPolicy,
}

/// Back-off between failed job-take requests: doubles from 100 ms to 10 s, reset by success.
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

/// Run the production loop until `shutdown` fires, then let in-flight jobs finish and post
/// their results.
pub(crate) async fn run<H: Handler>(
    handler: H,
    cfg: PlatformConfig,
    client: Client,
    in_flight: Arc<InFlight>,
    concurrency: usize,
    shutdown: Shutdown,
) {
    let concurrency = concurrency.max(1);
    let shared = Arc::new(Shared {
        handler,
        cfg,
        client,
        in_flight,
        retry: RetryPolicy::default(),
    });
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new();
    tracing::info!(
        "worker {} started: taking jobs with concurrency {concurrency}",
        shared.cfg.worker_id
    );

    loop {
        // Wait for a free slot, then claim every other free one: that many jobs are asked for.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            () = shutdown.requested() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
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
                    // More jobs than free slots (a batch answer may do that): the extra ones wait
                    // for a slot inside their task, and count as in progress meanwhile.
                    let permit = permits.pop();
                    shared.in_flight.insert(job.id());
                    tasks.spawn(run_job(shared.clone(), job, permit, slots.clone()));
                }
            }
            Ok(Take::TooManyRequests(wait)) => {
                let wait = wait.unwrap_or(Duration::from_secs(5));
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
    tracing::info!("worker stopped");
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
        let _permit = match permit {
            Some(p) => p,
            None => match slots.acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        tracing::info!("Started.");
        let outcome = shared.handler.call(job).await;
        log_outcome(&outcome);
        let body = done_body(&outcome, &shared.cfg);
        let url = shared.cfg.urls.done(&id, false);
        match client::post(&shared.client, &url, &id, body, shared.retry).await {
            Ok(()) => tracing::info!("Finished."),
            Err(e) => tracing::error!("Failed to return job results: {e}"),
        }
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

/// The job-done body for an outcome: `{"output": …}`, or `{"error": "<report JSON>"}`.
pub(crate) fn done_body(outcome: &Outcome, cfg: &PlatformConfig) -> Vec<u8> {
    done_body_for(outcome, &cfg.hostname, cfg.report_worker_id())
}

pub(crate) fn done_body_for(outcome: &Outcome, hostname: &str, worker_id: &str) -> Vec<u8> {
    let body = match &outcome.kind {
        OutcomeKind::Output(raw) => DoneBody {
            output: Some(raw),
            error: None,
            stop_pod: false,
        },
        OutcomeKind::Failed(failure) => DoneBody {
            output: None,
            error: Some(report_json(failure, hostname, worker_id)),
            stop_pod: false,
        },
    };
    // Serializing a RawValue and strings cannot fail.
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| b"{\"error\":\"the worker could not encode its result\"}".to_vec())
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
