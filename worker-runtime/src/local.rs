//! Local test mode: run the job (or the list of jobs) from `--test_input`, `./test_input.json` or
//! the test input embedded at build time, through the same handler path as production, and
//! print each result.

use std::io::Write as _;

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

/// Where the test job(s) come from, in order of precedence.
pub(crate) fn read_test_jobs(
    flag: Option<String>,
    embedded: Option<EmbeddedTestInput>,
) -> Result<Vec<Job>, Error> {
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
    let jobs = parse_test_jobs(&source, &text)?;
    match jobs.len() {
        1 => tracing::info!("local test mode: running the job from {source}"),
        n => tracing::info!("local test mode: running the {n} jobs from {source} at once"),
    }
    Ok(jobs)
}

/// The hidden `#[test]` the handler macro emits: every job of the embedded test input (and of
/// `./test_input.json` in the crate, if there is one) deserializes into the handler's input
/// type `T` and meets its declared constraints (`check`), so a test input that drifted from
/// the type fails `cargo test`, not a deployment.
/// Panics with the job's own failure message (its JSON path) otherwise.
#[track_caller]
pub(crate) fn check_test_inputs<T: serde::de::DeserializeOwned>(
    manifest_dir: &str,
    embedded: Option<(&str, &str)>,
    check: crate::constraints::Check<T>,
    schema: fn() -> Option<Value>,
) {
    let mut sources = Vec::new();
    if let Some((path, contents)) = embedded {
        sources.push((path.to_owned(), contents.to_owned()));
    }
    let crate_file = std::path::Path::new(manifest_dir).join("test_input.json");
    if let Ok(text) = std::fs::read_to_string(&crate_file)
        && embedded.is_none_or(|(path, _)| path != "test_input.json")
    {
        sources.push((crate_file.display().to_string(), text));
    }
    let type_name = std::any::type_name::<T>();
    for (source, text) in sources {
        let jobs = match parse_test_jobs(&source, &text) {
            Ok(jobs) => jobs,
            Err(e) => panic!("{e}"),
        };
        for (i, job) in jobs.iter().enumerate() {
            if let Err(failure) = crate::handler::deserialize_checked::<T>(job, check, schema) {
                let which = if jobs.len() > 1 {
                    format!("{source}[{i}]")
                } else {
                    source.clone()
                };
                panic!(
                    "{which}: the test input does not match the handler's input type `{type_name}`: {}",
                    failure.message()
                );
            }
        }
    }
}

/// One job (`{"input": …}`) or a list of them (`[{"input": …}, …]`, ids `local_test_1`, …).
fn parse_test_jobs(source: &str, text: &str) -> Result<Vec<Job>, Error> {
    let bad = |message: String| Error::new(ErrorKind::TestInput, message);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("{source} is not valid JSON: {e}")).with_source(e))?;
    match value {
        Value::Array(items) if items.is_empty() => Err(bad(format!(
            "{source} is an empty list: give one job {{\"input\": {{...}}}} or a list of them"
        ))),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                parse_test_job(
                    &format!("{source}[{i}]"),
                    item,
                    &format!("local_test_{}", i + 1),
                )
            })
            .collect(),
        value => Ok(vec![parse_test_job(source, value, "local_test")?]),
    }
}

fn parse_test_job(source: &str, mut value: Value, default_id: &str) -> Result<Job, Error> {
    let bad = |message: String| Error::new(ErrorKind::TestInput, message);
    let Some(object) = value.as_object_mut() else {
        return Err(bad(format!(
            "{source} must be a JSON object like {{\"input\": {{...}}}} (or a list of them)"
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
        .or_insert_with(|| Value::String(default_id.into()));
    Job::parse(value).map_err(|why| bad(format!("{source}: {why}")))
}

/// Run the test jobs and print each job-done body to stdout, one line per job in the order
/// given. `Ok` when every job succeeded. A list runs at once, as many jobs as the
/// worker would hold (a batching handler gathers them into batches). Progress updates and
/// stream chunks are logged as they happen; a streaming job's result holds every item.
pub(crate) async fn run_jobs<H: Handler>(
    handler: &H,
    jobs: Vec<Job>,
    concurrency: usize,
    limits: Limits,
) -> Result<(), Error> {
    let slots = tokio::sync::Semaphore::new(handler.jobs_to_hold(concurrency).max(1));
    let runs = jobs.into_iter().map(|job| {
        let slots = &slots;
        async move {
            let _slot = slots.acquire().await;
            run_one(handler, job, limits).await
        }
    });
    let ended = join_all(runs).await;
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    for (id, outcome, body) in ended {
        let _ = stdout.write_all(&body);
        let _ = stdout.write_all(b"\n");
        match outcome.failure() {
            None => tracing::info!("Job {id} completed successfully."),
            Some(failure) => {
                failed = true;
                tracing::error!("Job {id} failed: {failure}\n{}", failure.traceback());
            }
        }
    }
    let _ = stdout.flush();
    if failed {
        Err(Error::new(
            ErrorKind::TestFailed,
            "a local test job failed (its result is printed above)",
        ))
    } else {
        Ok(())
    }
}

/// Print each job's result as `failure` (init failed: no handler ran).
pub(crate) fn print_failed(jobs: Vec<Job>, failure: &crate::report::Failure, limits: Limits) {
    let mut stdout = std::io::stdout().lock();
    for job in jobs {
        let (_, body, _) = encode_final(
            crate::handler::Outcome::failed(failure.clone()),
            job.control(),
            false,
            ("local", "local"),
            limits.max_output_bytes,
        );
        let _ = stdout.write_all(&body);
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Run every future at once on this task; the outputs in the futures' order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// One job: its id, outcome and job-done body.
async fn run_one<H: Handler>(
    handler: &H,
    job: Job,
    limits: Limits,
) -> (String, crate::handler::Outcome, Vec<u8>) {
    let id = job.id().to_owned();
    let span = job_span(&job);
    job.control()
        .attach(std::sync::Arc::new(LocalOutbound), true);
    let control = job.control().clone();
    let outcome = async {
        tracing::info!("Started.");
        let outcome = handler.call(job).await;
        control.close_progress().await;
        let outcome = outcome.with_job_logs();
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
    (id, outcome, body)
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
        let one = |text: &str| {
            let mut jobs = parse_test_jobs("t", text).unwrap();
            assert_eq!(jobs.len(), 1);
            jobs.remove(0)
        };
        assert_eq!(one(r#"{"input": {"a": 1}}"#).id(), "local_test");
        assert_eq!(one(r#"{"id": "mine", "input": 3}"#).id(), "mine");
        let err = |text: &str| parse_test_jobs("t", text).unwrap_err().to_string();
        assert!(err("{").starts_with("t is not valid JSON"));
        let parse = parse_test_jobs("t", "{").unwrap_err();
        let source = std::error::Error::source(&parse).expect("the JSON error is the source");
        assert!(source.is::<serde_json::Error>());
        assert!(err("1").starts_with("t must be a JSON object"));
        assert!(err(r#"{"prompt": 1}"#).starts_with("t has no `input`"));
        assert!(err(r#"{"input": null}"#).starts_with("t has no `input`"));
        assert_eq!(
            err(r#"{"id": 4, "input": 1}"#),
            "t: the job's `id` is not a string"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Prompt {
        text: String,
    }

    fn check_message(embedded: (&str, &str)) -> Option<String> {
        // A crate directory without a `test_input.json` of its own.
        let dir = std::env::temp_dir().join(format!("no-crate-{}", std::process::id()));
        let dir = dir.to_str().unwrap().to_owned();
        std::panic::catch_unwind(|| {
            check_test_inputs::<Prompt>(&dir, Some(embedded), crate::constraints::unchecked, || {
                None
            })
        })
        .err()
        .map(|p| p.downcast_ref::<String>().cloned().unwrap_or_default())
    }

    #[test]
    fn test_inputs_are_checked_against_the_input_type() {
        assert_eq!(
            check_message(("t.json", r#"{"input": {"text": "hi"}}"#)),
            None
        );
        assert_eq!(
            check_message((
                "t.json",
                r#"[{"input": {"text": "a"}}, {"input": {"text": 5}}]"#
            ))
            .unwrap(),
            "t.json[1]: the test input does not match the handler's input type \
             `worker::local::tests::Prompt`: input.text: invalid type: integer `5`, expected a string"
        );
        let missing = check_message(("t.json", r#"{"input": {}}"#)).unwrap();
        assert!(missing.contains("missing field `text`"), "{missing}");
        let not_json = check_message(("t.json", "{")).unwrap();
        assert!(not_json.contains("t.json is not valid JSON"), "{not_json}");
    }

    #[test]
    fn a_list_of_test_jobs() {
        let jobs = parse_test_jobs("t", r#"[{"input": 1}, {"id": "b", "input": 2}]"#).unwrap();
        let ids: Vec<&str> = jobs.iter().map(Job::id).collect();
        assert_eq!(ids, ["local_test_1", "b"]);
        let err = |text: &str| parse_test_jobs("t", text).unwrap_err().to_string();
        assert!(err("[]").starts_with("t is an empty list"));
        assert!(err(r#"[{"input": 1}, 2]"#).starts_with("t[1] must be a JSON object"));
        assert!(err(r#"[{"input": 1}, {}]"#).starts_with("t[1] has no `input`"));
    }
}
