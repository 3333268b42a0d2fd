//! Production start-up as runpod 2.0 supervises it, done so that no job is lost: while
//! `#[worker::init]` runs, the worker already takes jobs (up to its concurrency) and holds them
//! behind a gate, in the heartbeat's list. When init succeeds they are the job loop's first
//! jobs; when it fails (or the worker is stopped first), each is posted failed with the reason,
//! so the caller that caused the scale-up learns why instead of waiting for a TTL.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::platform_client::Client;

use crate::config::PlatformConfig;
use crate::control::Control;
use crate::final_body::encode_final;
use crate::handler::Outcome;
use crate::job::Job;
use crate::job_loop::{EMPTY_TAKE_FLOOR, InFlight, LAST_TAKE};
use crate::platform_client::{self, Take};
use crate::report::Failure;
use crate::retry::{Backoff, RetryPolicy};
use crate::shutdown::Shutdown;

/// Where the gate's job-takes left off, for the job loop to go on from: the jobs held, the
/// back-off after failed takes, and the earliest time of the next take.
#[derive(Debug, Default)]
pub(crate) struct Handover {
    pub(crate) jobs: Vec<Job>,
    pub(crate) backoff: Backoff,
    pub(crate) next_take: Option<Instant>,
}

/// How init ended, seen from the gate.
pub(crate) enum Ended<R> {
    /// Init returned (successfully or not).
    Init(R),
    /// SIGTERM/SIGINT came first.
    Stopped,
}

/// Run `init` while taking up to `capacity` jobs. Returns how init ended and the jobs held (also
/// in `in_flight`). On success a take still in flight is awaited (its answer may hold jobs, and
/// there is nothing else to run meanwhile); otherwise, or once the worker is stopped, it gets
/// [`LAST_TAKE`].
pub(crate) async fn take_while<R>(
    init: impl Future<Output = R>,
    success: impl Fn(&R) -> bool,
    (client, cfg): (&Client, &PlatformConfig),
    capacity: usize,
    in_flight: &InFlight,
    shutdown: &Shutdown,
) -> (Ended<R>, Handover) {
    tokio::pin!(init);
    let mut held: Vec<Job> = Vec::new();
    let mut backoff = Backoff::new();
    let mut next_take = None;
    let hold = |held: &mut Vec<Job>, taken: Option<Result<Take, platform_client::RequestError>>| {
        if let Some(Ok(Take::Jobs(jobs))) = taken {
            for job in jobs {
                in_flight.insert(&job);
                held.push(job);
            }
        }
    };
    let ended = loop {
        // One answer with jobs is enough: a take still in flight when init succeeds would hold
        // those jobs back for a whole long-poll.
        if !held.is_empty() || held.len() >= capacity {
            tokio::select! {
                result = &mut init => break Ended::Init(result),
                () = shutdown.requested() => break Ended::Stopped,
            }
        }
        let asked = Instant::now();
        let take = platform_client::take(client, cfg, capacity - held.len(), !held.is_empty());
        tokio::pin!(take);
        let taken = tokio::select! {
            result = &mut init => {
                let bound = if success(&result) { None } else { Some(LAST_TAKE) };
                // Nothing is held here (see above): on success the take in flight is the loop's
                // first, awaited; once the worker is stopped, for [`LAST_TAKE`] at most (its
                // answer may already hold jobs, which then run in the shutdown grace).
                let answer = match bound {
                    None => tokio::select! {
                        answer = &mut take => Some(answer),
                        () = shutdown.requested() => {
                            tokio::time::timeout(LAST_TAKE, take).await.ok()
                        }
                    },
                    Some(bound) => tokio::time::timeout(bound, take).await.ok(),
                };
                if let Some(Err(e)) = &answer {
                    let wait = backoff.next_delay();
                    tracing::warn!("Failed to get job: {e}; retrying in {wait:?}");
                    next_take = Some(Instant::now() + wait);
                }
                hold(&mut held, answer);
                break Ended::Init(result);
            }
            () = shutdown.requested() => {
                hold(&mut held, tokio::time::timeout(LAST_TAKE, take).await.ok());
                break Ended::Stopped;
            }
            taken = &mut take => taken,
        };
        let wait = match &taken {
            Ok(Take::Jobs(jobs)) if !jobs.is_empty() => {
                backoff.reset();
                None
            }
            Ok(Take::Jobs(_) | Take::BadRequest) => {
                backoff.reset();
                EMPTY_TAKE_FLOOR.checked_sub(asked.elapsed())
            }
            Ok(Take::TooManyRequests(wait)) => Some(
                wait.unwrap_or(Duration::from_secs(5))
                    .max(backoff.next_delay()),
            ),
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!("Failed to get job while init runs: {e}; retrying in {wait:?}");
                Some(wait)
            }
        };
        hold(&mut held, Some(taken));
        if let Some(wait) = wait {
            // The job loop keeps this pace if init ends meanwhile.
            next_take = Some(Instant::now() + wait);
            tokio::select! {
                result = &mut init => break Ended::Init(result),
                () = shutdown.requested() => break Ended::Stopped,
                () = tokio::time::sleep(wait) => {}
            }
        }
        next_take = None;
    };
    if !held.is_empty() {
        tracing::info!("{} job(s) taken while init ran", held.len());
    }
    let handover = Handover {
        jobs: held,
        backoff,
        next_take,
    };
    (ended, handover)
}

/// Post `failure` as the result of every held job (each with a short retry), then take them out
/// of the in-flight set.
pub(crate) async fn fail_held(
    held: Vec<Job>,
    failure: &Failure,
    (client, cfg): (&Client, &PlatformConfig),
    in_flight: &InFlight,
    max_output_bytes: usize,
) {
    let retry = RetryPolicy {
        total: Duration::from_secs(10),
        attempt: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    for job in held {
        let id = job.id().to_owned();
        let control: &Control = job.control();
        let (_, bytes, is_stream) = encode_final(
            Outcome::failed(failure.clone()),
            control,
            false,
            (cfg.hostname.as_str(), cfg.report_worker_id()),
            max_output_bytes,
        );
        let url = cfg.urls.done(&id, is_stream);
        match platform_client::post(client, &url, &id, bytes, retry).await {
            Ok(()) => tracing::info!("job {id}: reported failed ({})", failure.error_type()),
            Err(e) => tracing::error!("job {id}: could not report that the worker failed: {e}"),
        }
        in_flight.remove(&id);
    }
}
