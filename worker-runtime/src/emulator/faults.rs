//! Fault injection and request recording on the worker-facing routes.
//!
//! A [`Faults`] plan says, per route and per kind, how likely a fault is; a small seeded PRNG
//! (splitmix64) draws one number per worker request and picks at most one fault. The same seed
//! gives the same sequence of decisions (which request gets which fault then depends only on the
//! order requests arrive in). With no plan, no recording and no request log, the middleware is a
//! single atomic load.
//!
//! Connection resets are real: every connection is accepted through [`FaultyListener`], whose
//! stream can be told to fail its next write; the server then drops the socket with `SO_LINGER`
//! 0, so the worker's HTTP client sees `connection reset` (or `connection closed before message
//! completed`) — a transport error, not an HTTP status.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::App;

/// A worker-facing route, as far as fault injection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `job-take` and `job-take-batch`.
    JobTake,
    /// `job-done` (progress updates and final results).
    JobDone,
    /// `job-stream` (stream chunks).
    JobStream,
    /// `job-stop` (the cancellation long-poll).
    JobStop,
    /// `ping` (the heartbeat).
    Ping,
}

impl Route {
    /// Every worker-facing route.
    pub const ALL: [Route; 5] = [
        Route::JobTake,
        Route::JobDone,
        Route::JobStream,
        Route::JobStop,
        Route::Ping,
    ];

    /// The route of a path `/v2/{endpoint_id}/{route}/…`.
    fn of(path: &str) -> Option<Route> {
        let mut segments = path.strip_prefix("/v2/")?.split('/');
        let first = segments.nth(1)?;
        Some(match first {
            "job-take" | "job-take-batch" => Route::JobTake,
            "job-done" => Route::JobDone,
            "job-stream" => Route::JobStream,
            "job-stop" => Route::JobStop,
            "ping" => Route::Ping,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Route::JobTake => "take",
            Route::JobDone => "done",
            Route::JobStream => "stream",
            Route::JobStop => "stop",
            Route::Ping => "ping",
        }
    }

    /// The kinds that make sense on this route, for [`Faults::mixed`].
    fn kinds(self) -> &'static [FaultKind] {
        use FaultKind::*;
        match self {
            Route::JobTake => &[
                TooManyRequests,
                InternalError,
                BadGateway,
                Unavailable,
                Reset,
                Slow,
                NotJson,
                MissingId,
                MissingInput,
                BadBatchItems,
            ],
            Route::JobDone | Route::JobStream => &[
                TooManyRequests,
                InternalError,
                BadGateway,
                Unavailable,
                Reset,
                ResetAfter,
                Slow,
            ],
            Route::JobStop | Route::Ping => &[
                TooManyRequests,
                InternalError,
                BadGateway,
                Unavailable,
                Reset,
                Slow,
            ],
        }
    }
}

impl FromStr for Route {
    type Err = String;
    fn from_str(s: &str) -> Result<Route, String> {
        Route::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!("unknown route `{s}`: use take, done, stream, stop, ping or all")
            })
    }
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 429 Too Many Requests (with `Retry-After`, see [`Faults::retry_after`]).
    TooManyRequests,
    /// 500 Internal Server Error.
    InternalError,
    /// 502 Bad Gateway.
    BadGateway,
    /// 503 Service Unavailable.
    Unavailable,
    /// The connection is reset before the request is processed (nothing happened).
    Reset,
    /// The request is processed, then the connection is reset: the answer is lost. On job-take
    /// and job-stop this is [`Reset`](Self::Reset) (a job handed to nobody is the platform's loss,
    /// not a worker fault).
    ResetAfter,
    /// The answer is delayed by up to [`Faults::slow_max`], then given normally.
    Slow,
    /// job-take only: 200 with a body that is not JSON (no job is handed out).
    NotJson,
    /// job-take only: 200 with a job that has no `id`.
    MissingId,
    /// job-take only: 200 with a job that has no `input`.
    MissingInput,
    /// job-take only: the real answer (jobs or none) as a batch with malformed items added.
    BadBatchItems,
}

impl FaultKind {
    const ALL: [FaultKind; 11] = [
        FaultKind::TooManyRequests,
        FaultKind::InternalError,
        FaultKind::BadGateway,
        FaultKind::Unavailable,
        FaultKind::Reset,
        FaultKind::ResetAfter,
        FaultKind::Slow,
        FaultKind::NotJson,
        FaultKind::MissingId,
        FaultKind::MissingInput,
        FaultKind::BadBatchItems,
    ];

    /// The name used by `--fault` and in recorded requests.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::InternalError => "500",
            FaultKind::BadGateway => "502",
            FaultKind::Unavailable => "503",
            FaultKind::Reset => "reset",
            FaultKind::ResetAfter => "reset-after",
            FaultKind::Slow => "slow",
            FaultKind::NotJson => "not-json",
            FaultKind::MissingId => "missing-id",
            FaultKind::MissingInput => "missing-input",
            FaultKind::BadBatchItems => "bad-batch",
        }
    }

    fn status(self) -> Option<StatusCode> {
        match self {
            FaultKind::TooManyRequests => Some(StatusCode::TOO_MANY_REQUESTS),
            FaultKind::InternalError => Some(StatusCode::INTERNAL_SERVER_ERROR),
            FaultKind::BadGateway => Some(StatusCode::BAD_GATEWAY),
            FaultKind::Unavailable => Some(StatusCode::SERVICE_UNAVAILABLE),
            _ => None,
        }
    }

    fn take_only(self) -> bool {
        matches!(
            self,
            FaultKind::NotJson
                | FaultKind::MissingId
                | FaultKind::MissingInput
                | FaultKind::BadBatchItems
        )
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault `{s}`: use one of {}", names.join(", "))
            })
    }
}

/// A fault-injection plan: off by default; see [`EmulatorBuilder::faults`](super::EmulatorBuilder::faults).
///
/// ```
/// use worker::emulator::{FaultKind, Faults, Route};
/// let faults = Faults::new(7)
///     .rate(Route::JobDone, FaultKind::Unavailable, 0.05)
///     .rate(Route::JobTake, FaultKind::NotJson, 0.01)
///     .fail_done_times(2);
/// # let _ = faults;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    seed: u64,
    rules: Vec<(Route, FaultKind, f64)>,
    slow_max: Duration,
    retry_after: Option<u64>,
    fail_done: u32,
}

impl Faults {
    /// No faults yet, with this PRNG seed; add them with [`rate`](Self::rate).
    pub fn new(seed: u64) -> Faults {
        Faults {
            seed,
            rules: Vec::new(),
            slow_max: Duration::from_millis(200),
            retry_after: Some(1),
            fail_done: 0,
        }
    }

    /// About `probability` of faults on every worker-facing route, spread evenly over the kinds
    /// that make sense there (status errors, resets, slow answers; malformed answers on job-take).
    pub fn mixed(seed: u64, probability: f64) -> Faults {
        let mut faults = Faults::new(seed);
        for route in Route::ALL {
            let kinds = route.kinds();
            for &kind in kinds {
                faults = faults.rate(route, kind, probability / kinds.len() as f64);
            }
        }
        faults
    }

    /// Inject `kind` on `route` with this probability (0–1) per request. The probabilities of one
    /// route add up (at most 1); job-take-only kinds on other routes are ignored.
    pub fn rate(mut self, route: Route, kind: FaultKind, probability: f64) -> Faults {
        if probability > 0.0 && (route == Route::JobTake || !kind.take_only()) {
            self.rules.retain(|(r, k, _)| !(*r == route && *k == kind));
            self.rules.push((route, kind, probability.min(1.0)));
        }
        self
    }

    /// The longest delay of a [`FaultKind::Slow`] answer (default 200 ms).
    pub fn slow_max(mut self, max: Duration) -> Faults {
        self.slow_max = max;
        self
    }

    /// The `Retry-After` (seconds) of injected 429s; `None` sends none (default 1).
    pub fn retry_after(mut self, seconds: Option<u64>) -> Faults {
        self.retry_after = seconds;
        self
    }

    /// The first `n` job-done posts of every job answer 500, then they succeed.
    pub fn fail_done_times(mut self, n: u32) -> Faults {
        self.fail_done = n;
        self
    }

    /// Parse a `--fault` rule: `route:kind=probability`, route `all` for every route, e.g.
    /// `done:503=0.05`, `take:not-json=0.01`, `all:reset=0.02`.
    pub fn with_rule(mut self, rule: &str) -> Result<Faults, String> {
        let (target, probability) = rule
            .split_once('=')
            .ok_or_else(|| format!("`{rule}`: expected route:kind=probability"))?;
        let (route, kind) = target
            .split_once(':')
            .ok_or_else(|| format!("`{rule}`: expected route:kind=probability"))?;
        let kind: FaultKind = kind.parse()?;
        let probability: f64 = probability
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("`{rule}`: the probability must be a number from 0 to 1"))?;
        let routes: Vec<Route> = if route == "all" {
            Route::ALL.to_vec()
        } else {
            vec![route.parse()?]
        };
        for route in routes {
            self = self.rate(route, kind, probability);
        }
        Ok(self)
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.fail_done == 0
    }
}

/// One worker request the emulator received (recorded with
/// [`EmulatorBuilder::record_requests`](super::EmulatorBuilder::record_requests)), including
/// attempts that got an injected fault.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The full path, e.g. `/v2/local/job-done/w1/abc-e1`.
    pub path: String,
    /// The query string without `?` (empty if none).
    pub query: String,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The injected fault's name (`503`, `reset`, `fail-done`, …), if any.
    pub fault: Option<String>,
    /// The status the emulator's handler answered, even when an injected reset then lost it;
    /// `None` while the request is still being handled, or when it was not handled at all
    /// (an injected status, a reset before processing, a malformed job-take answer).
    pub answer: Option<u16>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw (still percent-encoded) value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether this is a final job-done post (not a progress update).
    pub fn is_final_done(&self) -> bool {
        self.path.contains("/job-done/")
            && self
                .json()
                .is_none_or(|b| b.get("status").and_then(Value::as_str) != Some("IN_PROGRESS"))
    }

    /// The last path segment: the job id of job-done and job-stream, the worker id of others.
    pub fn last_segment(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

impl fmt::Debug for RecordedRequest {
    /// The `Authorization` value is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("authorization") {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("fault", &self.fault)
            .field("answer", &self.answer)
            .finish()
    }
}

/// Counters the emulator keeps for tests: see [`EmulatorHandle::stats`](super::EmulatorHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmulatorStats {
    /// Jobs that completed (each counted once).
    pub completed: u64,
    /// Jobs that failed (each counted once).
    pub failed: u64,
    /// Final job-done posts for a job that already had its final result from the same worker
    /// (a retry after a lost answer); ignored.
    pub duplicate_finals: u64,
    /// Of those, how many carried a different body than the first final result.
    pub conflicting_finals: u64,
    /// Faults injected so far.
    pub faults_injected: u64,
}

/// The fault plan being applied, with its PRNG and per-job counters.
#[derive(Debug)]
struct Active {
    plan: Faults,
    rng: u64,
    done_posts: HashMap<String, u32>,
}

impl Active {
    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy)]
enum Decision {
    Kind(FaultKind),
    Delay(Duration),
    FailDone(u32, u32),
}

impl Decision {
    fn name(self) -> &'static str {
        match self {
            Decision::Kind(k) => k.name(),
            Decision::Delay(_) => FaultKind::Slow.name(),
            Decision::FailDone(..) => "fail-done",
        }
    }
}

/// The recorded requests; `generation` changes when they are cleared, so a late answer is not
/// written into another request's entry.
#[derive(Debug, Default)]
struct Recorded {
    requests: Vec<RecordedRequest>,
    generation: u64,
}

/// The recorder, request log and fault plan of one emulator.
#[derive(Debug, Default)]
pub(crate) struct Instrument {
    /// Any of the three below is on.
    active: AtomicBool,
    record: AtomicBool,
    log: AtomicBool,
    faults: Mutex<Option<Active>>,
    requests: Mutex<Recorded>,
    injected: AtomicU64,
}

impl Instrument {
    pub(crate) fn new(record: bool, log: bool, faults: Option<Faults>) -> Instrument {
        let instrument = Instrument {
            record: AtomicBool::new(record),
            log: AtomicBool::new(log),
            ..Instrument::default()
        };
        instrument.set_faults(faults);
        instrument
    }

    fn lock_faults(&self) -> MutexGuard<'_, Option<Active>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_requests(&self) -> MutexGuard<'_, Recorded> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_faults(&self, faults: Option<Faults>) {
        let active = faults.filter(|f| !f.is_empty()).map(|plan| Active {
            rng: plan.seed,
            plan,
            done_posts: HashMap::new(),
        });
        let on = active.is_some();
        *self.lock_faults() = active;
        self.active.store(
            on || self.record.load(Ordering::Relaxed) || self.log.load(Ordering::Relaxed),
            Ordering::SeqCst,
        );
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock_requests().requests.clone()
    }

    pub(crate) fn clear_requests(&self) {
        let mut recorded = self.lock_requests();
        recorded.requests.clear();
        recorded.generation += 1;
    }

    fn set_answer(&self, (index, generation): (usize, u64), status: StatusCode) {
        let mut recorded = self.lock_requests();
        if recorded.generation == generation
            && let Some(request) = recorded.requests.get_mut(index)
        {
            request.answer = Some(status.as_u16());
        }
    }

    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn decide(&self, route: Route, path: &str) -> Option<Decision> {
        let mut guard = self.lock_faults();
        let active = guard.as_mut()?;
        if route == Route::JobDone && active.plan.fail_done > 0 {
            let job = path.rsplit('/').next().unwrap_or_default().to_owned();
            let limit = active.plan.fail_done;
            let posts = active.done_posts.entry(job).or_default();
            if *posts < limit {
                *posts += 1;
                return Some(Decision::FailDone(*posts, limit));
            }
        }
        let draw = active.unit();
        let mut at = 0.0;
        let mut picked = None;
        for &(r, kind, p) in &active.plan.rules {
            if r != route {
                continue;
            }
            at += p;
            if draw < at {
                picked = Some(kind);
                break;
            }
        }
        Some(match picked? {
            FaultKind::Slow => {
                let max = active.plan.slow_max.as_micros().max(1) as u64;
                Decision::Delay(Duration::from_micros(active.next() % max))
            }
            FaultKind::ResetAfter if matches!(route, Route::JobTake | Route::JobStop) => {
                Decision::Kind(FaultKind::Reset)
            }
            kind => Decision::Kind(kind),
        })
    }

    fn retry_after(&self) -> Option<u64> {
        self.lock_faults().as_ref().and_then(|a| a.plan.retry_after)
    }
}

/// The middleware on the worker routes: record, decide, inject, log.
pub(crate) async fn instrument(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let ins = &app.instrument;
    if !ins.active.load(Ordering::Relaxed) {
        return next.run(req).await;
    }
    let Some(route) = Route::of(req.uri().path()) else {
        return next.run(req).await;
    };
    let decision = ins.decide(route, req.uri().path());
    if decision.is_some() {
        ins.injected.fetch_add(1, Ordering::Relaxed);
    }
    let kill = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.kill.clone());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let method = req.method().to_string();
    let mut entry = None;
    let req = if ins.record.load(Ordering::Relaxed) {
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
            Ok(bytes) => bytes,
            Err(_) => Bytes::new(),
        };
        let mut recorded = ins.lock_requests();
        entry = Some((recorded.requests.len(), recorded.generation));
        recorded.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            fault: decision.map(|d| d.name().to_owned()),
            answer: None,
        });
        drop(recorded);
        Request::from_parts(parts, Body::from(body))
    } else {
        req
    };

    let reset = |kill: &Option<Arc<AtomicBool>>| {
        if let Some(kill) = kill {
            kill.store(true, Ordering::SeqCst);
        }
        // Never written: the connection fails first. Without a connection handle (not served
        // through FaultyListener), a 503 stands in for the reset.
        crate::emulator::error(StatusCode::SERVICE_UNAVAILABLE, "injected fault: reset")
    };
    // Run the real handler, noting its answer in the recorded request.
    let handle = |req: Request| async move {
        let response = next.run(req).await;
        if let Some(entry) = entry {
            ins.set_answer(entry, response.status());
        }
        response
    };
    let response = match decision {
        None => handle(req).await,
        Some(Decision::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            handle(req).await
        }
        Some(Decision::FailDone(n, limit)) => crate::emulator::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("injected fault: job-done post {n} of the first {limit} of this job fails"),
        ),
        Some(Decision::Kind(kind)) => match kind {
            FaultKind::Reset => reset(&kill),
            FaultKind::ResetAfter => {
                let _ = handle(req).await;
                reset(&kill)
            }
            FaultKind::NotJson => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<html>this is not JSON</html>",
            )
                .into_response(),
            FaultKind::MissingId => malformed(&path, json!({"input": {"injected": true}})),
            FaultKind::MissingInput => malformed(&path, json!({"id": "injected-no-input"})),
            FaultKind::BadBatchItems => bad_batch(handle(req).await).await,
            status_kind => {
                let status = status_kind
                    .status()
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = crate::emulator::error(
                    status,
                    format!("injected fault: HTTP {}", status.as_u16()),
                );
                if status == StatusCode::TOO_MANY_REQUESTS
                    && let Some(seconds) = ins.retry_after()
                {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
        },
    };
    if ins.log.load(Ordering::Relaxed) {
        let reset = matches!(
            decision,
            Some(Decision::Kind(FaultKind::Reset | FaultKind::ResetAfter))
        );
        let answer = if reset {
            "connection reset".to_owned()
        } else {
            response.status().as_u16().to_string()
        };
        let fault = decision
            .map(|d| format!(" (injected: {})", d.name()))
            .unwrap_or_default();
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        // Headers are never logged: the Authorization value must not reach a log.
        tracing::info!("emulator: {method} {path}{query} -> {answer}{fault}");
    }
    response
}

/// A malformed job, as an object (job-take) or a one-item batch (job-take-batch).
fn malformed(path: &str, job: Value) -> Response {
    let body = if path.contains("/job-take-batch/") {
        json!([job])
    } else {
        job
    };
    crate::emulator::json_response(StatusCode::OK, body)
}

/// The real job-take answer as a batch, with malformed items added after the real jobs.
async fn bad_batch(response: Response) -> Response {
    let status = response.status();
    if !(status == StatusCode::OK || status == StatusCode::NO_CONTENT) {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut items = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(items)) => items,
        Ok(job @ Value::Object(_)) => vec![job],
        _ => Vec::new(),
    };
    items.extend([
        json!("junk"),
        json!({"input": {"injected": true}}),
        json!({"id": 5, "input": 1}),
        json!({"id": "injected-no-input"}),
    ]);
    crate::emulator::json_response(StatusCode::OK, Value::Array(items))
}

/// Accepts connections whose streams can be reset from a request handler.
#[derive(Debug)]
pub(crate) struct FaultyListener(pub(crate) TcpListener);

/// The per-connection handle the middleware gets (as `ConnectInfo`).
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    kill: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, FaultyListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, FaultyListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Listener for FaultyListener {
    type Io = FaultyStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (FaultyStream, Conn) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    return (
                        FaultyStream {
                            inner: stream,
                            kill: kill.clone(),
                        },
                        Conn { kill },
                    );
                }
                // Out of file descriptors and the like: wait a little, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        self.0.local_addr().map(|_| Conn {
            kill: Arc::default(),
        })
    }
}

/// A TCP stream that fails (and resets the connection) once its `kill` flag is set.
#[derive(Debug)]
pub(crate) struct FaultyStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl FaultyStream {
    fn killed(&self) -> Option<io::Error> {
        if !self.kill.load(Ordering::SeqCst) {
            return None;
        }
        // Dropping a socket with a zero linger sends RST instead of FIN.
        let _ = self.inner.set_zero_linger();
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected connection reset",
        ))
    }
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let plan = Faults::mixed(42, 0.5);
        let draws = |plan: &Faults| {
            let ins = Instrument::new(false, false, Some(plan.clone()));
            (0..200)
                .map(|i| {
                    let route = Route::ALL[i % 5];
                    ins.decide(route, "/job-done/w/j").map(|d| d.name())
                })
                .collect::<Vec<_>>()
        };
        let a = draws(&plan);
        assert_eq!(a, draws(&plan));
        assert_ne!(a, draws(&Faults::mixed(43, 0.5)));
        let faulted = a.iter().filter(|d| d.is_some()).count();
        assert!((60..140).contains(&faulted), "{faulted} of 200");
    }

    #[test]
    fn rules_parse_and_job_take_kinds_stay_on_job_take() {
        let f = Faults::new(1)
            .with_rule("all:503=0.1")
            .unwrap()
            .with_rule("done:not-json=0.5")
            .unwrap();
        assert_eq!(f.rules.len(), 5);
        assert!(Faults::new(1).with_rule("take:teapot=0.1").is_err());
        assert!(Faults::new(1).with_rule("take:503=2").is_err());
        assert!(Faults::new(1).with_rule("nowhere:503=0.1").is_err());
        assert!(Faults::new(1).with_rule("503").is_err());
    }

    #[test]
    fn fail_done_fails_the_first_n_posts_of_each_job() {
        let ins = Instrument::new(false, false, Some(Faults::new(1).fail_done_times(2)));
        let names: Vec<_> = ["a", "a", "b", "a", "b", "b"]
            .iter()
            .map(|j| {
                ins.decide(Route::JobDone, &format!("/job-done/w/{j}"))
                    .map(|d| d.name())
            })
            .collect();
        assert_eq!(
            names,
            [
                Some("fail-done"),
                Some("fail-done"),
                Some("fail-done"),
                None,
                Some("fail-done"),
                None
            ]
        );
        assert!(ins.decide(Route::JobTake, "/job-take/w").is_none());
    }
}
