//! The emulator's error type: what went wrong starting it or queueing a job, in a message that
//! says what to fix.

use std::fmt;

/// Why the emulator could not start, or refused a job given to
/// [`EmulatorHandle::submit`](crate::EmulatorHandle::submit).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// What kind of [`Error`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting of the builder is invalid (such as the endpoint id).
    Config,
    /// The emulator could not listen on its address.
    Io,
    /// A job submitted without HTTP was refused, as `/run` would refuse it.
    Refused,
    /// No job has this id.
    NotFound,
    /// The job did not end within the time given to [`EmulatorHandle::finished`](crate::EmulatorHandle::finished).
    Timeout,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
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
