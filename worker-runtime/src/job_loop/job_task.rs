//! One job's task: wait for a slot if the job came beyond the free ones, run the handler
//! (dropped on cancellation after its clean-up grace, failed when the shutdown grace runs out),
//! then post the result with retries. The job holds its slot until its result is acknowledged
//! (or given up) and a blocking handler's thread has returned, so the worker never holds, nor
//! runs, more jobs than its concurrency; it leaves the in-flight set last, even on a panic.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::{InFlight, Shared};
use crate::final_body::{encode_final, log_outcome};
use crate::handler::{Handler, Outcome};
use crate::job::Job;
use crate::logging::job_span;
use crate::platform_client;
use crate::report::Failure;

pub(super) async fn run_job<H: Handler>(
    shared: Arc<Shared<H>>,
    job: Job,
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
) {
    let id = job.id().to_owned();
    let span = job_span(&job);
    let _leaves = LeavesInFlight {
        in_flight: shared.in_flight.clone(),
        id: id.clone(),
    };
    async {
        let slot = match permit {
            Some(p) => p,
            None => match slots.acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let control = job.control().clone();
        let mut thread = None;
        let outcome = if control.is_cancelled() {
            None
        } else {
            tracing::info!("Started.");
            let mut call = shared.handler.call(job);
            thread = call.take_thread();
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
            hold_until_thread_returns(thread, slot, &shared.shutdown).await;
            return;
        };
        let outcome = outcome.with_job_logs();
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
        // The job keeps its slot through the post: the platform counts it until its result
        // arrives, and a worker whose posts keep failing stops taking jobs.
        // After SIGTERM's grace period the post gets one more attempt's time, then the worker
        // gives up on it: RunPod kills a worker that does not stop.
        let last_chance = async {
            shared.shutdown.grace_expired().await;
            tokio::time::sleep(shared.retry.attempt).await;
        };
        let posted = tokio::select! {
            posted = platform_client::post(&shared.client, &url, &id, bytes, shared.retry) => Some(posted),
            () = last_chance => None,
        };
        let Some(posted) = posted else {
            tracing::error!(
                "Failed to return job results: the worker is shutting down and the platform did \
                 not take the result within the grace period (WORKER_SHUTDOWN_GRACE_SECONDS) and \
                 one more attempt (WORKER_POST_ATTEMPT_SECONDS); job {id} was not delivered"
            );
            drop(slot);
            return;
        };
        match posted {
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
        hold_until_thread_returns(thread, slot, &shared.shutdown).await;
    }
    .instrument(span)
    .await;
}

/// Keep the slot until a blocking handler's thread has returned: a cancelled or timed-out job
/// is reported at once, but its thread may still be computing (on a GPU, holding memory), and
/// the next job must not start beside it. Once the worker is shutting down no job will start,
/// so the process does not wait for such a thread to exit.
pub(crate) async fn hold_until_thread_returns(
    thread: Option<tokio::sync::oneshot::Receiver<()>>,
    slot: OwnedSemaphorePermit,
    shutdown: &crate::shutdown::Shutdown,
) {
    if let Some(mut thread) = thread
        && thread
            .try_recv()
            .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Empty)
    {
        tracing::info!(
            "the blocking handler is still running after its job ended; its slot is held until \
             it returns (check job.is_cancelled() in long blocking work)"
        );
        tokio::select! {
            _ = thread => {}
            () = shutdown.requested() => {}
        }
    }
    drop(slot);
}

/// Removes the job from the in-flight set when its task ends, also when it panicked (the
/// heartbeat would otherwise report it forever).
struct LeavesInFlight {
    in_flight: Arc<InFlight>,
    id: String,
}

impl Drop for LeavesInFlight {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("job {}: its task panicked", self.id);
        }
        self.in_flight.remove(&self.id);
    }
}
