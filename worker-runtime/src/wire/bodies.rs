//! The bodies the worker posts (protocol §5.1–§5.3, §6.4, §7): a job's final result, RunPod's
//! error report inside it, progress updates and stream chunks. Compact JSON, UTF-8.

use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::value::RawValue;

use super::VERSION;
use crate::report::Failure;

/// The content type of job-done and job-stream posts. The platform is used to the Python
/// SDK's form content type with a JSON body (§5.3); keep that wire shape.
const POST_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

// Made when compiling: `from_static` at run time looks the name up in http's table of
// standard headers (an 11 KB function) on every post.
const CHARSET: HeaderName = HeaderName::from_static("charset");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORM: HeaderValue = HeaderValue::from_static(POST_CONTENT_TYPE);
const UTF_8: HeaderValue = HeaderValue::from_static("utf-8");
const INVALID: HeaderValue = HeaderValue::from_static("invalid");

/// The headers of one job-done or job-stream post besides the client's own: the content type,
/// the literal `charset: utf-8` header, and `X-Request-ID: <job id>` (per request: the Python
/// SDK's leak of the last id into every later request is a bug not kept).
pub(crate) fn post_headers(job_id: &str) -> [(HeaderName, HeaderValue); 3] {
    [
        (reqwest::header::CONTENT_TYPE, FORM),
        (CHARSET, UTF_8),
        (
            X_REQUEST_ID,
            HeaderValue::from_str(job_id).unwrap_or(INVALID),
        ),
    ]
}

/// The body of a final job-done post: `{"output": …}` or `{"error": "<report JSON>"}`, plus
/// `stopPod: true` when the worker asks to be recycled (§6.4).
#[derive(Serialize)]
struct DoneBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorField<'a>>,
    #[serde(rename = "stopPod", skip_serializing_if = "std::ops::Not::not")]
    stop_pod: bool,
}

/// A failed job's `error`: RunPod's report as a JSON string, or exactly the JSON the handler
/// chose (Python's `return {"error": …}`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub(crate) enum ErrorField<'a> {
    /// The error report's JSON text, sent as a string (see [`error_report`]).
    Report(&'a str),
    /// Any JSON value, sent as it is.
    Exact(&'a RawValue),
}

/// A final job-done body: `Ok(output)` or `Err(error)`.
pub(crate) fn done_body(result: Result<&RawValue, ErrorField<'_>>, stop_pod: bool) -> Vec<u8> {
    let (output, error) = match result {
        Ok(output) => (Some(output), None),
        Err(error) => (None, Some(error)),
    };
    // Serializing a RawValue, a string and a bool cannot fail.
    serde_json::to_vec(&DoneBody {
        output,
        error,
        stop_pod,
    })
    .unwrap_or_else(|_| b"{\"error\":\"the worker could not encode its result\"}".to_vec())
}

/// RunPod's error report, in the field order the Python SDK sends (§5.1). It travels as a JSON
/// *string* in the `error` field of the job-done body.
#[derive(Serialize)]
struct ErrorReport<'a> {
    error_type: &'a str,
    error_message: &'a str,
    error_traceback: &'a str,
    hostname: &'a str,
    worker_id: &'a str,
    runpod_version: &'a str,
    /// The job's recent log lines (the Python SDK 2.0's `logs`, with RUNPOD_LOG_CAPTURE=all).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    logs: &'a [String],
}

/// The error report of `failure`, as the JSON string that goes in `error`.
pub(crate) fn error_report(failure: &Failure, hostname: &str, worker_id: &str) -> String {
    let report = ErrorReport {
        error_type: &failure.error_type,
        error_message: &failure.error_message,
        error_traceback: &failure.error_traceback,
        hostname,
        worker_id,
        runpod_version: VERSION,
        logs: &failure.logs,
    };
    serde_json::to_string(&report).unwrap_or_else(|_| failure.error_message.clone())
}

/// A progress update (§7.2): `{"status":"IN_PROGRESS","output":<update>}`, posted to job-done.
pub(crate) fn progress_body<T: Serialize + ?Sized>(update: &T) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Progress<'a, T: ?Sized> {
        status: &'static str,
        output: &'a T,
    }
    serde_json::to_vec(&Progress {
        status: "IN_PROGRESS",
        output: update,
    })
}

/// One stream chunk (§7.1): `{"output":<item>}`, posted to job-stream.
pub(crate) fn stream_chunk(item: &RawValue) -> Vec<u8> {
    let mut body = Vec::with_capacity(item.get().len() + 11);
    body.extend_from_slice(b"{\"output\":");
    body.extend_from_slice(item.get().as_bytes());
    body.push(b'}');
    body
}

/// A streaming job's final output (§7.1): `[]`, or every item with `return_aggregate_stream`.
pub(crate) fn stream_output<'a>(items: impl IntoIterator<Item = &'a RawValue>) -> Box<RawValue> {
    let mut list = String::from("[");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            list.push(',');
        }
        list.push_str(item.get());
    }
    list.push(']');
    // Items are JSON values already, so the list is JSON.
    RawValue::from_string(list)
        .unwrap_or_else(|_| RawValue::from_string("[]".to_owned()).expect("`[]` is JSON"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    /// §5.1: `{"output": …}`; §6.4: `stopPod: true` only when asked.
    #[test]
    fn final_bodies() {
        let out = raw(r#"{"a":1}"#);
        assert_eq!(text(done_body(Ok(&out), false)), r#"{"output":{"a":1}}"#);
        assert_eq!(
            text(done_body(Ok(&out), true)),
            r#"{"output":{"a":1},"stopPod":true}"#
        );
        assert_eq!(
            text(done_body(Err(ErrorField::Report("x")), true)),
            r#"{"error":"x","stopPod":true}"#
        );
        let null = raw("null");
        assert_eq!(text(done_body(Ok(&null), false)), r#"{"output":null}"#);
    }

    /// §5.1: the report is a JSON string inside `error`, its fields in the SDK's order.
    #[test]
    fn the_error_report_is_a_json_string_in_error() {
        let failure = Failure::new("ValueError", "boom");
        let report = error_report(&failure, "host-7", "w42");
        assert_eq!(
            report,
            format!(
                r#"{{"error_type":"ValueError","error_message":"boom","error_traceback":"ValueError: boom","hostname":"host-7","worker_id":"w42","runpod_version":"{VERSION}"}}"#
            )
        );
        let body: Value =
            serde_json::from_slice(&done_body(Err(ErrorField::Report(&report)), false)).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1);
        let inner: Value = serde_json::from_str(body["error"].as_str().unwrap()).unwrap();
        assert_eq!(inner["error_message"], "boom");
    }

    /// §7.2: `{"status": "IN_PROGRESS", "output": <progress>}`.
    #[test]
    fn progress_bodies() {
        assert_eq!(
            text(progress_body(&json!({"pct": 50})).unwrap()),
            r#"{"status":"IN_PROGRESS","output":{"pct":50}}"#
        );
        assert_eq!(
            text(progress_body("loading").unwrap()),
            r#"{"status":"IN_PROGRESS","output":"loading"}"#
        );
        assert!(progress_body(&f64::NAN).is_ok(), "serde_json writes null");
    }

    /// §7.1: chunks `{"output": {"tok": 0}}`; the final output `[]` or the aggregate.
    #[test]
    fn stream_chunks_and_outputs() {
        assert_eq!(
            text(stream_chunk(&raw(r#"{"tok":0}"#))),
            r#"{"output":{"tok":0}}"#
        );
        assert_eq!(text(stream_chunk(&raw(r#""é""#))), r#"{"output":"é"}"#);
        assert_eq!(stream_output([]).get(), "[]");
        let items = [raw("1"), raw(r#"{"t":"b"}"#), raw(r#""c""#)];
        assert_eq!(
            stream_output(items.iter().map(|i| &**i)).get(),
            r#"[1,{"t":"b"},"c"]"#
        );
    }

    /// §5.3: form content type, a `charset` header, `X-Request-ID` per request.
    #[test]
    fn post_headers_match_the_python_sdk() {
        let headers = post_headers("j-1");
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "application/x-www-form-urlencoded"),
                ("charset", "utf-8"),
                ("x-request-id", "j-1"),
            ]
        );
        assert_eq!(post_headers("bad\nid")[2].1, "invalid");
    }

    #[test]
    fn an_exact_error_is_sent_as_it_is() {
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let value = serde_json::value::to_raw_value(&serde_json::json!({"code": 7})).unwrap();
        assert_eq!(
            text(done_body(Err(ErrorField::Exact(&value)), false)),
            r#"{"error":{"code":7}}"#
        );
        let string = serde_json::value::to_raw_value("bad thing").unwrap();
        assert_eq!(
            text(done_body(Err(ErrorField::Exact(&string)), false)),
            r#"{"error":"bad thing"}"#
        );
    }
}
