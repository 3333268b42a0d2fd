//! The runtime's one error type, and the shape every error type of this crate shares: a kind
//! to match on and a message that says what to fix.

/// The cause kept in an error of this crate (`source()`).
pub(crate) type Source = Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>;

/// `new(kind, message)`, `with_source`, `kind()`, `Display` (the message) and
/// `std::error::Error` (with `source()`) for a
/// `struct $name { kind: $kind, message: String, source: Source }`.
macro_rules! kinded_error {
    ($name:ident, $kind:ident) => {
        impl $name {
            pub(crate) fn new(kind: $kind, message: impl Into<String>) -> $name {
                $name {
                    kind,
                    message: message.into(),
                    source: None,
                }
            }

            /// Keep `cause` as this error's `source()`.
            #[allow(dead_code)]
            pub(crate) fn with_source(
                mut self,
                cause: impl Into<Box<dyn ::std::error::Error + Send + Sync + 'static>>,
            ) -> $name {
                self.source = Some(::std::sync::Arc::from(cause.into()));
                self
            }

            /// What kind of error this is.
            pub fn kind(&self) -> $kind {
                self.kind
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl ::std::error::Error for $name {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                self.source
                    .as_deref()
                    .map(|e| e as &(dyn ::std::error::Error + 'static))
            }
        }
    };
}
#[allow(unused_imports)] // used by the feature-gated `download` and `storage` modules
pub(crate) use kinded_error;

/// An error and its `source()` chain on one line (`a: b: c`), leaving out a source whose text
/// its parent already shows.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why the worker could not start or run ([`Worker::try_run`](crate::Worker::try_run)): bad
/// configuration, a failed init, a failed local test job; or an invalid job given to
/// [`Job::from_json`](crate::Job::from_json).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Source,
}

/// What kind of [`Error`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An environment variable or command-line flag is missing or malformed.
    Config,
    /// A JSON value is not a job (`id` and `input` are required).
    InvalidJob,
    /// The local test input could not be read or parsed.
    TestInput,
    /// A local test job failed (its result was printed).
    TestFailed,
    /// The init function failed or timed out; the jobs it held were told why.
    Init,
    /// The worker could not run: the async runtime or `--rp_serve_api`'s server could not
    /// start, or the job loop stopped unexpectedly.
    Runtime,
}

kinded_error!(Error, ErrorKind);

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid_job(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidJob, message)
    }
}
