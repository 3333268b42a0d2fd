//! The runtime's one error type.

use std::fmt;

/// Why the worker could not start or run: bad configuration, a failed `#[worker::init]`, or an
/// invalid job given to [`Job::from_json`](crate::Job::from_json).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// What kind of [`Error`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An environment variable or command-line flag is missing or malformed.
    Config,
    /// A JSON value is not a job (`id` and `input` are required).
    InvalidJob,
    /// `#[worker::init]` failed or panicked.
    Init,
    /// The local test input could not be read or parsed.
    TestInput,
    /// An I/O error, such as failing to bind a local port.
    Io,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid_job(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidJob, message)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
