//! A local RunPod emulator: the platform side of the serverless protocol on loopback.
//!
//! It serves RunPod's public endpoint API to clients (`/v2/{endpoint_id}/run`, `runsync`,
//! `status`, `stream`, `cancel`, `retry`, `health`, `purge-queue`, and `openapi.json`, an
//! OpenAPI 3.1 document of them with the worker's schemas ([`EmulatorBuilder::contract`]); the
//! same routes without the `/v2/{endpoint_id}` prefix, as the Python SDK's local API has them)
//! and the worker API to any
//! number of worker processes (`job-take`, `job-take-batch`, `job-done`, `job-stream`,
//! `job-stop`, `ping`). Workers written with `worker-runtime`, or with the Python SDK, run
//! against it unchanged: [`EmulatorHandle::worker_env`] gives the environment to start one with.
//!
//! ```no_run
//! # async fn demo() -> Result<(), runpod_emulator::Error> {
//! let emulator = runpod_emulator::Emulator::builder()
//!     .endpoint_id("local")
//!     .bind("127.0.0.1:8000")
//!     .build()
//!     .await?;
//! for (name, value) in emulator.worker_env("worker-1") {
//!     println!("{name}='{value}'");
//! }
//! // … clients POST to {url}/v2/local/run, workers take jobs …
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Jobs live in memory. Honoured: `policy.executionTimeout` and `policy.ttl` (TIMED_OUT),
//! `webhook` (one POST of the final status body, retried twice), cancellation (the worker learns
//! it through job-stop), and lost workers (a job whose worker is not heard from for the worker
//! timeout is re-queued, once by default ([`EmulatorBuilder::max_requeues`]), then TIMED_OUT;
//! [`EmulatorStats::requeued`] counts them).
//!
//! For tests of workers, the emulator can record every worker request
//! ([`EmulatorBuilder::record_requests`], [`EmulatorHandle::worker_requests`]), log them
//! ([`EmulatorBuilder::log_requests`]), inject seeded faults on the worker routes
//! ([`EmulatorBuilder::faults`], [`Faults`]), and count final results posted twice
//! ([`EmulatorHandle::stats`]).
//!
//! Benchmarks and tests can queue jobs without HTTP ([`EmulatorHandle::submit`]) and timestamp
//! the worker API's events with an [`Observer`] ([`EmulatorBuilder::observer`]); without one
//! the request path pays only an `Option` check.

mod client_api;
mod error;
mod faults;
mod openapi;
mod state;
mod stats;
mod webhook;
mod worker_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{self, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::faults::{Conn, FaultyListener, Instrument};
use self::state::{Settings, State};

pub use self::error::{Error, ErrorKind};
pub use self::faults::{FaultKind, Faults, RecordedRequest, Route};
pub use self::openapi::Contract;
pub use self::stats::EmulatorStats;

/// Entry point of the emulator; see [`Emulator::builder`].
#[derive(Debug)]
pub struct Emulator(());

impl Emulator {
    /// A builder with the defaults: endpoint `local`, no API key, `127.0.0.1:8000`, 30 s
    /// long-polls, 10 s worker pings, workers lost after 3 pings missed, webhooks retried after
    /// 10 s, no execution timeout unless a request sets `policy.executionTimeout`.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            endpoint_id: "local".into(),
            api_key: None,
            bind: "127.0.0.1:8000".into(),
            take_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(10),
            worker_timeout: None,
            max_requeues: 1,
            webhook_retry_delay: Duration::from_secs(10),
            execution_timeout: None,
            faults: None,
            record_requests: false,
            log_requests: false,
            observer: None,
            contract: Contract::default(),
        }
    }
}

/// The environment variables RunPod gives a worker, for a platform whose worker routes are under
/// `base` (`http://host:port/v2/{endpoint_id}`): the job-take, job-done, job-stream and ping URL
/// templates, the API key, the worker id and the ping interval. [`EmulatorHandle::worker_env`]
/// is this for an emulator; a test or benchmark serving the worker routes itself can use it too.
pub fn worker_env(
    base: &str,
    api_key: &str,
    worker_id: &str,
    ping_interval: Duration,
) -> Vec<(String, String)> {
    [
        (
            "RUNPOD_WEBHOOK_GET_JOB",
            format!("{base}/job-take/$ID?gpu=local"),
        ),
        (
            "RUNPOD_WEBHOOK_POST_OUTPUT",
            format!("{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=local"),
        ),
        (
            "RUNPOD_WEBHOOK_POST_STREAM",
            format!("{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local"),
        ),
        (
            "RUNPOD_WEBHOOK_PING",
            format!("{base}/ping/$RUNPOD_POD_ID?gpu=local"),
        ),
        ("RUNPOD_AI_API_KEY", api_key.to_owned()),
        ("RUNPOD_POD_ID", worker_id.to_owned()),
        (
            "RUNPOD_PING_INTERVAL",
            ping_interval.as_millis().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Sees the worker API's events as they happen, for benchmarks (the platform-side instants of
/// cold start and per-job overhead). Called on the request path, outside the emulator's lock:
/// keep it cheap (record an `Instant`, nothing that blocks).
pub trait Observer: std::fmt::Debug + Send + Sync + 'static {
    /// A job-take or job-take-batch request from `worker_id` arrived (before it is held).
    fn take_requested(&self, worker_id: &str) {
        let _ = worker_id;
    }
    /// `job_id` was handed to a worker: its job-take answer is about to be sent.
    fn job_handed(&self, job_id: &str) {
        let _ = job_id;
    }
    /// The final result of `job_id` (a job-done post that is not a progress update) was
    /// accepted.
    fn job_finished(&self, job_id: &str) {
        let _ = job_id;
    }
}

/// Configures and starts an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    endpoint_id: String,
    api_key: Option<String>,
    bind: String,
    take_timeout: Duration,
    ping_interval: Duration,
    worker_timeout: Option<Duration>,
    max_requeues: u32,
    webhook_retry_delay: Duration,
    execution_timeout: Option<Duration>,
    faults: Option<Faults>,
    record_requests: bool,
    log_requests: bool,
    observer: Option<Arc<dyn Observer>>,
    contract: Contract,
}

impl EmulatorBuilder {
    /// The endpoint id in `/v2/{endpoint_id}/…` (default `local`).
    pub fn endpoint_id(mut self, endpoint_id: impl Into<String>) -> Self {
        self.endpoint_id = endpoint_id.into();
        self
    }

    /// Require this API key from clients (`Authorization: Bearer <key>` or the raw key) and
    /// workers (the raw key). `None` (the default) accepts every request.
    pub fn api_key(mut self, api_key: Option<String>) -> Self {
        self.api_key = api_key.filter(|k| !k.is_empty());
        self
    }

    /// The address to listen on, e.g. `127.0.0.1:8000`, or port 0 for any free port.
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = addr.into();
        self
    }

    /// The host (a name, an IPv4 or an IPv6 address, bracketed or not) and port to listen on.
    pub fn bind_host(self, host: &str, port: u16) -> Self {
        if host.contains(':') && !host.starts_with('[') {
            self.bind(format!("[{host}]:{port}"))
        } else {
            self.bind(format!("{host}:{port}"))
        }
    }

    /// How long job-take and job-stop long-polls are held before answering 204 (default 30 s).
    pub fn take_timeout(mut self, timeout: Duration) -> Self {
        self.take_timeout = timeout;
        self
    }

    /// The ping interval handed to workers as `RUNPOD_PING_INTERVAL` (default 10 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long a worker may go unheard (no ping, no request) before its jobs are re-queued
    /// (default: three ping intervals, and never less than the long-poll timeout).
    pub fn worker_timeout(mut self, timeout: Duration) -> Self {
        self.worker_timeout = Some(timeout);
        self
    }

    /// How many times a job whose worker was lost is put back in the queue before it is
    /// TIMED_OUT instead (default 1). A fleet test that kills workers often raises it.
    pub fn max_requeues(mut self, times: u32) -> Self {
        self.max_requeues = times;
        self
    }

    /// The delay between webhook attempts (default 10 s).
    pub fn webhook_retry_delay(mut self, delay: Duration) -> Self {
        self.webhook_retry_delay = delay;
        self
    }

    /// The execution timeout of jobs whose request sets no `policy.executionTimeout` (default:
    /// none).
    pub fn execution_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.execution_timeout = timeout;
        self
    }

    /// Inject faults on the worker-facing routes (default: none). See [`Faults`].
    pub fn faults(mut self, faults: Option<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Keep every worker request (method, path, query, headers, body, injected fault) for
    /// [`EmulatorHandle::worker_requests`] (default: off).
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record_requests = record;
        self
    }

    /// Log one line per worker request at INFO: method, path, query, the answer's status and any
    /// injected fault. Headers are never logged (default: off).
    pub fn log_requests(mut self, log: bool) -> Self {
        self.log_requests = log;
        self
    }

    /// Report the worker API's events to `observer` (default: none).
    /// The worker's input and output schemas, for `/openapi.json` (default: `{}`, any JSON).
    pub fn contract(mut self, contract: Contract) -> Self {
        self.contract = contract;
        self
    }

    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Listen and start serving in the background (on the current tokio runtime).
    pub async fn build(self) -> Result<EmulatorHandle, Error> {
        if self.endpoint_id.is_empty()
            || !self
                .endpoint_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the emulator's endpoint id {:?} must be non-empty and made of letters, digits, `-`, `_` and `.`",
                    self.endpoint_id
                ),
            ));
        }
        let listener = tokio::net::TcpListener::bind(&self.bind)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("the emulator could not listen on {}: {e}", self.bind),
                )
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("no local address: {e}")))?;
        let worker_timeout = self
            .worker_timeout
            .unwrap_or_else(|| (self.ping_interval * 3).max(self.take_timeout));
        let settings = Settings {
            take_timeout: self.take_timeout,
            worker_timeout,
            max_requeues: self.max_requeues,
            webhook_retry_delay: self.webhook_retry_delay,
            execution_timeout: self.execution_timeout,
        };
        let url = {
            let mut addr = local_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}")
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = Arc::new(App {
            state: State::new(settings),
            endpoint_id: self.endpoint_id.clone(),
            api_key: self.api_key.clone(),
            shutdown: stop_rx.clone(),
            instrument: Instrument::new(self.record_requests, self.log_requests, self.faults),
            observer: self.observer.clone(),
            openapi: openapi::document(
                &self.endpoint_id,
                &format!("{url}/v2/{}", self.endpoint_id),
                &self.contract,
            ),
        });
        let router = router(app.clone());
        let reaper = tokio::spawn(reap(app.clone()));
        let server = tokio::spawn(async move {
            let served = axum::serve(
                FaultyListener(listener),
                router.into_make_service_with_connect_info::<Conn>(),
            )
            .with_graceful_shutdown(stopped(stop_rx))
            .await;
            if let Err(e) = served {
                tracing::error!("emulator: the server stopped: {e}");
            }
        });

        tracing::info!(
            "emulator: serving endpoint `{}` at {url}/v2/{}",
            self.endpoint_id,
            self.endpoint_id
        );
        Ok(EmulatorHandle {
            url,
            local_addr,
            endpoint_id: self.endpoint_id,
            api_key: self.api_key,
            ping_interval: self.ping_interval,
            stop: stop_tx,
            tasks: vec![server, reaper],
            app,
        })
    }
}

/// A running emulator. Dropping it stops it too; [`shutdown`](Self::shutdown) also waits.
#[derive(Debug)]
pub struct EmulatorHandle {
    url: String,
    local_addr: SocketAddr,
    endpoint_id: String,
    api_key: Option<String>,
    ping_interval: Duration,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    app: Arc<App>,
}

impl EmulatorHandle {
    /// The worker requests received so far, oldest first (needs
    /// [`EmulatorBuilder::record_requests`]; empty otherwise).
    pub fn worker_requests(&self) -> Vec<RecordedRequest> {
        self.app.instrument.requests()
    }

    /// Forget the worker requests recorded so far.
    pub fn clear_worker_requests(&self) {
        self.app.instrument.clear_requests();
    }

    /// Replace the fault plan while running (`None` stops injecting).
    pub fn set_faults(&self, faults: Option<Faults>) {
        self.app.instrument.set_faults(faults);
    }

    /// Job and fault counters, for tests.
    pub fn stats(&self) -> EmulatorStats {
        let mut stats = self.app.state.stats();
        stats.faults_injected = self.app.instrument.injected();
        stats
    }

    /// The base URL, e.g. `http://127.0.0.1:8000` (a wildcard bind address becomes loopback).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint's URL, `{url}/v2/{endpoint_id}`: what clients append `/run` etc. to.
    pub fn endpoint_url(&self) -> String {
        format!("{}/v2/{}", self.url, self.endpoint_id)
    }

    /// The address the emulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The environment variables that make a worker (one written with `worker-runtime`, or the
    /// Python SDK's) take jobs from this emulator as `worker_id`.
    pub fn worker_env(&self, worker_id: &str) -> Vec<(String, String)> {
        // Workers only ping with a key; without one the emulator accepts any.
        let key = self.api_key.as_deref().unwrap_or("local");
        worker_env(&self.endpoint_url(), key, worker_id, self.ping_interval)
    }

    /// Queue a job as `/run` would (`request` is its body, e.g. `{"input": …}`), without HTTP.
    /// Returns the job id.
    pub fn submit(&self, request: Value) -> Result<String, Error> {
        match self.app.state.submit(request, false) {
            Ok((view, _)) => Ok(view["id"].as_str().unwrap_or_default().to_owned()),
            Err(state::Refused::BadRequest(why) | state::Refused::NotFound(why)) => {
                Err(Error::new(ErrorKind::Refused, why))
            }
        }
    }

    /// The job's `/status` body (`{"id", "status", "output" | "error", …}`), without HTTP;
    /// `None` for an id it never had (or one already purged).
    pub fn status(&self, job_id: &str) -> Option<Value> {
        self.app.state.status(job_id)
    }

    /// Wait until the job has ended (`COMPLETED`, `FAILED`, `CANCELLED`, `TIMED_OUT`) and
    /// return its `/status` body; an error when it is unknown or still running after
    /// `timeout`, saying its status then. For integration tests of a worker: no HTTP client.
    pub async fn finished(&self, job_id: &str, timeout: Duration) -> Result<Value, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(status) = self.status(job_id) else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("the emulator has no job `{job_id}`"),
                ));
            };
            let state = status["status"].as_str().unwrap_or_default();
            if !matches!(state, "IN_QUEUE" | "IN_PROGRESS") {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("job `{job_id}` is still {state} after {timeout:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop serving: long-polls answer at once, then the server and its timers stop.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) state: State,
    endpoint_id: String,
    api_key: Option<String>,
    shutdown: watch::Receiver<bool>,
    instrument: Instrument,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// `/openapi.json`, built once.
    pub(crate) openapi: serde_json::Value,
}

impl App {
    /// Resolves when the emulator shuts down.
    pub(crate) async fn stopped(&self) {
        stopped(self.shutdown.clone()).await
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// Applies deadlines (ttl, execution timeouts, lost workers, result expiry) when they pass.
async fn reap(app: Arc<App>) {
    loop {
        let next = app.state.sweep(Instant::now());
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait => {}
            () = app.state.timers().notified() => {}
            () = app.stopped() => return,
        }
    }
}

fn router(app: Arc<App>) -> Router {
    let endpoint = client_api::routes().merge(worker_api::routes());
    Router::new()
        .nest("/v2/{endpoint_id}", endpoint)
        .merge(client_api::routes())
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; the emulator serves /v2/{endpoint_id}/run, runsync, status/{id}, stream/{id}, cancel/{id}, retry/{id}, health, purge-queue, openapi.json (also without the /v2/{endpoint_id} prefix) and the worker routes",
            )
        })
        // Inside the guard: only authorized worker requests are recorded and faulted.
        .layer(middleware::from_fn_with_state(
            app.clone(),
            faults::instrument,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Checks the endpoint id of `/v2/{endpoint_id}/…` paths and the API key.
async fn guard(
    extract::State(app): extract::State<Arc<App>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(rest) = req.uri().path().strip_prefix("/v2/") {
        let endpoint = rest.split('/').next().unwrap_or_default();
        if endpoint != app.endpoint_id {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown endpoint `{endpoint}`: this emulator serves the endpoint `{}` (/v2/{}/…)",
                    app.endpoint_id, app.endpoint_id
                ),
            );
        }
    }
    if let Some(key) = &app.api_key
        && !authorized(req.headers(), key)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: send the emulator's API key as `Authorization: Bearer <key>` (clients) or the raw key (workers)",
        );
    }
    next.run(req).await
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return false;
    };
    let bearer = given
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim());
    given == key || bearer == Some(key)
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A JSON error response: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({ "error": message.into() }))
}

/// Read a request body of at most `limit` bytes as JSON; `what` names it in errors. Too large
/// → 413, not JSON → 400, both with a JSON error body.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &str,
) -> Result<Value, Response> {
    let too_large = |size: Option<u64>| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is too large: {what} accepts at most {} MB ({limit} bytes){}",
                limit / (1024 * 1024),
                size.map(|s| format!(", this one has {s} bytes"))
                    .unwrap_or_default()
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(declared));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(None))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("{what} needs a JSON body"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body of {what} is not valid JSON: {e}"),
        )
    })
}
