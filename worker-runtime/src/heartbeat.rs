//! The heartbeat: a GET on the ping URL every `RUNPOD_PING_INTERVAL` with the in-flight job ids.
//! It runs on its own OS thread with its own small runtime, so handlers that hog the async
//! threads (or block them) cannot delay it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::PlatformConfig;
use crate::job_loop::InFlight;

/// Start the heartbeat if the platform configured it; log why not otherwise.
pub(crate) fn start(cfg: &PlatformConfig, in_flight: Arc<InFlight>) {
    if cfg.api_key.is_empty() {
        tracing::debug!(
            "Not deployed on RunPod serverless (RUNPOD_AI_API_KEY is empty): pings will not be sent."
        );
        return;
    }
    if cfg.pod_id.is_none() {
        tracing::info!("Not running on RunPod (RUNPOD_POD_ID is not set): pings will not be sent.");
        return;
    }
    if !cfg.urls.has_ping() {
        tracing::error!("RUNPOD_WEBHOOK_PING is not set: pings will not be sent.");
        return;
    }
    let cfg = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name("worker-heartbeat".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(
                        "could not start the heartbeat runtime: {e}; pings will not be sent"
                    );
                    return;
                }
            };
            runtime.block_on(ping_forever(cfg, in_flight));
        });
    if let Err(e) = spawned {
        tracing::error!("could not start the heartbeat thread: {e}; pings will not be sent");
    }
}

async fn ping_forever(cfg: PlatformConfig, in_flight: Arc<InFlight>) {
    let client = match crate::client::build(&cfg.api_key) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("could not build the heartbeat client: {e}");
            return;
        }
    };
    let mut ticks = tokio::time::interval(cfg.ping_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(url) = cfg.urls.ping(&in_flight.snapshot()) else {
            return;
        };
        match client.get(url).timeout(cfg.ping_interval * 2).send().await {
            Ok(response) if response.status().is_success() => {
                tracing::trace!("ping: {}", response.status())
            }
            Ok(response) => tracing::warn!("ping answered {}", response.status()),
            Err(e) => tracing::error!("Ping Request Error: {}", crate::error::chain(&e)),
        }
    }
}

/// Tell the platform that a start-up check failed (`status=unhealthy&check=…&reason=…`),
/// waiting at most two seconds.
pub(crate) async fn report_unhealthy(
    client: &reqwest::Client,
    cfg: &PlatformConfig,
    check: &str,
    reason: &str,
) {
    let Some(url) = cfg.urls.unhealthy(check, reason) else {
        return;
    };
    match client.get(url).timeout(Duration::from_secs(2)).send().await {
        Ok(_) => tracing::info!("reported the failed {check} check to the platform"),
        Err(e) => tracing::warn!("could not report the failed {check} check to the platform: {e}"),
    }
}
