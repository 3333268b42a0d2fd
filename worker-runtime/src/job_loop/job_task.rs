//! One job's task: wait for a slot if the job came beyond the free ones, run the handler
//! (dropped on cancellation, failed when the shutdown grace runs out), then post the result
//! with retries. The job leaves the in-flight set only after its post.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::Shared;
use crate::client;
use crate::final_body::{encode_final, log_outcome};
use crate::handler::{Handler, Outcome};
use crate::job::Job;
use crate::logging::job_span;
use crate::report::Failure;

pub(super) async fn run_job<H: Handler>(
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
            let call = shared.handler.call(job);
            tokio::pin!(call);
            tokio::select! {
                biased;
                () = control.cancelled() => {
                    // The handler sees the cancel (`job.cancelled()` resolves) and gets a short,
                    // bounded time to clean up; then its future is dropped, so async work stops
                    // at its next await. Its outcome is discarded either way.
                    let grace = shared.limits.cancel_grace;
                    if !grace.is_zero() && tokio::time::timeout(grace, &mut call).await.is_err() {
                        tracing::debug!("the cancelled handler was still running after {grace:?}; dropped");
                    }
                    None
                }
                () = shared.shutdown.grace_expired() => Some(Outcome::failed(Failure::new(
                    "WorkerShutdown",
                    format!(
                        "worker shutting down: the job did not finish within the {:?} grace period \
                         (WORKER_SHUTDOWN_GRACE_SECONDS)",
                        shared.limits.shutdown_grace
                    ),
                ))),
                outcome = &mut call => Some(outcome),
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
        if stop_pod && shared.options.exit_on_refresh {
            tracing::info!("the worker asked to be refreshed: taking no new jobs, exiting once running jobs finish");
            shared.stop_taking.trigger();
        } else if stop_pod {
            tracing::info!(
                "the job asked for a fresh worker (stopPod): on RunPod this worker would exit \
                 now; the local API keeps serving"
            );
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
