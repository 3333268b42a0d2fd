//! The job context handed to handlers: who the job is, and the job exactly as RunPod sent it.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::control::Control;

/// One job taken from the queue, as a handler sees it.
///
/// A handler asks for it by taking a `&Job` (or `Job`) parameter. It is cheap to clone and can be
/// built in tests with [`Job::new`] or [`Job::from_json`], so handlers that use it stay callable
/// from ordinary unit tests.
///
/// ```
/// let job = worker::Job::new("job-1", serde_json::json!({"prompt": "hi"}));
/// assert_eq!(job.id(), "job-1");
/// assert_eq!(job.input()["prompt"], "hi");
/// ```
#[derive(Clone)]
pub struct Job {
    inner: Arc<JobInner>,
}

struct JobInner {
    id: String,
    /// The whole job object (`id`, `input`, and whatever else the platform sent).
    raw: Value,
    control: Arc<Control>,
    /// The job's download directory, removed when the last clone of the job is dropped.
    #[cfg(feature = "download")]
    downloads:
        std::sync::OnceLock<Result<crate::download::Downloads, crate::download::DownloadError>>,
}

/// Why a JSON value is not a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvalidJob {
    NotAnObject,
    MissingId,
    IdNotAString,
    MissingInput,
}

impl fmt::Display for InvalidJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidJob::NotAnObject => "a job must be a JSON object with `id` and `input`",
            InvalidJob::MissingId => "the job has no `id` field",
            InvalidJob::IdNotAString => "the job's `id` is not a string",
            InvalidJob::MissingInput => "the job has no `input` field",
        })
    }
}

impl Job {
    /// A job with the given id and input, as if the platform had sent
    /// `{"id": id, "input": input}`. Meant for tests.
    pub fn new(id: impl Into<String>, input: Value) -> Job {
        let id = id.into();
        let raw = serde_json::json!({ "id": id, "input": input });
        Job::from_parts(id, raw)
    }

    /// A job from the whole job object the platform sends (`{"id": …, "input": …, …}`).
    ///
    /// Fails with a message saying what is missing when `id` (a string) or `input` is absent.
    pub fn from_json(raw: Value) -> Result<Job, crate::Error> {
        Job::parse(raw).map_err(|e| crate::Error::invalid_job(e.to_string()))
    }

    pub(crate) fn parse(raw: Value) -> Result<Job, InvalidJob> {
        let object = raw.as_object().ok_or(InvalidJob::NotAnObject)?;
        let id = match object.get("id") {
            None => return Err(InvalidJob::MissingId),
            Some(Value::String(id)) => id.clone(),
            Some(_) => return Err(InvalidJob::IdNotAString),
        };
        if !object.contains_key("input") {
            return Err(InvalidJob::MissingInput);
        }
        Ok(Job::from_parts(id, raw))
    }

    fn from_parts(id: String, raw: Value) -> Job {
        Job {
            inner: Arc::new(JobInner {
                id,
                raw,
                control: Arc::default(),
                #[cfg(feature = "download")]
                downloads: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The job id (RunPod's `requestId`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The job's `input`, untyped. Handlers normally take a typed input parameter instead.
    pub fn input(&self) -> &Value {
        &self.inner.raw["input"]
    }

    /// The whole job object exactly as the platform sent it, including fields this crate does
    /// not interpret (`webhook`, `policy`, `s3Config`, …).
    pub fn raw(&self) -> &Value {
        &self.inner.raw
    }

    /// The `batchId` the platform attached to the job, if any. Log lines of the job carry it.
    pub fn batch_id(&self) -> Option<&str> {
        self.inner.raw.get("batchId").and_then(Value::as_str)
    }

    /// Send a progress update: the platform shows `update` as the job's `output` while it is
    /// `IN_PROGRESS`. It returns at once; updates are posted in order on a task of their own,
    /// a newer update replaces one not yet posted, and none is posted after the final result.
    ///
    /// ```
    /// # let job = worker::Job::new("j", serde_json::json!({}));
    /// job.progress(&serde_json::json!({"percent": 50}));
    /// ```
    pub fn progress<T: Serialize + ?Sized>(&self, update: &T) {
        if self.inner.control.outbound().is_none() {
            // A job built in a test: keep the update for `progress_updates`.
            match serde_json::to_value(update) {
                Ok(value) => self.inner.control.keep_progress(value),
                Err(e) => tracing::warn!(
                    "progress update dropped: it could not be serialized to JSON: {e}"
                ),
            }
            return;
        }
        match crate::wire::progress_body(update) {
            Ok(body) => self.inner.control.progress(&self.inner.id, body),
            Err(e) => {
                tracing::warn!("progress update dropped: it could not be serialized to JSON: {e}")
            }
        }
    }

    /// Resolves when the platform cancels this job. The worker stops an async handler at its
    /// next `.await` by itself; a blocking handler can check [`Job::is_cancelled`] instead,
    /// and code that needs to clean up can race its work against this future.
    pub async fn cancelled(&self) {
        self.inner.control.cancelled().await
    }

    /// Whether the platform cancelled this job. No result is posted for a cancelled job.
    pub fn is_cancelled(&self) -> bool {
        self.inner.control.is_cancelled()
    }

    /// Cancel the job, as the platform does when a client cancels it: [`Job::cancelled`]
    /// resolves and [`Job::is_cancelled`] turns true. Meant for tests of a handler's
    /// cancellation path (`Job::new(…)`, then `job.cancel()`); the worker itself cancels jobs
    /// only when the platform says so.
    pub fn cancel(&self) {
        self.inner.control.cancel()
    }

    /// The progress updates sent so far, oldest first, for a job built in a test
    /// ([`Job::new`], [`Job::from_json`]). A job the worker runs posts its updates to the
    /// platform instead, and this is empty.
    pub fn progress_updates(&self) -> Vec<Value> {
        self.inner.control.kept_progress()
    }

    /// Ask the platform to replace this worker once this job is done (RunPod's
    /// `refresh_worker`): the result is posted with `stopPod: true`, the worker takes no new
    /// jobs, lets running ones finish, and exits.
    pub fn refresh_worker(&self) {
        self.inner.control.request_refresh()
    }

    /// The outputs of the chunks streamed so far, when they are kept: with
    /// `return_aggregate_stream`, in local test mode, and for jobs built in tests.
    pub fn streamed(&self) -> Vec<Value> {
        self.inner
            .control
            .stream()
            .items
            .iter()
            .filter_map(|raw| serde_json::from_str(raw.get()).ok())
            .collect()
    }

    /// Download `url` into this job's temporary directory and return the file's path
    /// (feature `download`). The directory and everything in it are removed when the job ends
    /// (when the worker drops its last clone of the job, after the result is posted).
    ///
    /// Only public `http`/`https` addresses, at most 5 redirects, at most
    /// `RUNPOD_MAX_DOWNLOAD_BYTES` (5 GiB); see [`crate::download`] for the rules, and
    /// [`crate::download::Downloads`] to choose other settings.
    #[cfg(feature = "download")]
    pub async fn download(
        &self,
        url: &str,
    ) -> Result<std::path::PathBuf, crate::download::DownloadError> {
        let downloads = self
            .inner
            .downloads
            .get_or_init(|| crate::download::Downloads::new(&self.inner.id));
        match downloads {
            Ok(downloads) => downloads.fetch(url).await,
            Err(e) => Err(e.clone()),
        }
    }

    pub(crate) fn control(&self) -> &Arc<Control> {
        &self.inner.control
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_platform_job_and_keeps_extra_fields() {
        let job = Job::parse(
            json!({"id": "a-1", "input": {"x": 1}, "webhook": "http://h", "batchId": "b7"}),
        )
        .unwrap();
        assert_eq!(job.id(), "a-1");
        assert_eq!(job.input(), &json!({"x": 1}));
        assert_eq!(job.raw()["webhook"], "http://h");
        assert_eq!(job.batch_id(), Some("b7"));
    }

    #[test]
    fn null_input_is_still_a_job() {
        let job = Job::parse(json!({"id": "a", "input": null})).unwrap();
        assert!(job.input().is_null());
    }

    #[test]
    fn rejects_what_is_not_a_job() {
        assert_eq!(Job::parse(json!([1])).unwrap_err(), InvalidJob::NotAnObject);
        assert_eq!(
            Job::parse(json!({"input": 1})).unwrap_err(),
            InvalidJob::MissingId
        );
        assert_eq!(
            Job::parse(json!({"id": 5, "input": 1})).unwrap_err(),
            InvalidJob::IdNotAString
        );
        assert_eq!(
            Job::parse(json!({"id": "a"})).unwrap_err(),
            InvalidJob::MissingInput
        );
    }
}
