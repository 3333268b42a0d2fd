//! Local test mode: run one job from `--test_input`, `./test_input.json` or the test input
//! embedded at build time, through the same handler path as production, and print the result.

use std::io::Write as _;
use std::process::ExitCode;

use serde_json::Value;
use tracing::Instrument;

use crate::control::{BoxFuture, Outbound};
use crate::error::{Error, ErrorKind};
use crate::final_body::{encode_final, log_outcome};
use crate::handler::Handler;
use crate::job::Job;
use crate::limits::Limits;
use crate::logging::job_span;

/// A test input compiled into the binary (`#[worker::handler(test_input = "…")]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddedTestInput {
    pub(crate) path: &'static str,
    pub(crate) contents: &'static str,
}

/// Where the test job comes from, in order of precedence.
pub(crate) fn read_test_job(
    flag: Option<String>,
    embedded: Option<EmbeddedTestInput>,
) -> Result<Job, Error> {
    let (source, text) = if let Some(text) = flag {
        ("--test_input".to_owned(), text)
    } else if let Ok(text) = std::fs::read_to_string("test_input.json") {
        ("./test_input.json".to_owned(), text)
    } else if let Some(embedded) = embedded {
        (
            format!("the test input built into this worker ({})", embedded.path),
            embedded.contents.to_owned(),
        )
    } else {
        return Err(Error::new(
            ErrorKind::TestInput,
            "no test input: pass --test_input '{\"input\": {...}}' or create ./test_input.json \
             (or set RUNPOD_WEBHOOK_GET_JOB to take jobs from the platform)",
        ));
    };
    tracing::info!("local test mode: running the job from {source}");
    parse_test_job(&source, &text)
}

fn parse_test_job(source: &str, text: &str) -> Result<Job, Error> {
    let bad = |message: String| Error::new(ErrorKind::TestInput, message);
    let mut value: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("{source} is not valid JSON: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(bad(format!(
            "{source} must be a JSON object like {{\"input\": {{...}}}}"
        )));
    };
    match object.get("input") {
        None | Some(Value::Null) => {
            return Err(bad(format!(
                "{source} has no `input`: a test input looks like {{\"input\": {{...}}}}, the job's input inside"
            )));
        }
        Some(_) => {}
    }
    object
        .entry("id")
        .or_insert_with(|| Value::String("local_test".into()));
    Job::parse(value).map_err(|why| bad(format!("{source}: {why}")))
}

/// Run the test job and print the job-done body to stdout. Exit 0 on success, 1 on failure.
/// Progress updates and stream chunks are logged as they happen; a streaming job's result
/// holds every item.
pub(crate) async fn run_one<H: Handler>(handler: &H, job: Job, limits: Limits) -> ExitCode {
    let id = job.id().to_owned();
    let span = job_span(&job);
    job.control()
        .attach(std::sync::Arc::new(LocalOutbound), true);
    let control = job.control().clone();
    let outcome = async {
        tracing::info!("Started.");
        let outcome = handler.call(job).await;
        control.close_progress().await;
        log_outcome(&outcome);
        outcome
    }
    .instrument(span)
    .await;
    let (outcome, body, _) = encode_final(
        outcome,
        &control,
        false,
        ("local", "local"),
        limits.max_output_bytes,
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&body);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
    match outcome.failure() {
        None => {
            tracing::info!("Job {id} completed successfully.");
            ExitCode::SUCCESS
        }
        Some(failure) => {
            tracing::error!("Job {id} failed: {failure}\n{}", failure.traceback());
            ExitCode::FAILURE
        }
    }
}

/// Local test mode's stand-in for the platform: progress and chunks go to the log.
struct LocalOutbound;

impl Outbound for LocalOutbound {
    fn progress(&self, _job_id: &str, body: Vec<u8>) -> BoxFuture<'_, ()> {
        tracing::info!("progress: {}", String::from_utf8_lossy(&body));
        Box::pin(std::future::ready(()))
    }

    fn chunk(&self, _job_id: &str, body: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        tracing::info!("stream: {}", String::from_utf8_lossy(&body));
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_inputs() {
        let job = parse_test_job("t", r#"{"input": {"a": 1}}"#).unwrap();
        assert_eq!(job.id(), "local_test");
        let job = parse_test_job("t", r#"{"id": "mine", "input": 3}"#).unwrap();
        assert_eq!(job.id(), "mine");
        let err = |text: &str| parse_test_job("t", text).unwrap_err().to_string();
        assert!(err("{").starts_with("t is not valid JSON"));
        assert!(err("[1]").starts_with("t must be a JSON object"));
        assert!(err(r#"{"prompt": 1}"#).starts_with("t has no `input`"));
        assert!(err(r#"{"input": null}"#).starts_with("t has no `input`"));
        assert_eq!(
            err(r#"{"id": 4, "input": 1}"#),
            "t: the job's `id` is not a string"
        );
    }
}
