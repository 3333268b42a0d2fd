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

/// What went wrong in one job: the part of RunPod's error report the job itself decides.
/// The worker adds `hostname`, `worker_id` and `runpod_version` when it posts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub(crate) error_type: String,
    pub(crate) error_message: String,
    pub(crate) error_traceback: String,
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
        }
    }

    /// Replace the traceback text (the report's `error_traceback`).
    pub fn with_traceback(mut self, traceback: impl Into<String>) -> Failure {
        self.error_traceback = traceback.into();
        self
    }

    /// A failure from a standard error, its `source()` chain written into the traceback.
    pub fn from_error(error_type: &str, error: &(dyn StdError + 'static)) -> Failure {
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
}
