//! The job-stop long-poll (protocol §6.3): while jobs are in flight, ask the platform which to
//! cancel, and cancel them. It keeps polling after SIGTERM, so a cancel that arrives during the
//! shutdown grace period is honoured; the loop stops it once every job has ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::handler::Handler;
use crate::logging::job_span;
use crate::platform_client::{self, Stop};
use crate::retry::Backoff;

/// A platform that answers job-stop at once instead of long-polling is asked at most this often.
const MIN_PERIOD: Duration = Duration::from_secs(1);
/// The wait after a 429, as the Python SDK.
const TOO_MANY_REQUESTS_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn watch_stops<H: Handler>(shared: Arc<Shared<H>>) {
    let Some(url) = shared.cfg.urls.stop() else {
        tracing::warn!("the job-take URL has no /job-take/ segment: per-job cancellation is off");
        return;
    };
    let mut backoff = Backoff::new();
    loop {
        shared.in_flight.wait_non_empty().await;
        let asked = Instant::now();
        let answer = platform_client::stop(&shared.client, url).await;
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
                if none {
                    tokio::time::sleep(MIN_PERIOD.saturating_sub(asked.elapsed())).await;
                }
            }
            Ok(Stop::TooManyRequests) => tokio::time::sleep(TOO_MANY_REQUESTS_WAIT).await,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!("job-stop request failed: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
