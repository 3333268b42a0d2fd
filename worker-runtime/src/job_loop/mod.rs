//! The production loop: take jobs while slots are free, run each on its own task, post its
//! result, and keep the set of in-flight jobs that `job_in_progress`, the heartbeat and the
//! job-stop channel read.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the take loop: wait for a slot, claim the free ones, take that many jobs |
//! | `slots.rs` | the job slots, resizable for a dynamic concurrency |
//! | `in_flight.rs` | the jobs taken and not yet reported |
//! | `job_task.rs` | one job: handler, cancellation, shutdown grace, the result post |
//! | `job_stop.rs` | the job-stop long-poll that cancels listed jobs |
//! | `outbound.rs` | progress updates and stream chunks over HTTP |

mod in_flight;
mod job_stop;
mod job_task;
mod outbound;
mod slots;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::platform_client::Client;
use tokio::task::JoinSet;

use self::job_stop::watch_stops;
use self::job_task::run_job;
use self::outbound::HttpOutbound;
use self::slots::Slots;
use crate::config::PlatformConfig;
use crate::control::Outbound;
use crate::handler::Handler;
use crate::limits::Limits;
use crate::platform_client::{self, Take};
use crate::retry::RetryPolicy;
use crate::shutdown::{Shutdown, ShutdownTrigger};

pub(crate) use self::in_flight::InFlight;
#[cfg(feature = "load-balancing")]
pub(crate) use self::job_task::hold_until_thread_returns;
pub(crate) use self::slots::Concurrency;

/// The loop's options (from `#[worker::handler(…)]` or the `Worker` builder).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopOptions {
    pub(crate) concurrency: Concurrency,
    /// Every job asks the platform to recycle the worker (`stopPod: true`), then the worker exits.
    pub(crate) refresh_worker: bool,
    /// A streaming job's final output is every item instead of `[]`.
    pub(crate) aggregate_stream: bool,
    /// A refresh (`stopPod`) ends the loop, as RunPod then stops the worker. Off under
    /// `--rp_serve_api`, whose local API keeps serving.
    pub(crate) exit_on_refresh: bool,
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
}

/// Run the production loop until `shutdown` fires (or a job asks for a refresh), then let
/// in-flight jobs finish and post their results.
pub(crate) async fn run<H: Handler>(
    handler: H,
    (cfg, client): (PlatformConfig, Client),
    in_flight: Arc<InFlight>,
    options: LoopOptions,
    limits: Limits,
    (stop_taking, shutdown): (ShutdownTrigger, Shutdown),
    handover: crate::init_gate::Handover,
) {
    let retry = RetryPolicy {
        total: limits.post_retry,
        attempt: limits.post_attempt,
        ..RetryPolicy::default()
    };
    let outbound = Arc::new(HttpOutbound {
        client: client.clone(),
        urls: cfg.urls.clone(),
        retry,
    });
    let mut current = options.concurrency.initial();
    let modifier = match options.concurrency {
        Concurrency::Fixed(_) => None,
        Concurrency::Dynamic(f) => Some(f),
    };
    // The slots count jobs held; a batching handler holds several per unit of concurrency.
    let held = handler.jobs_to_hold(current).max(1);
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
    });
    let mut slots = Slots::new(held);
    let mut tasks = JoinSet::new();
    let crate::init_gate::Handover {
        jobs: initial,
        mut backoff,
        next_take,
    } = handover;
    let mut bad_requests = BadRequests::default();
    if held == current {
        tracing::info!(
            "worker {} started: taking jobs with concurrency {current}",
            shared.cfg.worker_id
        );
    } else {
        tracing::info!(
            "worker {} started: taking jobs with concurrency {current}, holding up to {held} jobs",
            shared.cfg.worker_id
        );
    }
    let stops = tokio::spawn(watch_stops(shared.clone()));
    // Jobs taken while init ran (already in flight): they run first.
    for job in initial {
        job.control()
            .attach(shared.outbound.clone(), shared.options.aggregate_stream);
        let permit = slots.semaphore.clone().try_acquire_owned().ok();
        tasks.spawn(run_job(
            shared.clone(),
            job,
            permit,
            slots.semaphore.clone(),
        ));
    }

    // Where the job-takes made while init ran left off: their pace after failures.
    if let Some(at) = next_take {
        shutdown
            .sleep(at.saturating_duration_since(std::time::Instant::now()))
            .await;
    }

    'taking: loop {
        // A select below may find a free slot and a shutdown both ready: stopping wins.
        if shutdown.is_requested() {
            break;
        }
        if let Some(modifier) = modifier {
            current = modifier(current).max(1);
            slots.resize(shared.handler.jobs_to_hold(current));
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
                        slots.resize(shared.handler.jobs_to_hold(current));
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
        let asked = std::time::Instant::now();
        let take = platform_client::take(&shared.client, &shared.cfg, free, job_in_progress);
        tokio::pin!(take);
        let taken = tokio::select! {
            taken = &mut take => taken,
            () = shutdown.requested() => {
                // The platform may already have handed this take jobs (it answers a long-poll
                // the moment it assigns one): abandoning it would leave them to its lost-worker
                // recovery. Wait for the answer while running jobs finish, then [`LAST_TAKE`]
                // more, within the grace; the jobs it holds run as any others do.
                let drained = async {
                    while tasks.join_next().await.is_some() {}
                    tokio::time::sleep(LAST_TAKE).await;
                };
                tokio::select! {
                    taken = &mut take => taken,
                    () = drained => break,
                    () = shutdown.grace_expired() => break,
                }
            }
        };
        match taken {
            Ok(Take::Jobs(jobs)) if jobs.is_empty() => {
                backoff.reset();
                drop(permits);
                empty_floor(&shutdown, asked).await;
            }
            Ok(Take::BadRequest) => {
                backoff.reset();
                bad_requests.seen(&shared.cfg.urls.take(free, job_in_progress));
                drop(permits);
                empty_floor(&shutdown, asked).await;
            }
            Ok(Take::Jobs(jobs)) => {
                backoff.reset();
                bad_requests.reset();
                tracing::debug!("took {} job(s)", jobs.len());
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
                let step = backoff.next_delay();
                let wait = wait.map_or(Duration::from_secs(5), |w| w.max(step));
                tracing::warn!(
                    "job-take: the platform answered 429 Too Many Requests; waiting {wait:?}"
                );
                drop(permits);
                shutdown.sleep(wait).await;
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::error!("Failed to get job: {e}; retrying in {wait:?}");
                drop(permits);
                shutdown.sleep(wait).await;
            }
        }
    }

    // Tasks of jobs already reported are only reaped before a take; do not count them.
    while tasks.try_join_next().is_some() {}
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

/// How long a job-take still in flight when the worker stops (SIGTERM, a refresh, init's end
/// in `init_gate`) may take to answer once nothing else is running: the platform answers a
/// long-poll as soon as it hands out a job, so an answer holding jobs is at most a round trip
/// away, and an idle worker's exit is not held for a whole long-poll.
pub(crate) const LAST_TAKE: Duration = Duration::from_secs(2);

/// The least time between two job-takes that came back empty (here and in `init_gate`): a platform that answers at once
/// instead of holding the request (a misconfigured URL, a platform that does not long-poll)
/// must not get a hot loop of requests.
pub(crate) const EMPTY_TAKE_FLOOR: Duration = Duration::from_millis(100);

async fn empty_floor(shutdown: &Shutdown, asked: std::time::Instant) {
    let elapsed = asked.elapsed();
    if elapsed < EMPTY_TAKE_FLOOR {
        shutdown.sleep(EMPTY_TAKE_FLOOR - elapsed).await;
    }
}

/// job-take answering 400: normal for an idle worker with FlashBoot, a misconfiguration if it
/// never ends. Said once, then every few minutes while it lasts.
#[derive(Debug, Default)]
struct BadRequests {
    count: u64,
    said: Option<std::time::Instant>,
}

impl BadRequests {
    const EVERY: Duration = Duration::from_secs(300);

    fn seen(&mut self, url: &crate::wire::Target) {
        self.count += 1;
        if self.said.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            self.said = Some(std::time::Instant::now());
            // Shown without the query and the credentials.
            let shown = url.to_url().map_or_else(
                |_| url.path().to_owned(),
                |mut shown| {
                    shown.set_query(None);
                    let _ = shown.set_password(None);
                    let _ = shown.set_username("");
                    shown.to_string()
                },
            );
            tracing::info!(
                "job-take answered 400 Bad Request ({} time(s) so far) at {shown}: RunPod answers \
                 that to an idle worker with FlashBoot; if this worker never gets a job, check \
                 RUNPOD_WEBHOOK_GET_JOB",
                self.count
            );
        }
    }

    fn reset(&mut self) {
        self.count = 0;
        self.said = None;
    }
}
