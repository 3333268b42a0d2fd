//! Error reports: what a failed job tells the platform (RunPod's error report, §5.1 of the
//! protocol) and how panics are captured with their location and backtrace.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::panic::{self, PanicHookInfo};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

/// How an error type of yours is reported when a `#[worker::handler]` returns it: the report's
/// `error_type` (by default the Rust type's name, as `std::any::type_name` spells it, which is
/// not stable across compilers), its `error_message` (by default `Display`) and its
/// `error_traceback` (by default `error_type: message`). Implementing it overrides how the type
/// would otherwise be reported (a `std::error::Error`'s `source()` chain, a `Debug` dump), so
/// clients that read `error_type` see a name you chose and keep.
///
/// ```
/// #[derive(Debug)]
/// struct Overloaded { queue: usize }
///
/// impl std::fmt::Display for Overloaded {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "{} requests are ahead of this one; retry later", self.queue)
///     }
/// }
///
/// impl worker::Diagnostic for Overloaded {
///     fn error_type(&self) -> String {
///         "ModelOverloaded".into()
///     }
/// }
/// ```
///
/// A handler without the macros (`handler_fn`) reports through [`Failure`]: return
/// `Failure::new("ModelOverloaded", e.to_string())` as its error.
pub trait Diagnostic: fmt::Display {
    /// The report's `error_type`, such as `"ModelOverloaded"`.
    fn error_type(&self) -> String;

    /// The report's `error_message`; by default the `Display` text.
    fn error_message(&self) -> String {
        self.to_string()
    }

    /// The report's `error_traceback`; by default (`None`) `error_type: error_message`.
    fn error_traceback(&self) -> Option<String> {
        None
    }
}

/// What went wrong in one job: the part of RunPod's error report the job itself decides.
/// The worker adds `hostname`, `worker_id` and `runpod_version` when it posts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub(crate) error_type: String,
    pub(crate) error_message: String,
    pub(crate) error_traceback: String,
    /// [`Failure::exact`]: the job's `error` is this JSON text, not the report.
    pub(crate) exact: Option<String>,
    /// The job's recent log lines, oldest first (job_log.rs): the report's `logs`.
    pub(crate) logs: Vec<String>,
}

impl Failure {
    /// A failure with the given type name and message, and no further detail.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Failure {
        let error_message = message.into();
        let error_type = error_type.into();
        let error_traceback = format!("{error_type}: {error_message}");
        Failure {
            error_type,
            error_message,
            error_traceback,
            exact: None,
            logs: Vec::new(),
        }
    }

    /// Replace the traceback text (the report's `error_traceback`).
    pub fn with_traceback(mut self, traceback: impl Into<String>) -> Failure {
        self.error_traceback = traceback.into();
        self
    }

    /// A failed job whose `error` is exactly `error` (a string, or any JSON), instead of
    /// RunPod's six-key error report: what a Python handler's `return {"error": …}` sends, for
    /// clients that read `error` themselves. A string is the safe choice: RunPod may treat a
    /// job whose `error` is not a string as completed (runpod-python#299).
    ///
    /// ```
    /// # #[derive(serde::Deserialize)] struct Prompt { text: String }
    /// #[worker::handler(main = false)]
    /// fn generate(input: Prompt) -> Result<String, worker::Failure> {
    ///     if input.text.is_empty() {
    ///         return Err(worker::Failure::exact("text is empty"));
    ///     }
    ///     Ok(input.text)
    /// }
    /// # fn main() { let _ = worker_main; }
    /// ```
    ///
    /// Returning `Ok(json!({"error": …}))` is a *successful* job whose output has an `error`
    /// field; this is how to fail it.
    pub fn exact<T: serde::Serialize + ?Sized>(error: &T) -> Failure {
        let json = serde_json::to_string(error)
            .unwrap_or_else(|e| format!("\"the job's error could not be serialized: {e}\""));
        // Logged as the text for a string, else as the JSON.
        let message = serde_json::from_str::<String>(&json).unwrap_or_else(|_| json.clone());
        let mut failure = Failure::new("Error", message);
        failure.exact = Some(json);
        failure
    }

    /// The exact `error` JSON of a [`Failure::exact`], if this is one.
    pub(crate) fn exact_error(&self) -> Option<&serde_json::value::RawValue> {
        self.exact
            .as_deref()
            .and_then(|json| serde_json::from_str::<&serde_json::value::RawValue>(json).ok())
    }

    /// A failure from a standard error, its `source()` chain written into the traceback. A
    /// `Failure` (also one inside an `anyhow::Error` or a `Box<dyn Error>`) is itself.
    pub fn from_error(error_type: &str, error: &(dyn StdError + 'static)) -> Failure {
        if let Some(failure) = error.downcast_ref::<Failure>() {
            return failure.clone();
        }
        let error_message = error.to_string();
        let mut traceback = format!("{error_type}: {error_message}");
        let mut source = error.source();
        if source.is_some() {
            traceback.push_str("\n\nCaused by:");
        }
        let mut depth = 0;
        while let Some(cause) = source {
            let _ = write!(traceback, "\n    {depth}: {cause}");
            depth += 1;
            source = cause.source();
        }
        Failure {
            error_type: error_type.to_owned(),
            error_message,
            error_traceback: traceback,
            exact: None,
            logs: Vec::new(),
        }
    }

    /// A failure from a value that is only `Display` and `Debug`: the traceback is its debug form.
    pub(crate) fn from_debug(error_type: &str, message: String, debug: String) -> Failure {
        let error_traceback = if debug == message {
            format!("{error_type}: {message}")
        } else {
            format!("{error_type}: {message}\n\n{debug}")
        };
        Failure {
            error_type: error_type.to_owned(),
            error_message: message,
            error_traceback,
            exact: None,
            logs: Vec::new(),
        }
    }

    /// The error's type name (`error_type`).
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The error's message (`error_message`).
    pub fn message(&self) -> &str {
        &self.error_message
    }

    /// The job's recent log lines the report carries (`logs`), oldest first: filled in by the
    /// runtime when the job fails (`RUNPOD_LOG_CAPTURE`).
    pub fn logs(&self) -> &[String] {
        &self.logs
    }

    /// The source chain, panic location or backtrace (`error_traceback`).
    pub fn traceback(&self) -> &str {
        &self.error_traceback
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

/// A `Failure` is an error, so `?` can carry it into `anyhow` or a `Box<dyn Error>`; returned
/// from a handler as `Err(failure)` it is reported as itself.
impl StdError for Failure {}

impl Failure {
    /// This failure with its message and traceback cut to at most `max` characters each (a note
    /// says how much was left out), for a report that must fit the platform's size limit.
    pub(crate) fn shortened(&self, max: usize) -> Failure {
        Failure {
            error_type: cut(&self.error_type, max),
            error_message: cut(&self.error_message, max),
            error_traceback: cut(&self.error_traceback, max),
            exact: self
                .exact
                .as_ref()
                .filter(|json| json.len() <= max)
                .cloned(),
            // The newest lines that fit in `max` characters.
            logs: {
                let mut budget = max;
                let mut kept: Vec<String> = self
                    .logs
                    .iter()
                    .rev()
                    .map_while(|line| {
                        let line = cut(line, max);
                        budget = budget.checked_sub(line.len())?;
                        Some(line)
                    })
                    .collect();
                kept.reverse();
                kept
            },
        }
    }
}

/// `text` cut to its first `max` characters, with a note of how many were left out.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => {
            let left_out = text[end..].chars().count();
            format!("{}… ({left_out} more characters)", &text[..end])
        }
    }
}

/// The longest quoted value kept whole in an input error's message.
const QUOTED_MAX: usize = 100;

/// `message` with every quoted value (`"…"` or `` `…` ``, as serde quotes them) longer than
/// [`QUOTED_MAX`] characters cut, its length noted: a 3 MB string where a number was expected
/// must not make a 3 MB error report.
pub(crate) fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut chars = message.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        // Find the closing quote (a `"` escaped with a backslash does not close).
        let mut end = None;
        let mut escaped = false;
        for (i, d) in chars.by_ref() {
            if c == '"' && !escaped && d == '\\' {
                escaped = true;
                continue;
            }
            if d == c && !escaped {
                end = Some(i);
                break;
            }
            escaped = false;
        }
        let inner_start = start + c.len_utf8();
        let inner = &message[inner_start..end.unwrap_or(message.len())];
        let length = inner.chars().count();
        out.push(c);
        if length > QUOTED_MAX {
            let (cut_at, _) = inner
                .char_indices()
                .nth(QUOTED_MAX)
                .unwrap_or((inner.len(), ' '));
            out.push_str(&inner[..cut_at]);
            out.push('…');
            if end.is_some() {
                out.push(c);
            }
            out.push_str(&format!(" ({length} characters)"));
        } else {
            out.push_str(inner);
            if end.is_some() {
                out.push(c);
            }
        }
    }
    out
}

/* ---- panics ---- */

thread_local! {
    /// Set while this thread runs handler code; the panic hook then records the panic here
    /// instead of printing it, and the job reports it.
    static CAPTURE: RefCell<Option<Option<CapturedPanic>>> = const { RefCell::new(None) };
}

struct CapturedPanic {
    location: String,
    backtrace: Backtrace,
}

/// Install (once per process) the hook that records panics raised inside handlers. Panics
/// elsewhere go to the hook that was there before.
pub(crate) fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let captured = CAPTURE.with(|slot| {
                let mut slot = slot.borrow_mut();
                match slot.as_mut() {
                    Some(record) => {
                        *record = Some(CapturedPanic {
                            location: info
                                .location()
                                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                                .unwrap_or_else(|| "an unknown location".to_owned()),
                            backtrace: Backtrace::capture(),
                        });
                        true
                    }
                    None => false,
                }
            });
            if !captured {
                // The process may be going down: write out the buffered log lines first.
                crate::logging::flush();
                previous(info);
            }
        }));
    });
}

/// Run `f` (one poll of a handler future, or a whole sync handler) and turn a panic into a
/// [`Failure`] that carries the panic message, location and (with `RUST_BACKTRACE=1`) backtrace.
pub(crate) fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    let outer = CAPTURE.with(|slot| slot.borrow_mut().replace(None));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(f));
    let captured = CAPTURE.with(|slot| std::mem::replace(&mut *slot.borrow_mut(), outer));
    result.map_err(|payload| panic_failure(payload, captured.flatten()))
}

/// A future whose panics (in any poll) become a [`Failure`].
pub(crate) struct CatchPanic<F> {
    future: Pin<Box<F>>,
}

impl<F: Future> CatchPanic<F> {
    pub(crate) fn new(future: F) -> CatchPanic<F> {
        CatchPanic {
            future: Box::pin(future),
        }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Failure>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.get_mut().future.as_mut();
        match catch_panic(|| future.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(failure) => Poll::Ready(Err(failure)),
        }
    }
}

fn panic_failure(payload: Box<dyn Any + Send>, captured: Option<CapturedPanic>) -> Failure {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "the handler panicked with a value that is not a string".to_owned()
    };
    let mut traceback = String::new();
    match &captured {
        Some(c) => {
            let _ = write!(traceback, "panicked at {}:\n{message}", c.location);
            match c.backtrace.status() {
                BacktraceStatus::Captured => {
                    let _ = write!(traceback, "\n\nstack backtrace:\n{}", c.backtrace);
                }
                _ => traceback.push_str(
                    "\n\nnote: run with `RUST_BACKTRACE=1` to include a backtrace in this report",
                ),
            }
        }
        None => {
            let _ = write!(traceback, "panicked:\n{message}");
        }
    }
    Failure {
        error_type: "panic".to_owned(),
        error_message: message,
        error_traceback: traceback,
        exact: None,
        logs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("could not load the weights")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_chain_goes_into_the_traceback() {
        let err = Outer(std::io::Error::other("disk on fire"));
        let failure = Failure::from_error("my::Outer", &err);
        assert_eq!(failure.message(), "could not load the weights");
        assert_eq!(
            failure.traceback(),
            "my::Outer: could not load the weights\n\nCaused by:\n    0: disk on fire"
        );
    }

    #[test]
    fn panics_become_failures_with_location() {
        install_panic_hook();
        let failure = catch_panic(|| -> () { panic!("bad {}", 42) }).unwrap_err();
        assert_eq!(failure.error_type(), "panic");
        assert_eq!(failure.message(), "bad 42");
        assert!(
            failure.traceback().starts_with("panicked at "),
            "{}",
            failure.traceback()
        );
        assert!(
            failure.traceback().contains("report.rs"),
            "{}",
            failure.traceback()
        );
        assert_eq!(catch_panic(|| 7).unwrap(), 7);
    }

    #[test]
    fn long_quoted_values_are_cut_with_their_length() {
        let long = "x".repeat(3_000);
        let message = format!("invalid type: string \"{long}\", expected i64");
        let short = shorten_quoted(&message);
        assert_eq!(
            short,
            format!(
                "invalid type: string \"{}…\" (3000 characters), expected i64",
                "x".repeat(100)
            )
        );
        let field = format!("unknown field `{long}`, expected `a` or `b`");
        assert!(shorten_quoted(&field).ends_with("…` (3000 characters), expected `a` or `b`"));
        // Short values, escaped quotes and an unclosed quote are kept as they are.
        for kept in [
            "invalid type: integer `5`, expected a string",
            r#"invalid value: string "a \"b\" c", expected x"#,
            "unterminated \"quote",
        ] {
            assert_eq!(shorten_quoted(kept), kept);
        }
    }

    #[test]
    fn shortened_failures_say_how_much_was_cut() {
        let failure = Failure::new("E", "é".repeat(50));
        let short = failure.shortened(10);
        assert_eq!(
            short.message(),
            format!("{}… (40 more characters)", "é".repeat(10))
        );
        assert_eq!(failure.shortened(100), failure);
    }
}
