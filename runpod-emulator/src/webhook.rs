//! Webhooks: when a job reaches a terminal status, its status body is POSTed to the request's
//! `webhook` URL; a failed delivery (no answer or a non-2xx status) is retried twice.
//!
//! The emulator has its own client (reqwest's rustls with the system trust store): it is a
//! test tool, so reading the trust store when the first webhook is sent costs nothing a user
//! feels, unlike the worker's lazily loaded store.

use std::sync::OnceLock;
use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder};

use super::state::WebhookCall;

/// Three attempts in all, as RunPod does.
const RETRIES: usize = 2;

fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .user_agent(concat!("runpod-emulator/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| tracing::error!("could not build the webhook client: {e}"))
                .ok()
        })
        .as_ref()
}

/// Deliver `call` in the background, waiting `retry_delay` between attempts.
pub(crate) fn deliver(call: WebhookCall, retry_delay: Duration) {
    let Some(client) = client() else { return };
    tokio::spawn(async move {
        let job_id = call.body["id"].as_str().unwrap_or_default().to_owned();
        let body = serde_json::to_vec(&call.body).unwrap_or_default();
        let mut delays = ConstantBuilder::new()
            .with_delay(retry_delay)
            .with_max_times(RETRIES)
            .build();
        loop {
            let result = client
                .post(&call.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let why = match result {
                Ok(response) if response.status().is_success() => {
                    tracing::info!("emulator: job {job_id}: webhook delivered to {}", call.url);
                    return;
                }
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) => e.to_string(),
            };
            let Some(delay) = delays.next() else {
                tracing::warn!(
                    "emulator: job {job_id}: webhook to {} failed ({why}); giving up after {} attempts",
                    call.url,
                    RETRIES + 1
                );
                return;
            };
            tracing::warn!(
                "emulator: job {job_id}: webhook to {} failed ({why}); retrying in {delay:?}",
                call.url
            );
            tokio::time::sleep(delay).await;
        }
    });
}
