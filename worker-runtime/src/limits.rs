//! The worker's own limits and time budgets (not set by RunPod): how large a result may be,
//! how long result posts keep retrying, how long a shutdown waits for running jobs.

use std::time::Duration;

use crate::config::Env;
use crate::error::Error;

/// Read once at start-up from `WORKER_*` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `WORKER_MAX_OUTPUT_BYTES`: the largest job-done body the platform accepts (default
    /// 20 MB). A larger result fails the job with a message instead of a 400 nobody sees.
    pub(crate) max_output_bytes: usize,
    /// `WORKER_POST_RETRY_SECONDS`: how long a result post keeps retrying (default 300 s).
    pub(crate) post_retry: Duration,
    /// `WORKER_POST_ATTEMPT_SECONDS`: the longest one post attempt waits for its answer
    /// (default 30 s), so a stalled connection is given up and retried on a fresh one.
    pub(crate) post_attempt: Duration,
    /// `WORKER_SHUTDOWN_GRACE_SECONDS`: after SIGTERM, how long running jobs may take before
    /// they are reported failed (default 30 s).
    pub(crate) shutdown_grace: Duration,
    /// `WORKER_CANCEL_GRACE_MS`: after a job is cancelled, how long its handler keeps running
    /// so that code racing `job.cancelled()` can clean up, before it is dropped (default
    /// 1000 ms; 0 drops it at once).
    pub(crate) cancel_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_output_bytes: 20_000_000,
            post_retry: Duration::from_secs(300),
            post_attempt: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_millis(1000),
        }
    }
}

impl Limits {
    pub(crate) fn from_env(env: &impl Env) -> Result<Limits, Error> {
        let defaults = Limits::default();
        Ok(Limits {
            max_output_bytes: number(env, "WORKER_MAX_OUTPUT_BYTES", "bytes")?
                .map_or(defaults.max_output_bytes, |n| n as usize),
            post_retry: number(env, "WORKER_POST_RETRY_SECONDS", "seconds")?
                .map_or(defaults.post_retry, Duration::from_secs),
            post_attempt: number(env, "WORKER_POST_ATTEMPT_SECONDS", "seconds")?
                .map_or(defaults.post_attempt, Duration::from_secs),
            shutdown_grace: number(env, "WORKER_SHUTDOWN_GRACE_SECONDS", "seconds")?
                .map_or(defaults.shutdown_grace, Duration::from_secs),
            cancel_grace: whole(env, "WORKER_CANCEL_GRACE_MS", "milliseconds")?
                .map_or(defaults.cancel_grace, Duration::from_millis),
        })
    }
}

/// Limits set in code on a [`Worker`](crate::Worker): each replaces its environment variable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimitOverrides {
    pub(crate) max_output_bytes: Option<usize>,
    pub(crate) post_retry: Option<Duration>,
    pub(crate) post_attempt: Option<Duration>,
    pub(crate) shutdown_grace: Option<Duration>,
    pub(crate) cancel_grace: Option<Duration>,
}

impl LimitOverrides {
    /// The limits from the environment, then these on top.
    pub(crate) fn apply(self, env: &impl Env) -> Result<Limits, Error> {
        let from_env = Limits::from_env(env)?;
        Ok(Limits {
            max_output_bytes: self.max_output_bytes.unwrap_or(from_env.max_output_bytes),
            post_retry: self.post_retry.unwrap_or(from_env.post_retry),
            post_attempt: self.post_attempt.unwrap_or(from_env.post_attempt),
            shutdown_grace: self.shutdown_grace.unwrap_or(from_env.shutdown_grace),
            cancel_grace: self.cancel_grace.unwrap_or(from_env.cancel_grace),
        })
    }
}

/// A whole number, 0 allowed.
fn whole(env: &impl Env, name: &str, unit: &str) -> Result<Option<u64>, Error> {
    match env.var(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(raw) => {
            raw.trim().parse::<u64>().map(Some).map_err(|_| {
                Error::config(format!("{name}={raw:?} is not a whole number of {unit}"))
            })
        }
    }
}

fn number(env: &impl Env, name: &str, unit: &str) -> Result<Option<u64>, Error> {
    match env.var(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::config(format!(
                "{name}={raw:?} is not a positive whole number of {unit}"
            ))),
        },
    }
}

/// A size in bytes for people: `23.4 MB`.
pub(crate) fn human_size(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1_000_000.0)
    } else if bytes >= 1_000 {
        format!("{:.1} kB", bytes as f64 / 1_000.0)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let none = |_: &str| None;
        assert_eq!(Limits::from_env(&none).unwrap(), Limits::default());
        let set = |name: &str| match name {
            "WORKER_MAX_OUTPUT_BYTES" => Some("1000".to_owned()),
            "WORKER_SHUTDOWN_GRACE_SECONDS" => Some("5".to_owned()),
            "WORKER_CANCEL_GRACE_MS" => Some("0".to_owned()),
            _ => None,
        };
        let limits = Limits::from_env(&set).unwrap();
        assert_eq!(limits.max_output_bytes, 1000);
        assert_eq!(limits.shutdown_grace, Duration::from_secs(5));
        assert_eq!(limits.cancel_grace, Duration::ZERO);
        let bad = |name: &str| (name == "WORKER_CANCEL_GRACE_MS").then(|| "1s".to_owned());
        assert_eq!(
            Limits::from_env(&bad).unwrap_err().to_string(),
            "WORKER_CANCEL_GRACE_MS=\"1s\" is not a whole number of milliseconds"
        );
        let bad = |name: &str| (name == "WORKER_POST_RETRY_SECONDS").then(|| "soon".to_owned());
        assert_eq!(
            Limits::from_env(&bad).unwrap_err().to_string(),
            "WORKER_POST_RETRY_SECONDS=\"soon\" is not a positive whole number of seconds"
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(20_000_000), "20.0 MB");
        assert_eq!(human_size(23_456_789), "23.5 MB");
        assert_eq!(human_size(1_500), "1.5 kB");
        assert_eq!(human_size(12), "12 bytes");
    }
}
