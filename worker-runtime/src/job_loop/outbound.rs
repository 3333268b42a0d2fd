//! Progress updates and stream chunks to the platform over HTTP (local test mode has its own
//! `Outbound` that logs them).

use std::time::Duration;

use crate::platform_client::Client;

use crate::control::{BoxFuture, Outbound};
use crate::platform_client;
use crate::retry::RetryPolicy;
use crate::wire::Urls;

/// How long a progress update is retried before the next update (or the result) supersedes
/// it: progress is advisory.
const PROGRESS_RETRY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(super) struct HttpOutbound {
    pub(super) client: Client,
    pub(super) urls: Urls,
    pub(super) retry: RetryPolicy,
}

impl Outbound for HttpOutbound {
    fn progress(&self, job_id: &str, body: Vec<u8>) -> BoxFuture<'_, ()> {
        let url = self.urls.done(job_id, false);
        let job_id = job_id.to_owned();
        let retry = RetryPolicy {
            total: PROGRESS_RETRY,
            ..self.retry
        };
        Box::pin(async move {
            if let Err(e) = platform_client::post(&self.client, &url, &job_id, body, retry).await {
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
            platform_client::post(&self.client, &url, &job_id, body, self.retry)
                .await
                .map_err(|e| format!("a stream chunk could not be delivered: {e}"))
        })
    }
}
