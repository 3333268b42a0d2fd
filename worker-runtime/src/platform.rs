//! The platform a worker talks to, set in code: the settings RunPod passes as environment
//! variables, checked by the same code when the worker starts.

use std::time::Duration;

use crate::config::PlatformConfig;
use crate::error::Error;

/// Where a [`Worker`](crate::Worker) takes jobs from and posts results to, set in code instead
/// of RunPod's environment variables: for tests and for programs that embed a worker
/// (`std::env::set_var` is `unsafe` in edition 2024, and races other threads). Each method
/// sets what its variable would; URLs are templates as RunPod gives them (`$ID` in the job-take
/// URL is the worker id; `$RUNPOD_POD_ID` in the others), checked when the worker starts.
///
/// ```no_run
/// use worker::{Platform, Worker};
///
/// #[tokio::main]
/// async fn main() -> Result<(), worker::Error> {
///     let echo = worker::handler_fn(|input: worker::Value, _job: worker::Job| async move {
///         Ok::<_, std::convert::Infallible>(input)
///     });
///     let platform = Platform::new(
///         "http://127.0.0.1:8000/v2/local/job-take/$ID",
///         "http://127.0.0.1:8000/v2/local/job-done/$RUNPOD_POD_ID/$ID",
///     )
///     .api_key("local")
///     .worker_id("worker-1");
///     Worker::new(echo).platform(platform).try_run().await
/// }
/// ```
#[derive(Clone, Default)]
pub struct Platform {
    vars: Vec<(String, String)>,
}

impl Platform {
    /// The job-take URL (`RUNPOD_WEBHOOK_GET_JOB`) and job-done URL
    /// (`RUNPOD_WEBHOOK_POST_OUTPUT`), the two a worker cannot run without.
    pub fn new(job_take_url: impl Into<String>, job_done_url: impl Into<String>) -> Platform {
        Platform::default()
            .set("RUNPOD_WEBHOOK_GET_JOB", job_take_url.into())
            .set("RUNPOD_WEBHOOK_POST_OUTPUT", job_done_url.into())
    }

    /// Every setting from name/value pairs named as RunPod's variables (`RUNPOD_WEBHOOK_*`,
    /// `RUNPOD_AI_API_KEY`, `RUNPOD_POD_ID`, …), such as the local emulator's
    /// `EmulatorHandle::worker_env`.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Platform {
        vars.into_iter()
            .fold(Platform::default(), |p, (k, v)| p.set(&k.into(), v.into()))
    }

    /// Where stream chunks go (`RUNPOD_WEBHOOK_POST_STREAM`); without it a streaming job's
    /// items are only in its final result.
    pub fn job_stream_url(self, url: impl Into<String>) -> Platform {
        self.set("RUNPOD_WEBHOOK_POST_STREAM", url.into())
    }

    /// Where heartbeats go (`RUNPOD_WEBHOOK_PING`); without it the worker sends none.
    pub fn ping_url(self, url: impl Into<String>) -> Platform {
        self.set("RUNPOD_WEBHOOK_PING", url.into())
    }

    /// The key sent in `Authorization` (`RUNPOD_AI_API_KEY`). Never logged.
    pub fn api_key(self, key: impl Into<String>) -> Platform {
        self.set("RUNPOD_AI_API_KEY", key.into())
    }

    /// The worker's id (`RUNPOD_POD_ID`): substituted into the URLs and named in error reports.
    /// Without it the worker makes up a random one.
    pub fn worker_id(self, id: impl Into<String>) -> Platform {
        self.set("RUNPOD_POD_ID", id.into())
    }

    /// The host name named in error reports (`RUNPOD_POD_HOSTNAME`).
    pub fn hostname(self, name: impl Into<String>) -> Platform {
        self.set("RUNPOD_POD_HOSTNAME", name.into())
    }

    /// Time between heartbeats (`RUNPOD_PING_INTERVAL`, default 10 s); at least 1 ms.
    pub fn ping_interval(self, every: Duration) -> Platform {
        let ms = every.as_millis().clamp(1, u64::MAX as u128);
        self.set("RUNPOD_PING_INTERVAL", ms.to_string())
    }

    fn set(mut self, name: &str, value: String) -> Platform {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value));
        self
    }

    /// Checked as the environment is.
    pub(crate) fn config(&self) -> Result<PlatformConfig, Error> {
        PlatformConfig::from_env(&self.vars)
    }
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.vars {
            if name == "RUNPOD_AI_API_KEY" {
                map.entry(name, &"<redacted>");
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_as_the_environment_is() {
        let platform = Platform::new("http://h/v2/ep/job-take/$ID", "http://h/v2/ep/done/$ID")
            .api_key("secret")
            .worker_id("w1")
            .ping_interval(Duration::from_millis(250));
        let cfg = platform.config().unwrap();
        assert_eq!(cfg.worker_id, "w1");
        assert_eq!(cfg.ping_interval, Duration::from_millis(250));
        assert_eq!(
            cfg.urls.take(1, false).as_str(),
            "http://h/v2/ep/job-take/w1?job_in_progress=0"
        );
        assert!(!format!("{platform:?}").contains("secret"));
        let bad = Platform::new("ftp://h/take", "http://h/done")
            .config()
            .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "RUNPOD_WEBHOOK_GET_JOB=\"ftp://h/take\" must be an http or https URL, not ftp"
        );
        // A later value replaces an earlier one.
        let from = Platform::from_vars([
            ("RUNPOD_WEBHOOK_GET_JOB", "http://a/$ID"),
            ("RUNPOD_WEBHOOK_POST_OUTPUT", "http://a/done/$ID"),
        ])
        .worker_id("x")
        .worker_id("y");
        assert_eq!(from.config().unwrap().worker_id, "y");
    }
}
