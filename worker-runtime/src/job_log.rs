//! A failed job's report carries the job's own recent log lines, so whoever reads the failure
//! sees why without opening the worker's logs.
//!
//! Each `job` span has a bounded buffer ([`JobLog`], in the span's `JobFields` extension, which
//! the logging layer inserts for the job id anyway); [`JobLogLayer`]
//! appends every event logged inside the span (the handler's, the download and storage
//! helpers', and the runtime's own warnings and errors: its routine "Started." is not news),
//! and [`current`] reads the buffer of the job span the caller is in, when the job's outcome is
//! a failure. Past [`MAX_BYTES`] the oldest lines go. Lines are cut to [`MAX_LINE_CHARS`], and
//! the API key and `Authorization` values are replaced by `[redacted]` before they are kept.
//!
//! `RUNPOD_LOG_CAPTURE` (the Python SDK 2.0's variable) chooses: `auto`, our default, keeps the
//! lines the worker logs at its log level; `all` keeps every level, DEBUG and TRACE included,
//! for the report only (the worker's own output stays at its level); `off` keeps none.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::error::Error;
use crate::logging::JobFields;

/// The most bytes of log lines a job's report carries.
pub(crate) const MAX_BYTES: usize = 16 * 1024;
/// The longest line kept.
pub(crate) const MAX_LINE_CHARS: usize = 500;

/// `RUNPOD_LOG_CAPTURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Capture {
    /// The lines at the worker's log level (the default).
    #[default]
    Auto,
    /// Every level.
    All,
    /// None.
    Off,
}

impl Capture {
    /// `RUNPOD_LOG_CAPTURE`'s value (unset or empty: `auto`).
    pub(crate) fn parse(value: Option<&str>) -> Result<Capture, Error> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("auto") => Ok(Capture::Auto),
            Some("all") => Ok(Capture::All),
            Some("off") => Ok(Capture::Off),
            Some(_) => Err(Error::config(format!(
                "RUNPOD_LOG_CAPTURE={:?} is not a capture mode; use auto (the default: a failed \
                 job's report carries its log lines at the log level), all (every level) or off",
                value.unwrap_or_default()
            ))),
        }
    }
}

/// Whether job spans get a buffer: off until the runtime's subscriber is installed with a mode
/// other than `off`.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Values never kept in a line (the API key); set at start.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Never keep `secret` (at least 8 characters; shorter ones would redact ordinary words).
pub(crate) fn add_secret(secret: &str) {
    let secret = secret.trim_ascii();
    if secret.chars().count() >= 8 {
        let mut secrets = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
        }
    }
}

/// One job's kept lines.
#[derive(Debug)]
pub(crate) struct JobLog {
    started: Instant,
    /// `None` until the job logs a line: most jobs keep none, and then have nothing to drop.
    lines: Mutex<Option<Lines>>,
}

#[derive(Debug, Default)]
struct Lines {
    kept: VecDeque<String>,
    bytes: usize,
    dropped: usize,
}

impl Default for JobLog {
    fn default() -> JobLog {
        JobLog::new()
    }
}

impl JobLog {
    fn new() -> JobLog {
        JobLog {
            started: Instant::now(),
            lines: Mutex::new(None),
        }
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let lines = lines.get_or_insert_default();
        lines.bytes += line.len();
        lines.kept.push_back(line);
        while lines.bytes > MAX_BYTES && lines.kept.len() > 1 {
            if let Some(old) = lines.kept.pop_front() {
                lines.bytes -= old.len();
                lines.dropped += 1;
            }
        }
    }

    /// The kept lines, oldest first, after a note of how many older ones were dropped.
    fn snapshot(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lines) = lines.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(lines.kept.len() + 1);
        if lines.dropped > 0 {
            out.push(format!(
                "({} earlier lines dropped: a report keeps the last {} KiB)",
                lines.dropped,
                MAX_BYTES / 1024
            ));
        }
        out.extend(lines.kept.iter().cloned());
        out
    }
}

/// The lines kept for the job span the caller is in (empty outside one, or when capture is
/// off or another subscriber is installed).
pub(crate) fn current() -> Vec<String> {
    if !ENABLED.load(Ordering::Acquire) {
        return Vec::new();
    }
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<JobFields>().map(|f| f.log.snapshot()))
        })
        .flatten()
        .unwrap_or_default()
}

/// Keeps the events logged inside a `job` span in its [`JobLog`].
pub(crate) struct JobLogLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JobLogLayer {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let target = meta.target();
        // The runtime's routine lines ("Started.", posts) are not news in a failure report;
        // its warnings and errors, and its helpers the handler calls, are.
        if target.starts_with("worker::")
            && *meta.level() > tracing::Level::WARN
            && !["worker::download", "worker::storage"]
                .iter()
                .any(|t| target.starts_with(t))
        {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let extensions = span.extensions();
            let Some(fields) = extensions.get::<JobFields>() else {
                continue;
            };
            let log = &fields.log;
            let mut message = crate::logging::Message::default();
            event.record(&mut message);
            let mut line = format!(
                "+{}ms {:<5} {}{}",
                log.started.elapsed().as_millis(),
                crate::logging::level_name(meta.level()),
                message.text,
                message.extra
            );
            line = redact(&line, &SECRETS.lock().unwrap_or_else(|p| p.into_inner()));
            if line.chars().count() > MAX_LINE_CHARS {
                line = line.chars().take(MAX_LINE_CHARS).collect::<String>() + "…";
            }
            log.push(line);
            return;
        }
    }
}

/// `line` with every secret, and the value after `authorization` or `bearer`, replaced.
fn redact(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_owned();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[redacted]");
        }
    }
    for marker in ["authorization", "bearer"] {
        out = redact_after(&out, marker);
    }
    out
}

/// Replace the token after each (case-insensitive) `marker`, skipping the separators between
/// them (`: `, `=`, quotes, and a `Bearer` scheme), up to a space, quote, comma or brace.
fn redact_after(line: &str, marker: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut rest = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(marker) {
        let start = from + found + marker.len();
        let bytes = line.as_bytes();
        let mut value = start;
        while value < line.len() && matches!(bytes[value], b':' | b'=' | b' ' | b'"' | b'\'') {
            value += 1;
        }
        // `Authorization: Bearer <token>`: the scheme stays, the token goes.
        if lower[value..].starts_with("bearer ") {
            from = value;
            continue;
        }
        let end = line[value..]
            .find([' ', '"', '\'', ',', '}', ';'])
            .map_or(line.len(), |n| value + n);
        if end > value && !line[value..end].starts_with("[redacted]") {
            out.push_str(&line[rest..value]);
            out.push_str("[redacted]");
            rest = end;
        }
        from = end.max(start);
        if from >= line.len() {
            break;
        }
    }
    out.push_str(&line[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_modes_parse_or_say_which_there_are() {
        assert_eq!(Capture::parse(None).unwrap(), Capture::Auto);
        assert_eq!(Capture::parse(Some("")).unwrap(), Capture::Auto);
        assert_eq!(Capture::parse(Some("ALL")).unwrap(), Capture::All);
        assert_eq!(Capture::parse(Some(" off ")).unwrap(), Capture::Off);
        let e = Capture::parse(Some("yes")).unwrap_err().to_string();
        assert!(
            e.contains("RUNPOD_LOG_CAPTURE=\"yes\"") && e.contains("auto"),
            "{e}"
        );
    }

    #[test]
    fn secrets_and_authorization_values_are_redacted() {
        let secrets = vec!["rpa_SECRETKEY123".to_owned()];
        assert_eq!(
            redact("calling with key rpa_SECRETKEY123 now", &secrets),
            "calling with key [redacted] now"
        );
        assert_eq!(
            redact("headers: {\"Authorization\": \"Bearer abc.def\"}", &[]),
            "headers: {\"Authorization\": \"Bearer [redacted]\"}"
        );
        assert_eq!(
            redact("authorization=xyz next", &[]),
            "authorization=[redacted] next"
        );
        assert_eq!(
            redact("AUTHORIZATION: tok", &[]),
            "AUTHORIZATION: [redacted]"
        );
        assert_eq!(redact("bearer tok", &[]), "bearer [redacted]");
        assert_eq!(redact("no secrets here", &secrets), "no secrets here");
        assert_eq!(redact("authorization", &[]), "authorization");
    }

    #[test]
    fn a_job_log_keeps_the_last_lines_within_its_bound() {
        let log = JobLog::new();
        for n in 0..1000 {
            log.push(format!("line {n:04} {}", "x".repeat(90)));
        }
        let lines = log.snapshot();
        assert!(lines[0].contains("earlier lines dropped"), "{}", lines[0]);
        assert!(lines.last().unwrap().starts_with("line 0999"));
        let kept: usize = lines[1..].iter().map(String::len).sum();
        assert!(kept <= MAX_BYTES, "{kept}");
        assert!(kept > MAX_BYTES - 200, "{kept}");
    }
}
