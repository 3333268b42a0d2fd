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
    // The heartbeat's own client: its connection is driven on this thread's runtime.
    let client = match crate::platform_client::build(&cfg.api_key) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("could not build the heartbeat client: {e}");
            return;
        }
    };
    let mut ticks = tokio::time::interval(cfg.ping_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = Failures::default();
    loop {
        ticks.tick().await;
        let Some(url) = cfg.urls.ping(&in_flight.snapshot()) else {
            return;
        };
        let failure = match ping(&client, &url, cfg.ping_interval * 2).await {
            Ok(status) if status.is_success() => {
                tracing::trace!("ping: {status}");
                None
            }
            Ok(status) => Some(format!("ping answered {status}")),
            Err(e) => Some(format!("Ping Request Error: {e}")),
        };
        let now = std::time::Instant::now();
        match failure.map(|why| failures.failed(why, now)) {
            Some(Some(Said::First(line))) => tracing::error!("{line}"),
            Some(Some(Said::Summary(line))) => tracing::warn!("{line}"),
            Some(Some(Said::Recovered(line))) => tracing::info!("{line}"),
            Some(None) => {}
            None => {
                if let Some(Said::Recovered(line)) = failures.succeeded(now) {
                    tracing::info!("{line}");
                }
            }
        }
    }
}

/// One GET of a ping URL: the answer's status.
async fn ping(
    client: &crate::platform_client::Client,
    url: &crate::wire::Target,
    timeout: Duration,
) -> Result<reqwest::StatusCode, crate::platform_client::RequestError> {
    client
        .send(reqwest::Method::GET, url, &[], bytes::Bytes::new(), timeout)
        .await
        .map(|answer| answer.status)
}

/// How often a still-failing heartbeat says so after its first error.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Repeated ping failures, logged as the first one, a summary every minute, and the recovery:
/// not one ERROR line per second while the platform is unreachable.
#[derive(Debug, Default)]
struct Failures {
    /// Since when pings fail, and when the last line was logged.
    since: Option<(std::time::Instant, std::time::Instant)>,
    count: u64,
}

/// What to log for a ping.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    First(String),
    Summary(String),
    Recovered(String),
}

impl Failures {
    fn failed(&mut self, why: String, now: std::time::Instant) -> Option<Said> {
        self.count += 1;
        match &mut self.since {
            None => {
                self.since = Some((now, now));
                Some(Said::First(why))
            }
            Some((since, last)) if now.duration_since(*last) >= SUMMARY_EVERY => {
                *last = now;
                Some(Said::Summary(format!(
                    "pings still failing: {} failures in {:.0?} (the latest: {why})",
                    self.count,
                    now.duration_since(*since)
                )))
            }
            Some(_) => None,
        }
    }

    fn succeeded(&mut self, now: std::time::Instant) -> Option<Said> {
        let (since, _) = self.since.take()?;
        let count = std::mem::take(&mut self.count);
        Some(Said::Recovered(format!(
            "pings recovered after {count} failure(s) over {:.0?}",
            now.duration_since(since)
        )))
    }
}

/// Tell the platform that a start-up check failed (`status=unhealthy&check=…&reason=…`),
/// waiting at most two seconds.
pub(crate) async fn report_unhealthy(
    client: &crate::platform_client::Client,
    cfg: &PlatformConfig,
    check: &str,
    reason: &str,
) {
    let Some(url) = cfg.urls.unhealthy(check, reason) else {
        return;
    };
    match ping(client, &url, Duration::from_secs(2)).await {
        Ok(_) => tracing::info!("reported the failed {check} check to the platform"),
        Err(e) => tracing::warn!("could not report the failed {check} check to the platform: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_are_summarised_then_the_recovery_said() {
        let start = std::time::Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut failures = Failures::default();
        assert_eq!(
            failures.failed("refused".into(), at(0)),
            Some(Said::First("refused".into()))
        );
        for s in 1..60 {
            assert_eq!(failures.failed("refused".into(), at(s)), None, "at {s} s");
        }
        assert_eq!(
            failures.failed("refused".into(), at(60)),
            Some(Said::Summary(
                "pings still failing: 61 failures in 60s (the latest: refused)".into()
            ))
        );
        assert_eq!(failures.failed("refused".into(), at(61)), None);
        assert_eq!(
            failures.succeeded(at(70)),
            Some(Said::Recovered(
                "pings recovered after 62 failure(s) over 70s".into()
            ))
        );
        assert_eq!(failures.succeeded(at(71)), None);
        assert!(matches!(
            failures.failed("again".into(), at(80)),
            Some(Said::First(_))
        ));
    }
}
