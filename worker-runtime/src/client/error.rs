//! What a failed call says: which call, which request, and what the platform answered.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::status::JobState;

/// A call to an endpoint that failed. Its message names the call, the request and the
/// platform's answer; [`kind`](ClientError::kind) says what happened, for code that acts on it.
#[derive(Debug)]
pub struct ClientError(Box<Inner>);

/// Boxed, so that a `Result<_, ClientError>` stays one pointer wide on the happy path.
#[derive(Debug)]
struct Inner {
    call: &'static str,
    endpoint: String,
    request: Option<String>,
    attempts: u32,
    kind: ClientErrorKind,
}

/// Why a call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientErrorKind {
    /// The client cannot be made as set up (a base URL that is not http(s), a key that cannot go
    /// in a header).
    Config(String),
    /// The input could not be written as JSON (a map with non-string keys, a failing
    /// `Serialize`).
    Encode(serde_json::Error),
    /// The request got no answer: the connection failed, was reset, or the timeout ran out.
    /// `maybe_submitted` is true when the request may have reached the platform and submitted a
    /// job (`run`, `run_sync`), which is why it was not sent again.
    Transport {
        /// The HTTP client's error.
        error: reqwest::Error,
        /// The job may have been submitted.
        maybe_submitted: bool,
    },
    /// The platform answered with an error status.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The answer's body (cut to its first 300 characters).
        body: String,
    },
    /// The answer, or the job's output, is not what the caller's type expects.
    Decode {
        /// What was read (`the output of job …`, `the answer`).
        what: String,
        /// Where and why it did not match.
        error: String,
    },
    /// The job ended without an output: it failed, was cancelled or timed out.
    Job(Box<JobError>),
    /// The job had not finished when the call's wait ran out; it is still queued or running.
    StillRunning {
        /// The job's id, to come back for it with `Endpoint::job`.
        id: String,
        /// What the platform said last.
        state: JobState,
        /// How long the call waited.
        waited: Duration,
    },
}

impl ClientError {
    pub(super) fn new(call: &'static str, endpoint: &str, kind: ClientErrorKind) -> ClientError {
        ClientError(Box::new(Inner {
            call,
            endpoint: endpoint.to_owned(),
            request: None,
            attempts: 1,
            kind,
        }))
    }

    pub(super) fn config(message: impl Into<String>) -> ClientError {
        ClientError::new("build", "", ClientErrorKind::Config(message.into()))
    }

    pub(super) fn with_request(mut self, method: &str, url: &str, attempts: u32) -> ClientError {
        self.0.request = Some(format!("{method} {url}"));
        self.0.attempts = attempts;
        self
    }

    /// The call that failed: `run`, `run_sync`, `status`, `stream`, `cancel`, `retry`,
    /// `health`, `purge_queue`, `openapi`.
    pub fn call(&self) -> &str {
        self.0.call
    }

    /// What happened.
    pub fn kind(&self) -> &ClientErrorKind {
        &self.0.kind
    }

    /// The HTTP status the platform answered, when it answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match &self.0.kind {
            ClientErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The job's error, when the job failed (or was cancelled, or timed out).
    pub fn job_error(&self) -> Option<&JobError> {
        match &self.0.kind {
            ClientErrorKind::Job(job) => Some(job),
            _ => None,
        }
    }

    /// How many times the request was sent.
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.endpoint.is_empty() {
            write!(f, "{}: ", self.0.call)?;
        } else {
            write!(f, "{} on endpoint `{}`: ", self.0.call, self.0.endpoint)?;
        }
        let request = self.0.request.as_deref().unwrap_or("the request");
        match &self.0.kind {
            ClientErrorKind::Config(message) => f.write_str(message)?,
            ClientErrorKind::Encode(e) => write!(f, "the input could not be written as JSON: {e}")?,
            ClientErrorKind::Transport {
                error,
                maybe_submitted,
            } => {
                write!(f, "{request} failed: {}", crate::error::chain(error))?;
                if error.is_connect() {
                    f.write_str(" (is the endpoint's server running, and the base URL right?)")?;
                }
                if *maybe_submitted {
                    f.write_str(
                        " (the job may have been submitted, so it was not sent again: look for \
                         it on the endpoint before submitting it again)",
                    )?;
                }
            }
            ClientErrorKind::Status { status, body } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{request} answered {status} {reason}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                match status {
                    401 | 403 => f.write_str(" (check the API key)")?,
                    404 => f.write_str(" (check the endpoint id and the base URL)")?,
                    _ => {}
                }
            }
            ClientErrorKind::Decode { what, error } => write!(f, "{what} {error}")?,
            ClientErrorKind::Job(job) => write!(f, "{job}")?,
            ClientErrorKind::StillRunning { id, state, waited } => write!(
                f,
                "job `{id}` is still {state} after {:.1} s; come back for it with \
                 `endpoint.job(\"{id}\")`",
                waited.as_secs_f64()
            )?,
        }
        if self.0.attempts > 1 {
            write!(f, " (after {} attempts)", self.0.attempts)?;
        }
        Ok(())
    }
}

impl StdError for ClientError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.0.kind {
            ClientErrorKind::Encode(e) => Some(e),
            ClientErrorKind::Transport { error, .. } => Some(error),
            ClientErrorKind::Job(job) => Some(job),
            _ => None,
        }
    }
}

/// A job that ended without an output: its state and the worker's error report.
///
/// A worker of this crate (and of runpod-python) reports a failure as a JSON string with
/// `error_type`, `error_message` and `error_traceback`; those are read into the fields here.
/// Any other error is kept whole in [`message`](JobError::message).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobError {
    /// The job's id.
    pub id: String,
    /// `Failed`, `Cancelled` or `TimedOut`.
    pub state: JobState,
    /// The error's type (`error_type`), when the worker reported one.
    pub error_type: Option<String>,
    /// What went wrong (`error_message`, or the whole error).
    pub message: String,
    /// The worker's traceback (`error_traceback`), when it reported one.
    pub traceback: Option<String>,
    /// The error as the platform gave it.
    pub raw: Value,
}

impl JobError {
    pub(super) fn new(id: &str, state: JobState, error: Option<&Value>) -> JobError {
        let raw = error.cloned().unwrap_or(Value::Null);
        // The report is a JSON string (RunPod's shape) or, from some workers, an object.
        let report = match &raw {
            Value::String(text) => serde_json::from_str::<Value>(text).ok(),
            Value::Object(_) => Some(raw.clone()),
            _ => None,
        };
        let field = |name: &str| {
            report
                .as_ref()
                .and_then(|r| r.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let message = field("error_message").unwrap_or_else(|| match &raw {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        });
        JobError {
            id: id.to_owned(),
            state,
            error_type: field("error_type"),
            message,
            traceback: field("error_traceback"),
            raw,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.id;
        match self.state {
            JobState::Cancelled => write!(f, "job `{id}` was cancelled")?,
            JobState::TimedOut => write!(f, "job `{id}` timed out")?,
            _ => write!(f, "job `{id}` failed")?,
        }
        match (&self.error_type, self.message.is_empty()) {
            (Some(kind), false) => write!(f, ": {kind}: {}", self.message),
            (Some(kind), true) => write!(f, ": {kind}"),
            (None, false) => write!(f, ": {}", self.message),
            (None, true) => Ok(()),
        }
    }
}

impl StdError for JobError {}
