//! What a request is answered: a job's result in RunPod's shape (`{"id", "status", "output" |
//! "error"}`, the error being RunPod's error report as a JSON string, as a queue endpoint's
//! `/runsync` answers), with its status code; or why the request was not run.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::server::{Phase, Server};
use crate::control::Control;
use crate::final_body::encode_final;
use crate::handler::{Handler, Outcome};
use crate::limits::human_size;
use crate::report::Failure;

/// A finished job's answer.
#[derive(Debug)]
pub(super) struct Answer {
    id: String,
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    /// The answer to a job that ended as `outcome` (output over `max_bytes` fails it, as for a
    /// queued job).
    pub(super) fn of(
        id: &str,
        outcome: Outcome,
        control: &Control,
        reporter: (&str, &str),
        max_bytes: usize,
    ) -> Answer {
        let (outcome, done, _) = encode_final(outcome, control, false, reporter, max_bytes);
        let (status, word) = match outcome.failure() {
            None => (StatusCode::OK, "COMPLETED"),
            Some(failure) => (status_of(failure), "FAILED"),
        };
        // `done` is the job-done body, `{"output": …}` or `{"error": …}`: the id and status go
        // in front of its fields.
        let id_json = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
        let mut body = Vec::with_capacity(done.len() + id_json.len() + 32);
        body.extend_from_slice(b"{\"id\":");
        body.extend_from_slice(id_json.as_bytes());
        body.extend_from_slice(b",\"status\":\"");
        body.extend_from_slice(word.as_bytes());
        body.extend_from_slice(b"\",");
        body.extend_from_slice(done.get(1..).unwrap_or(b"}"));
        Answer {
            id: id.to_owned(),
            status,
            body,
        }
    }

    /// A request that failed before its handler ran (bad JSON, no `input`).
    pub(super) fn failed(id: &str, failure: Failure, reporter: (&str, &str)) -> Answer {
        Answer::of(
            id,
            Outcome::failed(failure),
            &Control::default(),
            reporter,
            usize::MAX,
        )
    }

    pub(super) fn failed_job(&self) -> bool {
        self.status != StatusCode::OK
    }

    /// The answer's JSON text.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(super) fn into_response(self) -> Response {
        let mut response = json(self.status, self.body);
        if let Ok(value) = HeaderValue::from_str(&self.id) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
}

/// The status code of a failed job: 400 for input that does not fit the handler, 503 for a job
/// the shutdown cut short, 500 for the handler's own errors and panics.
fn status_of(failure: &Failure) -> StatusCode {
    match failure.error_type() {
        "InvalidInput" | "InvalidRequest" => StatusCode::BAD_REQUEST,
        "WorkerShutdown" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON response.
pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": message}`, the platform's own shape for a request no handler ran.
fn refusal(status: StatusCode, message: &str) -> Response {
    json(
        status,
        serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default(),
    )
}

/// Every slot is taken: 429 at once, with `Retry-After`, rather than a queue the platform does
/// not expect a load-balancing worker to keep.
pub(super) fn busy(capacity: usize) -> Response {
    let mut response = refusal(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "the worker is busy: it runs {capacity} request(s) at once (its concurrency) and \
             all are taken; retry shortly"
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The worker is not serving: initializing, init failed, or draining.
pub(super) fn unavailable<H: Handler>(server: &Server<H>) -> Response {
    let mut response = match server.phase() {
        Phase::Initializing | Phase::Ready => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the worker is still initializing (its init function runs); retry shortly",
        ),
        Phase::Failed => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::to_vec(&serde_json::json!({
                "error": server.init_failure.get(),
            }))
            .unwrap_or_default(),
        ),
        Phase::Draining => {
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the worker is shutting down and takes no new requests",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 413: the body is over `limit` bytes.
pub(super) fn too_large(limit: usize, declared: Option<u64>) -> Response {
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body is too large: this worker accepts at most {} ({limit} bytes, \
             WORKER_MAX_REQUEST_BYTES){}; send large data as a URL instead",
            human_size(limit),
            declared
                .map(|n| format!(", this one has {n} bytes"))
                .unwrap_or_default()
        ),
    )
}

/// The job's task ended without an answer (it cannot, short of a bug): 500, said so.
pub(super) fn no_result(id: &str, reporter: (&str, &str)) -> Response {
    Answer::failed(
        id,
        Failure::new(
            "NoResult",
            "the job ended without a result (its task stopped); this is a bug of the worker",
        ),
        reporter,
    )
    .into_response()
}
