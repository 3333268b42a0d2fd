//! A job's status and an endpoint's health, as typed values.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ClientErrorKind, JobError};

/// Where a job is. RunPod's words: `IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`, `FAILED`,
/// `CANCELLED`, `TIMED_OUT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for a worker.
    InQueue,
    /// A worker is running it.
    InProgress,
    /// It finished with an output.
    Completed,
    /// The handler failed (or its input was refused).
    Failed,
    /// It was cancelled.
    Cancelled,
    /// It ran past its execution timeout or waited past its TTL.
    TimedOut,
    /// A state this client does not know, as the platform spelled it.
    Other(String),
}

impl JobState {
    pub(super) fn parse(word: &str) -> JobState {
        match word {
            "IN_QUEUE" => JobState::InQueue,
            "IN_PROGRESS" | "RUNNING" => JobState::InProgress,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "CANCELLED" => JobState::Cancelled,
            "TIMED_OUT" => JobState::TimedOut,
            other => JobState::Other(other.to_owned()),
        }
    }

    /// The job will not change any more (completed, failed, cancelled or timed out).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled | JobState::TimedOut
        )
    }

    /// RunPod's word for the state.
    pub fn as_str(&self) -> &str {
        match self {
            JobState::InQueue => "IN_QUEUE",
            JobState::InProgress => "IN_PROGRESS",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::TimedOut => "TIMED_OUT",
            JobState::Other(word) => word,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's status (`/status/{id}`): its state, and its output once completed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobStatus<Out> {
    /// The job's id.
    pub id: String,
    /// Where the job is.
    pub state: JobState,
    /// The output, once the job completed with one.
    pub output: Option<Out>,
    /// The latest progress update while the job runs (what the handler sent with
    /// `job.progress(…)`).
    pub progress: Option<Value>,
    /// Why the job ended without an output (failed, cancelled, timed out).
    pub error: Option<JobError>,
    /// How long the job waited in the queue (`delayTime`), once it started.
    pub delay_time: Option<Duration>,
    /// How long it ran (`executionTime`), once it finished.
    pub execution_time: Option<Duration>,
    /// The worker that took it (`workerId`), where the platform says.
    pub worker_id: Option<String>,
}

impl<Out: DeserializeOwned> JobStatus<Out> {
    /// Read a status body; `fallback_id` is the id asked for, when the body has none.
    pub(super) fn parse(
        body: &Value,
        fallback_id: &str,
    ) -> Result<JobStatus<Out>, ClientErrorKind> {
        let id = body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(fallback_id)
            .to_owned();
        let Some(word) = body.get("status").and_then(Value::as_str) else {
            return Err(ClientErrorKind::Decode {
                what: "the answer".to_owned(),
                error: format!("has no `status`: {}", snippet(body)),
            });
        };
        let state = JobState::parse(word);
        let ms = |key: &str| {
            body.get(key)
                .and_then(Value::as_u64)
                .map(Duration::from_millis)
        };
        let mut status = JobStatus {
            state: state.clone(),
            output: None,
            progress: None,
            error: None,
            delay_time: ms("delayTime"),
            execution_time: ms("executionTime"),
            worker_id: body
                .get("workerId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            id,
        };
        match state {
            JobState::Completed => {
                let output = body.get("output").cloned().unwrap_or(Value::Null);
                status.output = Some(decode(
                    output,
                    &format!("the output of job `{}`", status.id),
                )?);
            }
            JobState::Failed | JobState::Cancelled | JobState::TimedOut => {
                status.error = Some(JobError::new(&status.id, state, body.get("error")));
            }
            _ => status.progress = body.get("output").filter(|v| !v.is_null()).cloned(),
        }
        Ok(status)
    }

    /// The output, or the job's error as a `ClientErrorKind` (for a final status).
    pub(super) fn into_result(self) -> Result<Out, ClientErrorKind> {
        match (self.output, self.error) {
            (Some(output), _) => Ok(output),
            (None, Some(error)) => Err(ClientErrorKind::Job(Box::new(error))),
            (None, None) => Err(ClientErrorKind::Job(Box::new(JobError::new(
                &self.id, self.state, None,
            )))),
        }
    }
}

/// A JSON value as the caller's type; the error names where it did not match.
pub(super) fn decode<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ClientErrorKind> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let type_name = std::any::type_name::<T>();
        ClientErrorKind::Decode {
            what: what.to_owned(),
            error: if path == "." {
                format!("does not match `{type_name}`: {inner}")
            } else {
                format!("does not match `{type_name}` at `{path}`: {inner}")
            },
        }
    })
}

/// A value's JSON text, cut for a message.
pub(super) fn snippet(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// An endpoint's health (`/health`): its jobs and workers by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// The endpoint's jobs.
    #[serde(default)]
    pub jobs: JobCounts,
    /// The endpoint's workers.
    #[serde(default)]
    pub workers: WorkerCounts,
}

/// The jobs of an endpoint, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct JobCounts {
    /// Completed jobs (whose results are still kept).
    pub completed: u64,
    /// Failed jobs.
    pub failed: u64,
    /// Jobs running now.
    pub in_progress: u64,
    /// Jobs waiting for a worker.
    pub in_queue: u64,
    /// Jobs that were retried.
    pub retried: u64,
}

/// The workers of an endpoint, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct WorkerCounts {
    /// Workers waiting for a job.
    pub idle: u64,
    /// Workers running jobs.
    pub running: u64,
    /// Workers starting up.
    pub initializing: u64,
    /// Workers ready for jobs.
    pub ready: u64,
    /// Workers held back by the platform.
    pub throttled: u64,
    /// Workers that failed their health checks.
    pub unhealthy: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_every_state() {
        let done: JobStatus<Vec<u32>> = JobStatus::parse(
            &json!({"id": "a", "status": "COMPLETED", "output": [1, 2], "delayTime": 12,
                    "executionTime": 30, "workerId": "w1"}),
            "x",
        )
        .unwrap();
        assert_eq!(done.id, "a");
        assert_eq!(done.state, JobState::Completed);
        assert_eq!(done.output, Some(vec![1, 2]));
        assert_eq!(done.delay_time, Some(Duration::from_millis(12)));
        assert_eq!(done.execution_time, Some(Duration::from_millis(30)));
        assert_eq!(done.worker_id.as_deref(), Some("w1"));

        let running: JobStatus<Vec<u32>> = JobStatus::parse(
            &json!({"status": "IN_PROGRESS", "output": {"step": 3}}),
            "b",
        )
        .unwrap();
        assert_eq!(running.id, "b");
        assert!(!running.state.is_final());
        assert_eq!(running.output, None);
        assert_eq!(running.progress, Some(json!({"step": 3})));

        let report =
            json!({"error_type": "ValueError", "error_message": "no", "error_traceback": "tb"});
        let failed: JobStatus<u32> = JobStatus::parse(
            &json!({"id": "c", "status": "FAILED", "error": report.to_string()}),
            "c",
        )
        .unwrap();
        let error = failed.error.clone().unwrap();
        assert_eq!(error.error_type.as_deref(), Some("ValueError"));
        assert_eq!(error.message, "no");
        assert_eq!(error.traceback.as_deref(), Some("tb"));
        assert_eq!(error.to_string(), "job `c` failed: ValueError: no");
        assert!(matches!(failed.into_result(), Err(ClientErrorKind::Job(_))));

        let plain: JobStatus<u32> = JobStatus::parse(
            &json!({"id": "d", "status": "FAILED", "error": "out of memory"}),
            "d",
        )
        .unwrap();
        assert_eq!(
            plain.error.unwrap().to_string(),
            "job `d` failed: out of memory"
        );

        let cancelled: JobStatus<u32> =
            JobStatus::parse(&json!({"id": "e", "status": "CANCELLED"}), "e").unwrap();
        assert_eq!(
            cancelled.error.unwrap().to_string(),
            "job `e` was cancelled"
        );

        let odd: JobStatus<u32> = JobStatus::parse(&json!({"status": "PAUSED"}), "f").unwrap();
        assert_eq!(odd.state, JobState::Other("PAUSED".into()));
        assert!(!odd.state.is_final());
    }

    #[test]
    fn a_wrong_output_names_the_path_and_the_type() {
        let wrong = JobStatus::<Vec<u32>>::parse(
            &json!({"id": "a", "status": "COMPLETED", "output": [1, "two"]}),
            "a",
        )
        .unwrap_err();
        let ClientErrorKind::Decode { what, error } = wrong else {
            panic!("{wrong:?}")
        };
        assert_eq!(what, "the output of job `a`");
        assert!(
            error.starts_with("does not match `alloc::vec::Vec<u32>` at `[1]`"),
            "{error}"
        );

        let no_status = JobStatus::<u32>::parse(&json!({"id": "a"}), "a").unwrap_err();
        assert!(matches!(no_status, ClientErrorKind::Decode { .. }));
    }

    #[test]
    fn health_reads_the_platform_shape() {
        let health: Health = serde_json::from_value(json!({
            "jobs": {"completed": 3, "failed": 1, "inProgress": 2, "inQueue": 5, "retried": 0},
            "workers": {"idle": 1, "running": 2, "unknownField": 7}
        }))
        .unwrap();
        assert_eq!(health.jobs.in_queue, 5);
        assert_eq!(health.jobs.in_progress, 2);
        assert_eq!(health.workers.running, 2);
        assert_eq!(health.workers.throttled, 0);
    }
}
