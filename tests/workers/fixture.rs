//! The worker the end-to-end tests drive: each job's input says what to do, so one binary can
//! succeed, fail, panic, be slow, or get input it cannot read.

use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use worker::{Job, Value};

/// Externally tagged (`{"add": {"a": 1, "b": 2}}`), so input errors keep their JSON path.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    /// Return `value`.
    Echo { value: Value },
    /// Return an error whose source is an I/O error.
    Fail { message: String },
    /// Panic with `message`.
    Panic { message: String },
    /// Sleep `ms` milliseconds, then return `value`.
    Sleep { ms: u64, value: Value },
    /// Add two integers (a typed field to get wrong).
    Add { a: i64, b: i64 },
    /// Return a string of `bytes` bytes.
    Big { bytes: usize },
    /// Log each line (inside the job, so each carries the job id).
    Log { lines: Vec<String> },
    /// Send `updates` progress updates (0, 1, …), then return `value`.
    Progress { updates: u32, value: Value },
    /// Log each line at its level (`"debug: …"`, `"warn: …"`, else INFO), then do `then`.
    Logged {
        lines: Vec<String>,
        then: Box<Action>,
    },
    /// Return `{"score": NaN}`, which JSON cannot carry.
    Nan,
    /// Return a map with non-string keys, which JSON cannot carry.
    Unserializable,
    /// Ask for a fresh worker after this job (`stopPod`), then return `value`.
    Refresh { value: Value },
    /// Wait up to `ms` milliseconds for the job to be cancelled, checking as blocking work
    /// should; logs `saw the cancel` when it was. With `progress`, it first sends the
    /// progress update `"waiting"` (a stream's first event).
    AwaitCancel {
        ms: u64,
        #[serde(default)]
        progress: bool,
    },
    /// Build a reqwest client of the handler's own (rustls, as the runtime's), as a handler
    /// calling another service does.
    HttpClient,
}

/// What the handler returns: any JSON, or something JSON cannot carry.
#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Json(Value),
    Scores { score: f64 },
    Pairs(BTreeMap<(u8, u8), u8>),
}

/// An error with a cause, to see the chain in the report.
#[derive(Debug)]
struct FixtureError {
    message: String,
    cause: std::io::Error,
}

impl std::fmt::Display for FixtureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FixtureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

struct State {
    greeting: String,
}

/// At most 3 s: a hung init (`FIXTURE_INIT_SLEEP_MS` above it) is reported as such.
#[worker::init(timeout = "3s")]
fn init() -> Result<State, std::io::Error> {
    worker::tracing::info!("loading the weights from /models/fixture.safetensors");
    if std::env::var_os("FIXTURE_INIT_FAIL").is_some() {
        // From another thread too: init's lines are kept whichever thread logs them.
        let _ = std::thread::spawn(|| worker::tracing::warn!("no weights in /models")).join();
        return Err(std::io::Error::other("the weights file is missing"));
    }
    if std::env::var_os("FIXTURE_INIT_PANIC").is_some() {
        panic!("init exploded");
    }
    if let Some(ms) = std::env::var("FIXTURE_INIT_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    Ok(State {
        greeting: "hi".into(),
    })
}

/// 2 jobs at once, or `FIXTURE_CONCURRENCY`.
fn concurrency(_current: usize) -> usize {
    std::env::var("FIXTURE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[worker::handler(concurrency = concurrency)]
fn handle(action: Action, state: &State, job: &Job) -> Result<Output, FixtureError> {
    handle_action(action, state, job).map(|output| match output {
        Ok(value) => Output::Json(value),
        Err(other) => other,
    })
}

fn handle_action(
    action: Action,
    state: &State,
    job: &Job,
) -> Result<Result<Value, Output>, FixtureError> {
    Ok(Ok(match action {
        Action::Echo { value } => value,
        Action::Fail { message } => {
            return Err(FixtureError {
                message,
                cause: std::io::Error::other("the cause"),
            });
        }
        Action::Panic { message } => panic!("{message}"),
        Action::Sleep { ms, value } => {
            std::thread::sleep(Duration::from_millis(ms));
            value
        }
        Action::Add { a, b } => {
            worker::json!({ "sum": a + b, "greeting": state.greeting, "job": job.id() })
        }
        Action::Big { bytes } => Value::String("x".repeat(bytes)),
        Action::Log { lines } => {
            for line in &lines {
                worker::tracing::info!("{line}");
            }
            Value::Null
        }
        Action::Progress { updates, value } => {
            for n in 0..updates {
                job.progress(&n);
            }
            value
        }
        Action::Logged { lines, then } => {
            for line in &lines {
                match line.split_once(": ") {
                    Some(("debug", text)) => worker::tracing::debug!("{text}"),
                    Some(("warn", text)) => worker::tracing::warn!("{text}"),
                    _ => worker::tracing::info!("{line}"),
                }
            }
            return handle_action(*then, state, job);
        }
        Action::Nan => return Ok(Err(Output::Scores { score: f64::NAN })),
        Action::Unserializable => {
            return Ok(Err(Output::Pairs(BTreeMap::from([((1, 2), 3)]))));
        }
        Action::Refresh { value } => {
            job.refresh_worker();
            value
        }
        Action::AwaitCancel { ms, progress } => {
            if progress {
                job.progress(&"waiting");
            }
            let until = std::time::Instant::now() + Duration::from_millis(ms);
            while !job.is_cancelled() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if job.is_cancelled() {
                worker::tracing::info!("saw the cancel");
            }
            worker::json!({ "cancelled": job.is_cancelled() })
        }
        Action::HttpClient => {
            let built = reqwest::Client::builder().build().is_ok();
            worker::json!({ "client_built": built })
        }
    }))
}
