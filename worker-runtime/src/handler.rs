//! The traits that turn a user function into a job handler, and what a job ends as.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::job::Job;
use crate::report::{self, Failure};

/// How one job ended: its serialized output, or a failure to report.
#[derive(Debug)]
pub struct Outcome {
    pub(crate) kind: OutcomeKind,
}

#[derive(Debug)]
pub(crate) enum OutcomeKind {
    Output(Box<RawValue>),
    Failed(Failure),
}

impl Outcome {
    /// A successful job whose `output` is `value`. A value that cannot be serialized to JSON
    /// makes a failed job whose message says why, so a result is never silently dropped.
    pub fn output<T: Serialize + ?Sized>(value: &T) -> Outcome {
        match serde_json::value::to_raw_value(value) {
            // serde_json writes NaN and infinity as `null`; only then is the slower walk needed.
            Ok(raw) if raw.get().contains("null") => {
                match crate::finite::find_non_finite(value, "output") {
                    Some((path, what)) => Outcome::failed(Failure::new(
                        "OutputNotSerializable",
                        format!(
                            "{path} is {what}, which JSON cannot represent; \
                             return a finite number, a string or null instead"
                        ),
                    )),
                    None => Outcome {
                        kind: OutcomeKind::Output(raw),
                    },
                }
            }
            Ok(raw) => Outcome {
                kind: OutcomeKind::Output(raw),
            },
            Err(e) => Outcome::failed(Failure::new(
                "OutputNotSerializable",
                format!(
                    "the handler's output (`{}`) could not be serialized to JSON: {e}",
                    std::any::type_name::<T>()
                ),
            )),
        }
    }

    /// A failed job.
    pub fn failed(failure: Failure) -> Outcome {
        Outcome {
            kind: OutcomeKind::Failed(failure),
        }
    }

    /// A failure gets the log lines of the job span the caller is in (job_log.rs), unless it
    /// has some already.
    pub(crate) fn with_job_logs(mut self) -> Outcome {
        if let OutcomeKind::Failed(failure) = &mut self.kind
            && failure.logs.is_empty()
        {
            failure.logs = crate::job_log::current();
        }
        self
    }

    /// The output JSON text, if the job succeeded.
    pub fn output_json(&self) -> Option<&str> {
        match &self.kind {
            OutcomeKind::Output(raw) => Some(raw.get()),
            OutcomeKind::Failed(_) => None,
        }
    }

    /// The failure, if the job failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.kind {
            OutcomeKind::Failed(f) => Some(f),
            OutcomeKind::Output(_) => None,
        }
    }
}

/// The running of one job: a future that ends in an [`Outcome`].
///
/// Build it with [`Invocation::new`] for async work or [`Invocation::blocking`] for code that
/// blocks (it then runs on a blocking thread, so other jobs and the heartbeat keep going).
/// Panics inside either are caught and reported as the job's failure.
pub struct Invocation {
    future: Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>,
    /// For blocking work: closed when its thread returns, which may be after the invocation
    /// was dropped (a cancelled job); the job keeps its slot until then.
    thread: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Invocation {
    /// An invocation that runs `future` on the async runtime.
    pub fn new(future: impl Future<Output = Outcome> + Send + 'static) -> Invocation {
        Invocation {
            future: Box::pin(future),
            thread: None,
        }
    }

    /// An invocation that runs blocking code on the runtime's blocking thread pool.
    pub fn blocking(work: impl FnOnce() -> Outcome + Send + 'static) -> Invocation {
        // The blocking thread logs inside the job's span too, so its lines carry the job id.
        let span = tracing::Span::current();
        let (running, thread) = tokio::sync::oneshot::channel::<()>();
        let mut invocation = Invocation::new(async move {
            match tokio::task::spawn_blocking(move || {
                // Dropped when the thread is done with the work, panic or not.
                let _running = running;
                span.in_scope(|| report::catch_panic(work))
            })
            .await
            {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(failure)) => Outcome::failed(failure),
                Err(join) => Outcome::failed(Failure::new(
                    "JoinError",
                    format!("the blocking handler task did not finish: {join}"),
                )),
            }
        });
        invocation.thread = Some(thread);
        invocation
    }

    /// For blocking work, what resolves when its thread returns (taken once).
    pub(crate) fn take_thread(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.thread.take()
    }

    /// An invocation that is already finished.
    pub fn ready(outcome: Outcome) -> Invocation {
        Invocation::new(std::future::ready(outcome))
    }
}

impl Future for Invocation {
    type Output = Outcome;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        // Each poll runs handler code; a panic in it becomes the job's failure. The future is
        // never polled again after that, since the invocation is finished.
        let future = self.future.as_mut();
        match report::catch_panic(|| future.poll(cx)) {
            Ok(poll) => poll,
            Err(failure) => Poll::Ready(Outcome::failed(failure)),
        }
    }
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation").finish_non_exhaustive()
    }
}

/// A job handler: what the worker calls for each job.
///
/// `#[worker::handler]` implements it for you. Without the macro, use [`handler_fn`], or
/// implement it on your own type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a job handler",
    note = "wrap an async function with `worker::handler_fn(f)`, or annotate it with `#[worker::handler]`"
)]
pub trait Handler: Send + Sync + 'static {
    /// Start running `job`.
    fn call(&self, job: Job) -> Invocation;

    /// How many jobs the worker may hold (taken and not yet reported) when it runs
    /// `concurrency` calls at once: `concurrency` for a handler of one job. A handler that
    /// gathers jobs ([`Batched`](crate::Batched)) runs `concurrency` batches at once and holds
    /// more. Asked before the first job-take and whenever a dynamic concurrency changes.
    fn jobs_to_hold(&self, concurrency: usize) -> usize {
        concurrency
    }
}

/// A [`Handler`] from an async function `f(input, job) -> Result<T, E>`, where the input is
/// deserialized from the job's `input`.
///
/// ```no_run
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Prompt { text: String }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     worker::run(worker::handler_fn(|input: Prompt, _job: worker::Job| async move {
///         Ok::<_, std::io::Error>(input.text.to_uppercase())
///     }))
///     .await
/// }
/// ```
pub fn handler_fn<F, I, Fut, T, E>(f: F) -> HandlerFn<F, I>
where
    F: Fn(I, Job) -> Fut + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize,
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    HandlerFn {
        f,
        _input: PhantomData,
    }
}

/// The [`Handler`] returned by [`handler_fn`].
pub struct HandlerFn<F, I> {
    f: F,
    _input: PhantomData<fn(I)>,
}

impl<F, I> fmt::Debug for HandlerFn<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFn")
            .field("input", &std::any::type_name::<I>())
            .finish()
    }
}

impl<F, I, Fut, T, E> Handler for HandlerFn<F, I>
where
    F: Fn(I, Job) -> Fut + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize,
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    fn call(&self, job: Job) -> Invocation {
        let input = match deserialize_input::<I>(&job) {
            Ok(input) => input,
            Err(failure) => return Invocation::ready(Outcome::failed(failure)),
        };
        let future = (self.f)(input, job);
        Invocation::new(async move {
            match future.await {
                Ok(output) => Outcome::output(&output),
                Err(error) => Outcome::failed(failure_of_error(error)),
            }
        })
    }
}

/// The failure of an error `handler_fn` or `batch_fn` got: its type name and `source()` chain
/// (or the `Failure` inside it, as itself).
pub(crate) fn failure_of_error<E>(error: E) -> Failure
where
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    let boxed: Box<dyn StdError + Send + Sync + 'static> = error.into();
    Failure::from_error(std::any::type_name::<E>(), &*boxed)
}

/// Deserialize the job's `input` into the handler's input type, then check it against the
/// type's declared constraints ([`crate::constraints`]).
pub(crate) fn deserialize_checked<I: DeserializeOwned>(
    job: &Job,
    check: crate::constraints::Check<I>,
    schema: fn() -> Option<serde_json::Value>,
) -> Result<I, Failure> {
    let input = deserialize_described::<I>(job, schema)?;
    check(&input, job.input())?;
    Ok(input)
}

/// Deserialize the job's `input` into the handler's input type. The message names the JSON
/// path of the problem (`input.prompt: invalid type: integer `5`, expected a string`).
pub(crate) fn deserialize_input<I: DeserializeOwned>(job: &Job) -> Result<I, Failure> {
    deserialize_described(job, || None)
}

/// [`deserialize_input`], where the input type's JSON Schema (from `schema`, computed only on
/// failure) says what a missing field is: ``input: missing field `text` (a string: The text
/// to score.)``.
pub(crate) fn deserialize_described<I: DeserializeOwned>(
    job: &Job,
    schema: impl FnOnce() -> Option<serde_json::Value>,
) -> Result<I, Failure> {
    serde_path_to_error::deserialize::<_, I>(job.input()).map_err(|e| {
        let hint = missing_field_hint(&e, schema);
        let path = e.path().to_string();
        let location = if path == "." {
            "input".to_owned()
        } else if path.starts_with('[') {
            format!("input{path}")
        } else {
            format!("input.{path}")
        };
        // A huge value quoted in the message is cut: the report must stay small.
        let message = report::shorten_quoted(&format!("{location}: {}", e.into_inner()));
        let message = match hint {
            Some(hint) => format!("{message} ({hint})"),
            None => message,
        };
        let traceback = format!(
            "InvalidInput: {message}\n\nThe job's input does not match the handler's input type `{}`.",
            std::any::type_name::<I>()
        );
        Failure::new("InvalidInput", message).with_traceback(traceback)
    })
}

/// For serde's "missing field `x`": what `x` is, from the schema at the error's path.
fn missing_field_hint(
    error: &serde_path_to_error::Error<serde_json::Error>,
    schema: impl FnOnce() -> Option<serde_json::Value>,
) -> Option<String> {
    use crate::contract::{Step, describe_field};
    use serde_path_to_error::Segment;
    let message = error.inner().to_string();
    let field = message.strip_prefix("missing field `")?.split('`').next()?;
    let steps = error
        .path()
        .iter()
        .map(|segment| match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { .. } => Some(Step::Index),
            _ => None,
        })
        .collect::<Option<Vec<Step>>>()?;
    describe_field(&schema()?, &steps, field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Prompt {
        prompt: String,
        options: Option<Vec<u32>>,
    }

    fn input_error<I: DeserializeOwned>(input: serde_json::Value) -> String {
        deserialize_input::<I>(&Job::new("j", input))
            .err()
            .unwrap()
            .message()
            .to_owned()
    }

    #[test]
    fn input_errors_name_the_json_path() {
        assert_eq!(
            input_error::<Prompt>(json!({"prompt": 5})),
            "input.prompt: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            input_error::<Prompt>(json!({})),
            "input: missing field `prompt`"
        );
        assert_eq!(
            input_error::<Prompt>(json!({"prompt": "a", "options": [1, "x"]})),
            "input.options[1]: invalid type: string \"x\", expected u32"
        );
        assert_eq!(
            input_error::<Vec<u8>>(json!([1, -1])),
            "input[1]: invalid value: integer `-1`, expected u8"
        );
        assert_eq!(
            input_error::<Prompt>(json!(null)),
            "input: invalid type: null, expected struct Prompt"
        );
    }

    #[cfg(feature = "schema")]
    #[test]
    fn a_missing_field_is_named_with_what_it_is() {
        #[derive(Debug, Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Options {
            /// Sampling temperature.
            temperature: f32,
            mode: Mode,
        }
        #[derive(Debug, Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "lowercase")]
        enum Mode {
            Fast,
            Exact,
        }
        /// A prompt.
        #[derive(Debug, Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Request {
            /// The text to complete.
            ///
            /// Longer notes after a blank line are left out.
            prompt: String,
            options: Option<Options>,
            items: Vec<Options>,
        }
        let schema = || Some(crate::contract::schema_of::<Request>());
        let message = |input: serde_json::Value| {
            deserialize_described::<Request>(&Job::new("j", input), schema)
                .err()
                .unwrap()
                .message()
                .to_owned()
        };
        assert_eq!(
            message(json!({"items": []})),
            "input: missing field `prompt` (a string: The text to complete.)"
        );
        assert_eq!(
            message(json!({"prompt": "p", "options": {"mode": "fast"}, "items": []})),
            "input.options: missing field `temperature` (a number: Sampling temperature.)"
        );
        assert_eq!(
            message(json!({"prompt": "p", "items": [{"temperature": 1.0}]})),
            "input.items[0]: missing field `mode` (one of \"fast\", \"exact\")"
        );
        // Without a schema, serde's words alone.
        assert_eq!(
            input_error::<Request>(json!({"items": []})),
            "input: missing field `prompt`"
        );
    }

    #[test]
    fn unknown_fields_and_tags_list_the_accepted_ones() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            text: String,
            explain: Option<bool>,
            steps: Option<u32>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        #[allow(dead_code)]
        enum Shape {
            Circle { r: f64 },
            Square { side: f64 },
        }
        assert_eq!(
            input_error::<Strict>(json!({"txet": "a"})),
            "input.txet: unknown field `txet`, expected one of `text`, `explain`, `steps`"
        );
        assert_eq!(
            input_error::<Shape>(json!({"kind": "triangle"})),
            "input.kind: unknown variant `triangle`, expected `circle` or `square`"
        );
    }

    #[test]
    fn unserializable_output_fails_the_job_with_a_reason() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 2);
        let outcome = Outcome::output(&map);
        let failure = outcome.failure().expect("must fail");
        assert_eq!(failure.error_type(), "OutputNotSerializable");
        assert!(
            failure.message().contains("key must be a string"),
            "{}",
            failure.message()
        );
    }

    #[test]
    fn non_finite_floats_fail_the_job_with_their_path() {
        let outcome = Outcome::output(&serde_json::json!({"ok": 1}));
        assert_eq!(outcome.output_json(), Some("{\"ok\":1}"));
        let outcome = Outcome::output(&vec![Some(1.0), None, Some(f64::NAN)]);
        assert_eq!(
            outcome.failure().unwrap().message(),
            "output[2] is NaN, which JSON cannot represent; return a finite number, a string or null instead"
        );
        assert_eq!(
            Outcome::output(&vec![None::<f64>]).output_json(),
            Some("[null]")
        );
    }

    #[tokio::test]
    async fn handler_fn_runs_and_reports_errors_with_their_chain() {
        let h = handler_fn(|input: Prompt, job: Job| async move {
            if input.prompt == "fail" {
                return Err(std::io::Error::other(format!("no luck for {}", job.id())));
            }
            Ok(input.prompt.len())
        });
        let ok = h.call(Job::new("a", json!({"prompt": "four"}))).await;
        assert_eq!(ok.output_json(), Some("4"));
        let failed = h.call(Job::new("b", json!({"prompt": "fail"}))).await;
        let failure = failed.failure().unwrap();
        assert_eq!(failure.error_type(), "std::io::error::Error");
        assert_eq!(failure.message(), "no luck for b");
    }

    #[tokio::test]
    async fn panics_in_async_and_blocking_handlers_are_caught() {
        report::install_panic_hook();
        let outcome = Invocation::new(async { panic!("async boom") }).await;
        assert_eq!(outcome.failure().unwrap().message(), "async boom");
        let outcome = Invocation::blocking(|| panic!("blocking boom")).await;
        assert_eq!(outcome.failure().unwrap().message(), "blocking boom");
    }
}
