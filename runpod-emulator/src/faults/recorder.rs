//! The request recorder and the request log: what workers sent, for tests to check and for
//! people to read along.

use std::fmt;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use serde_json::Value;

use super::Instrument;

/// One worker request the emulator received (recorded with
/// [`EmulatorBuilder::record_requests`](crate::EmulatorBuilder::record_requests)), including
/// attempts that got an injected fault.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The full path, e.g. `/v2/local/job-done/w1/abc-e1`.
    pub path: String,
    /// The query string without `?` (empty if none).
    pub query: String,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The injected fault's name (`503`, `reset`, `fail-done`, …), if any.
    pub fault: Option<String>,
    /// The status the emulator's handler answered, even when an injected reset then lost it;
    /// `None` while the request is still being handled, or when it was not handled at all
    /// (an injected status, a reset before processing, a malformed job-take answer).
    pub answer: Option<u16>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw (still percent-encoded) value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether this is a final job-done post (not a progress update).
    pub fn is_final_done(&self) -> bool {
        self.path.contains("/job-done/")
            && self
                .json()
                .is_none_or(|b| b.get("status").and_then(Value::as_str) != Some("IN_PROGRESS"))
    }

    /// The last path segment: the job id of job-done and job-stream, the worker id of others.
    pub fn last_segment(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

impl fmt::Debug for RecordedRequest {
    /// The `Authorization` value is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("authorization") {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("fault", &self.fault)
            .field("answer", &self.answer)
            .finish()
    }
}

/// The recorded requests; `generation` changes when they are cleared, so a late answer is not
/// written into another request's entry.
#[derive(Debug, Default)]
pub(super) struct Recorded {
    requests: Vec<RecordedRequest>,
    generation: u64,
}

/// Where a recorded request is: its index and the generation it was recorded in.
pub(super) type Entry = (usize, u64);

impl Instrument {
    fn lock_requests(&self) -> MutexGuard<'_, Recorded> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock_requests().requests.clone()
    }

    pub(crate) fn clear_requests(&self) {
        let mut recorded = self.lock_requests();
        recorded.requests.clear();
        recorded.generation += 1;
    }

    /// Record `req` with its injected `fault`, if recording is on. The body is read whole to keep
    /// a copy, then handed on in a new request; the entry is for [`set_answer`](Self::set_answer).
    pub(super) async fn record(
        &self,
        req: Request,
        fault: Option<&str>,
    ) -> (Request, Option<Entry>) {
        if !self.record.load(Ordering::Relaxed) {
            return (req, None);
        }
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
            Ok(bytes) => bytes,
            Err(_) => Bytes::new(),
        };
        let mut recorded = self.lock_requests();
        let entry = (recorded.requests.len(), recorded.generation);
        recorded.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            fault: fault.map(str::to_owned),
            answer: None,
        });
        drop(recorded);
        (Request::from_parts(parts, Body::from(body)), Some(entry))
    }

    /// Note the handler's answer in a recorded request, unless the requests were cleared since.
    pub(super) fn set_answer(&self, (index, generation): Entry, status: StatusCode) {
        let mut recorded = self.lock_requests();
        if recorded.generation == generation
            && let Some(request) = recorded.requests.get_mut(index)
        {
            request.answer = Some(status.as_u16());
        }
    }

    /// Log one worker request, if the request log is on; `answer` is `None` when an injected
    /// reset lost it.
    pub(super) fn log(
        &self,
        method: &str,
        path: &str,
        query: &str,
        answer: Option<StatusCode>,
        fault: Option<&str>,
    ) {
        if !self.log.load(Ordering::Relaxed) {
            return;
        }
        let answer = match answer {
            Some(status) => status.as_u16().to_string(),
            None => "connection reset".to_owned(),
        };
        let fault = fault
            .map(|name| format!(" (injected: {name})"))
            .unwrap_or_default();
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        // Headers are never logged: the Authorization value must not reach a log.
        tracing::info!("emulator: {method} {path}{query} -> {answer}{fault}");
    }
}
