//! Logging through `tracing`: human text locally, RunPod's JSON lines
//! (`{"requestId","message","level"}`) when `RUNPOD_ENDPOINT_ID` is set. Every line logged while
//! a job runs (by the runtime or by the handler) carries the job id, and its `batchId` prefix.
//!
//! Production lines go through a buffer of our own written by a background thread, not
//! tracing-appender's `non_blocking`: measured (BENCHMARKS.md, "The log writer against
//! tracing-appender") it costs ~1.8 µs of CPU per line against ~15 µs, idles 4 MB smaller,
//! never drops a line and adds no crates.

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub(crate) use crate::job_log::Capture;
use crate::job_log::JobLogLayer;

/// RunPod's log levels, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LogLevel {
    NotSet,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// A name (any case; `WARNING` too) or the Python SDK's index 0–5.
    pub(crate) fn parse(value: &str) -> Option<LogLevel> {
        let levels = [
            LogLevel::NotSet,
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ];
        if let Ok(index) = value.trim().parse::<usize>() {
            return levels.get(index).copied();
        }
        Some(match value.trim().to_ascii_uppercase().as_str() {
            "NOTSET" | "OFF" => LogLevel::NotSet,
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "INFO" => LogLevel::Info,
            "WARN" | "WARNING" => LogLevel::Warn,
            "ERROR" => LogLevel::Error,
            _ => return None,
        })
    }

    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::NotSet => LevelFilter::OFF,
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// Text for people, or RunPod's JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Where log lines go: stdout in production (like the Python SDK), stderr in local test mode
/// so that stdout carries only the job's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogTarget {
    Stdout,
    Stderr,
}

/// Install the global subscriber. Does nothing if the program already installed one.
pub(crate) fn init(level: LogLevel, format: LogFormat, target: LogTarget, capture: Capture) {
    match target {
        LogTarget::Stdout => install(level, format, capture, BufferedStdout::start()),
        LogTarget::Stderr => install(level, format, capture, std::io::stderr),
    }
}

/// Write out the production log lines still buffered (see [`BufferedStdout`]). Called before the
/// process exits; harmless when nothing is buffered or logging goes to stderr.
pub(crate) fn flush() {
    if let Some(buffer) = STDOUT_BUFFER.get() {
        buffer.flush();
    }
}

/// How long a production log line may wait in the buffer before it is written out.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A buffer this large is written out without waiting.
const FLUSH_AT: usize = 64 * 1024;

static STDOUT_BUFFER: OnceLock<&'static LineBuffer> = OnceLock::new();

/// Production logs to stdout, buffered and written by a background thread: a log line costs the
/// job's task a copy into memory instead of a `write(2)` on its path (two lines per job were a
/// visible share of a trivial job's cost). Lines reach stdout in order within [`FLUSH_EVERY`];
/// a WARN or ERROR line writes out everything before it and itself at once, a panic outside a
/// handler flushes, and the worker flushes before it exits, so what explains a failure is never
/// held back. An idle worker's log thread sleeps until a line arrives.
#[derive(Clone, Copy)]
struct BufferedStdout(&'static LineBuffer);

struct LineBuffer {
    pending: Mutex<Vec<u8>>,
    /// Held while writing to stdout, so that chunks taken from `pending` go out in order.
    out: Mutex<()>,
    /// Signalled when `pending` stops being empty, or grows past [`FLUSH_AT`].
    arrived: Condvar,
    /// The writer thread runs; without it every line is written at once.
    threaded: AtomicBool,
}

impl LineBuffer {
    fn flush(&self) {
        let _out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let chunk = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !chunk.is_empty() {
            let mut stdout = io::stdout().lock();
            let _ = stdout.write_all(&chunk);
            let _ = stdout.flush();
        }
    }

    /// The writer thread: wait for a line, give others [`FLUSH_EVERY`] to join it, write all.
    fn write_out(&self) {
        loop {
            {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                while pending.is_empty() {
                    pending = self
                        .arrived
                        .wait(pending)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if pending.len() < FLUSH_AT {
                    let _ = self.arrived.wait_timeout(pending, FLUSH_EVERY);
                }
            }
            self.flush();
        }
    }
}

impl BufferedStdout {
    /// The process's one buffer, with its writer thread (started on first use).
    fn start() -> BufferedStdout {
        BufferedStdout(STDOUT_BUFFER.get_or_init(|| {
            let buffer: &'static LineBuffer = Box::leak(Box::new(LineBuffer {
                pending: Mutex::new(Vec::with_capacity(8 * 1024)),
                out: Mutex::new(()),
                arrived: Condvar::new(),
                threaded: AtomicBool::new(false),
            }));
            let spawned = std::thread::Builder::new()
                .name("worker-log".into())
                .stack_size(64 * 1024)
                .spawn(move || buffer.write_out());
            buffer.threaded.store(spawned.is_ok(), Ordering::Release);
            buffer
        }))
    }
}

/// One event's line (tracing-subscriber formats a whole line, then writes it once).
struct LineWriter {
    buffer: &'static LineBuffer,
    urgent: bool,
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = self
            .buffer
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let was_empty = pending.is_empty();
        pending.extend_from_slice(bytes);
        if was_empty || pending.len() >= FLUSH_AT {
            self.buffer.arrived.notify_one();
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.urgent || !self.buffer.threaded.load(Ordering::Acquire) {
            self.buffer.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buffer: self.0,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            buffer: self.0,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

fn install<W>(level: LogLevel, format: LogFormat, capture: Capture, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Dependencies (HTTP stack) only speak up for warnings, whatever the level.
    let admits = |meta: &Metadata<'_>, max: LevelFilter| {
        let ours = !["hyper", "h2", "reqwest", "rustls", "tower", "axum"]
            .iter()
            .any(|p| meta.target().starts_with(p));
        (ours || *meta.level() <= Level::WARN) && max >= *meta.level()
    };
    let up_to = move |max: LevelFilter| filter_fn(move |meta| admits(meta, max));
    // The job log sees every `job` span (its buffer lives there), whatever the level.
    let job_spans_and = move |max: LevelFilter| {
        filter_fn(move |meta| (meta.is_span() && meta.name() == "job") || admits(meta, max))
    };
    let filter = up_to(level.filter());
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(NoSpanFields)
        .event_format(RunpodFormat { format })
        .with_writer(writer);
    // A failed job's report carries its lines (job_log.rs): at the log level, or all of them.
    let job_log = match capture {
        Capture::Off => None,
        Capture::Auto => Some(JobLogLayer.with_filter(job_spans_and(level.filter()))),
        Capture::All => Some(JobLogLayer.with_filter(job_spans_and(LevelFilter::TRACE))),
    };
    let installed = tracing_subscriber::registry()
        .with(JobFieldsLayer)
        .with(job_log)
        .with(InitLinesLayer.with_filter(filter.clone()))
        .with(fmt.with_filter(filter))
        .try_init();
    if installed.is_ok() && capture != Capture::Off {
        crate::job_log::enable();
    }
}

/// The most lines of init's log kept for the report of an init failure, and their longest.
const INIT_LINES: usize = 20;
const INIT_LINE_CHARS: usize = 300;

/// Whether init's lines are being kept: one relaxed load per event otherwise.
static CAPTURING: AtomicBool = AtomicBool::new(false);
static CAPTURED: Mutex<std::collections::VecDeque<String>> =
    Mutex::new(std::collections::VecDeque::new());

/// Keep the last lines logged while `#[worker::init]` runs (by the user's code and any thread
/// it started; not the runtime's own lines), for [`init_lines`]. Only with the runtime's own
/// subscriber; a program that installed its own keeps its lines to itself.
pub(crate) fn capture_init_lines() {
    CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).clear();
    CAPTURING.store(true, Ordering::Release);
}

/// Stop keeping lines; the last ones kept, oldest first.
pub(crate) fn init_lines() -> Vec<String> {
    CAPTURING.store(false, Ordering::Release);
    std::mem::take(&mut *CAPTURED.lock().unwrap_or_else(|p| p.into_inner())).into()
}

struct InitLinesLayer;

impl<S: Subscriber> Layer<S> for InitLinesLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !CAPTURING.load(Ordering::Relaxed) {
            return;
        }
        let target = event.metadata().target();
        // The runtime's own lines (job-takes while init runs, "running init function") are not
        // init's; its download and storage helpers, used by init, are.
        if target.starts_with("worker::")
            && !["worker::download", "worker::storage"]
                .iter()
                .any(|t| target.starts_with(t))
        {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        let mut line = format!(
            "{:<5} {}{}",
            level_name(event.metadata().level()),
            message.text,
            message.extra
        );
        if line.chars().count() > INIT_LINE_CHARS {
            line = line.chars().take(INIT_LINE_CHARS).collect::<String>() + "…";
        }
        let mut captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
        if captured.len() == INIT_LINES {
            captured.pop_front();
        }
        captured.push_back(line);
    }
}

/// The span every job runs in; the formatter reads the job id and batch id from it.
pub(crate) fn job_span(job: &crate::Job) -> tracing::Span {
    tracing::info_span!("job", job_id = job.id(), batch_id = job.batch_id())
}

/// The job id and batch id recorded on a `job` span.
/// Also the job's log buffer for its failure report (job_log.rs): one extension per job
/// span, and no allocation until a line is kept.
#[derive(Debug, Default)]
pub(crate) struct JobFields {
    job_id: Option<String>,
    batch_id: Option<String>,
    pub(crate) log: crate::job_log::JobLog,
}

impl Visit for JobFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "job_id" => self.job_id = Some(value.to_owned()),
            "batch_id" => self.batch_id = Some(value.to_owned()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

struct JobFieldsLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JobFieldsLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "job" {
            return;
        }
        let mut fields = JobFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
}

/// The message of an event, with its other fields appended as `key=value`.
#[derive(Default)]
pub(crate) struct Message {
    pub(crate) text: String,
    pub(crate) extra: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.extra, " {}={}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.extra, " {}={:?}", field.name(), value);
        }
    }
}

/// One JSON log line, in RunPod's key order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    #[serde(rename = "requestId")]
    request_id: Option<&'a str>,
    message: &'a str,
    level: &'a str,
}

struct RunpodFormat {
    format: LogFormat,
}

/// The fmt layer writes every new span's fields out as text for the event formatter, which
/// [`RunpodFormat`] never reads (it takes the ids from [`JobFields`]): without this, a string
/// formatted and kept for every job.
struct NoSpanFields;

impl<'w> FormatFields<'w> for NoSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'w>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// A text line's start: the level, padded as the Python SDK pads it, and the separator.
fn text_prefix(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE  | ",
        Level::DEBUG => "DEBUG  | ",
        Level::INFO => "INFO   | ",
        Level::WARN => "WARN   | ",
        Level::ERROR => "ERROR  | ",
    }
}

pub(crate) fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

impl<S, N> FormatEvent<S, N> for RunpodFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The job's span, read in place: a log line costs no copy of its ids.
        let job_span = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find(|span| span.extensions().get::<JobFields>().is_some())
        });
        let extensions = job_span.as_ref().map(|span| span.extensions());
        let fields = extensions.as_ref().and_then(|e| e.get::<JobFields>());
        let job_id = fields.and_then(|f| f.job_id.as_deref());
        let batch_id = fields.and_then(|f| f.batch_id.as_deref());
        let mut message = Message::default();
        event.record(&mut message);
        match self.format {
            LogFormat::Text => {
                writer.write_str(text_prefix(event.metadata().level()))?;
                if let Some(id) = job_id {
                    writer.write_str(id)?;
                    writer.write_str(" | ")?;
                }
                if let Some(batch) = batch_id {
                    write!(writer, "[batchId={batch}] ")?;
                }
                writer.write_str(&message.text)?;
                writer.write_str(&message.extra)?;
                writer.write_char('\n')
            }
            LogFormat::Json => {
                let mut text = String::new();
                if let Some(batch) = batch_id {
                    let _ = write!(text, "[batchId={batch}] ");
                }
                text.push_str(&message.text);
                text.push_str(&message.extra);
                let line = JsonLine {
                    request_id: job_id,
                    message: &text,
                    level: level_name(event.metadata().level()),
                };
                let line = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
                writeln!(writer, "{line}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runpod_levels() {
        assert_eq!(LogLevel::parse("info"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("WARNING"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("3"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("0"), Some(LogLevel::NotSet));
        assert_eq!(LogLevel::parse("6"), None);
        assert_eq!(LogLevel::parse("chatty"), None);
    }
}
