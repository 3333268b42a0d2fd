//! Webhooks: when a job reaches a terminal status, its status body is POSTed to the request's
//! `webhook` URL; a failed delivery (no answer or a non-2xx status) is retried twice.

use std::sync::OnceLock;
use std::time::Duration;

use super::state::WebhookCall;

/// Three attempts in all, as RunPod does.
const ATTEMPTS: u32 = 3;

fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let tls = crate::tls::client_config()
                .map_err(|e| tracing::error!("could not set up TLS for webhooks: {e}"))
                .ok()?;
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(Duration::from_secs(10))
                .user_agent(format!("runpod-emulator/{}", crate::protocol::VERSION))
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
        for attempt in 1..=ATTEMPTS {
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
            if attempt == ATTEMPTS {
                tracing::warn!(
                    "emulator: job {job_id}: webhook to {} failed ({why}); giving up after {ATTEMPTS} attempts",
                    call.url
                );
                return;
            }
            tracing::warn!(
                "emulator: job {job_id}: webhook to {} failed ({why}); retrying in {retry_delay:?}",
                call.url
            );
            tokio::time::sleep(retry_delay).await;
        }
    });
}
