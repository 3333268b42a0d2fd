//! A queue endpoint through RunPod's endpoint API: `/run`, `/runsync`, `/status/{id}`,
//! `/stream/{id}`, `/cancel/{id}`, `/retry/{id}`, `/health`, `/purge-queue`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::builder::Builder;
use super::error::{ClientError, ClientErrorKind, JobError};
use super::http::{Http, Replay, Request};
use super::status::{Health, JobState, JobStatus, decode, snippet};
use super::stream::{Events, JobStream, StreamEvent};

/// `runsync`'s `?wait=` bounds (RunPod takes 1 s to 300 s).
const RUNSYNC_MIN_WAIT: Duration = Duration::from_secs(1);
const RUNSYNC_MAX_WAIT: Duration = Duration::from_secs(300);
/// How much longer than its wait a `runsync` request may take to answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(15);
/// Status and stream polls start this fast and slow down to `POLL_MAX` while nothing changes.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);

/// The characters a job id keeps in a URL path (RunPod's ids are letters, digits and `-`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A queue endpoint, typed by its worker's input (`In`) and output (`Out`). Cheap to clone
/// (one connection pool); safe to share between tasks.
///
/// `Endpoint::new(id, api_key)` calls RunPod (`https://api.runpod.ai/v2/{id}`);
/// [`Endpoint::builder`] sets another base URL (the emulator, `--rp_serve_api`), the timeout
/// and the retries.
pub struct Endpoint<In, Out> {
    shared: Arc<Shared>,
    types: PhantomData<fn(In) -> Out>,
}

/// What an endpoint and its job handles share.
#[derive(Debug)]
struct Shared {
    id: String,
    /// `{base}/{id}`, without a trailing `/`.
    root: String,
    http: Http,
}

impl<In, Out> Clone for Endpoint<In, Out> {
    fn clone(&self) -> Self {
        Endpoint {
            shared: self.shared.clone(),
            types: PhantomData,
        }
    }
}

impl<In, Out> fmt::Debug for Endpoint<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.shared.id)
            .field("url", &self.shared.root)
            .finish_non_exhaustive()
    }
}

/// What `run_with` and `run_sync_with` send besides the input: RunPod's `webhook` and
/// `policy`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// A URL the platform POSTs the job's result to when it ends.
    pub webhook: Option<String>,
    /// How long the job may run before it is stopped (`policy.executionTimeout`).
    pub execution_timeout: Option<Duration>,
    /// How long the job may exist, queued and running, before it is dropped (`policy.ttl`).
    pub ttl: Option<Duration>,
    /// Queue it behind the endpoint's other jobs (`policy.lowPriority`).
    pub low_priority: bool,
}

impl RunOptions {
    /// No webhook, the endpoint's own timeouts.
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Set the webhook.
    pub fn webhook(mut self, url: impl Into<String>) -> Self {
        self.webhook = Some(url.into());
        self
    }

    /// Set the execution timeout.
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.execution_timeout = Some(timeout);
        self
    }

    /// Set the TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Queue it as a low-priority job.
    pub fn low_priority(mut self) -> Self {
        self.low_priority = true;
        self
    }
}

impl<In, Out> Endpoint<In, Out> {
    /// A client for RunPod's endpoint `id`, with the API key (sent as `Authorization: Bearer`).
    pub fn new(id: &str, api_key: &str) -> Result<Endpoint<In, Out>, ClientError> {
        Endpoint::builder(id, api_key).build()
    }

    /// Set up a client for endpoint `id` (base URL, timeout, retries), then
    /// [`build`](Builder::build) it.
    pub fn builder(id: &str, api_key: &str) -> Builder<Endpoint<In, Out>> {
        Builder::new(id, api_key)
    }

    pub(super) fn from_parts(id: String, http: Http, base: &str) -> Endpoint<In, Out> {
        let root = format!("{base}/{}", utf8_percent_encode(&id, PATH_SEGMENT));
        Endpoint {
            shared: Arc::new(Shared { id, root, http }),
            types: PhantomData,
        }
    }

    /// The endpoint's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The handle of a job submitted before (by its id), to ask for its status or output.
    pub fn job(&self, id: &str) -> JobHandle<Out> {
        JobHandle {
            shared: self.shared.clone(),
            id: id.to_owned(),
            output: PhantomData,
        }
    }

    /// The endpoint's jobs and workers by state (`GET /health`).
    pub async fn health(&self) -> Result<Health, ClientError> {
        let body = self.shared.get("health", "/health").await?;
        self.shared.decode("health", body, "the health answer")
    }

    /// Remove every queued job (not the running ones); how many were removed
    /// (`POST /purge-queue`).
    pub async fn purge_queue(&self) -> Result<u64, ClientError> {
        let body = self
            .shared
            .post("purge_queue", "/purge-queue", None)
            .await?;
        Ok(body.get("removed").and_then(Value::as_u64).unwrap_or(0))
    }

    /// The endpoint's contract as OpenAPI (`GET /openapi.json`), where it serves one (the
    /// emulator and `--rp_serve_api` do).
    pub async fn openapi(&self) -> Result<Value, ClientError> {
        self.shared.get("openapi", "/openapi.json").await
    }
}

impl<In: Serialize, Out: DeserializeOwned> Endpoint<In, Out> {
    /// Queue a job (`POST /run`) and return its handle.
    pub async fn run(&self, input: &In) -> Result<JobHandle<Out>, ClientError> {
        self.run_with(input, &RunOptions::default()).await
    }

    /// Queue a job with a webhook or a policy.
    pub async fn run_with(
        &self,
        input: &In,
        options: &RunOptions,
    ) -> Result<JobHandle<Out>, ClientError> {
        let body = envelope("run", &self.shared.id, input, options)?;
        let request = self.shared.request(
            "run",
            Method::POST,
            "/run".to_owned(),
            Some(body),
            None,
            Replay::Submits,
        );
        let answer = self.shared.json(&request).await?;
        match answer.get("id").and_then(Value::as_str) {
            Some(id) => Ok(self.job(id)),
            None => Err(self.shared.malformed(&request, &answer, "has no job `id`")),
        }
    }

    /// Run a job and wait for its output, up to `wait` in all: `POST /runsync` (which waits up
    /// to 300 s on the platform), then the job's status until it ends. A job that fails comes
    /// back as an error holding its [`JobError`]; one still running when `wait` is over as
    /// [`ClientErrorKind::StillRunning`] with its id.
    pub async fn run_sync(&self, input: &In, wait: Duration) -> Result<Out, ClientError> {
        self.run_sync_with(input, wait, &RunOptions::default())
            .await
    }

    /// `run_sync` with a webhook or a policy.
    pub async fn run_sync_with(
        &self,
        input: &In,
        wait: Duration,
        options: &RunOptions,
    ) -> Result<Out, ClientError> {
        let started = Instant::now();
        let body = envelope("run_sync", &self.shared.id, input, options)?;
        let server_wait = wait.clamp(RUNSYNC_MIN_WAIT, RUNSYNC_MAX_WAIT);
        let path = format!("/runsync?wait={}", server_wait.as_millis());
        let request = self.shared.request(
            "run_sync",
            Method::POST,
            path,
            Some(body),
            Some(server_wait + ANSWER_MARGIN),
            Replay::Submits,
        );
        let answer = self.shared.json(&request).await?;
        let fallback = answer
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let status: JobStatus<Out> = JobStatus::parse(&answer, &fallback)
            .map_err(|kind| self.shared.error("run_sync", kind))?;
        if status.state.is_final() {
            return status
                .into_result()
                .map_err(|kind| self.shared.error("run_sync", kind));
        }
        if status.id.is_empty() {
            return Err(self.shared.malformed(&request, &answer, "has no job `id`"));
        }
        // Not done within the platform's wait: poll for the rest of ours.
        let left = wait.saturating_sub(started.elapsed());
        self.job(&status.id)
            .wait_as("run_sync", left, started)
            .await
    }
}

/// `{"input": …}` with the options' `webhook` and `policy`.
fn envelope<In: Serialize>(
    call: &'static str,
    endpoint: &str,
    input: &In,
    options: &RunOptions,
) -> Result<Vec<u8>, ClientError> {
    let encode = |e| ClientError::new(call, endpoint, ClientErrorKind::Encode(e));
    let mut body = Map::new();
    body.insert("input".into(), serde_json::to_value(input).map_err(encode)?);
    if let Some(webhook) = &options.webhook {
        body.insert("webhook".into(), Value::String(webhook.clone()));
    }
    let mut policy = Map::new();
    let ms = |d: Duration| Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if let Some(timeout) = options.execution_timeout {
        policy.insert("executionTimeout".into(), ms(timeout));
    }
    if let Some(ttl) = options.ttl {
        policy.insert("ttl".into(), ms(ttl));
    }
    if options.low_priority {
        policy.insert("lowPriority".into(), Value::Bool(true));
    }
    if !policy.is_empty() {
        body.insert("policy".into(), Value::Object(policy));
    }
    serde_json::to_vec(&body).map_err(encode)
}

impl Shared {
    fn request(
        &self,
        call: &'static str,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
        replay: Replay,
    ) -> Request<'_> {
        Request {
            call,
            endpoint: &self.id,
            method,
            url: format!("{}{path}", self.root),
            body,
            timeout: timeout.unwrap_or(self.http.timeout),
            replay,
        }
    }

    /// Send and read a JSON answer.
    async fn json(&self, request: &Request<'_>) -> Result<Value, ClientError> {
        let answer = self.http.send(request, |_| false).await?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            let text = String::from_utf8_lossy(&answer.body);
            ClientError::new(
                request.call,
                &self.id,
                ClientErrorKind::Decode {
                    what: "the answer".to_owned(),
                    error: format!("is not JSON ({e}): {}", crate::wire::snippet(&text)),
                },
            )
            .with_request(request.method.as_str(), &request.url, 1)
        })
    }

    async fn get(&self, call: &'static str, path: &str) -> Result<Value, ClientError> {
        let request = self.request(
            call,
            Method::GET,
            path.to_owned(),
            None,
            None,
            Replay::Idempotent,
        );
        self.json(&request).await
    }

    async fn post(
        &self,
        call: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, ClientError> {
        let request = self.request(
            call,
            Method::POST,
            path.to_owned(),
            body,
            None,
            Replay::Idempotent,
        );
        self.json(&request).await
    }

    fn error(&self, call: &'static str, kind: ClientErrorKind) -> ClientError {
        ClientError::new(call, &self.id, kind)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        call: &'static str,
        body: Value,
        what: &str,
    ) -> Result<T, ClientError> {
        decode(body, what).map_err(|kind| self.error(call, kind))
    }

    fn malformed(&self, request: &Request<'_>, answer: &Value, why: &str) -> ClientError {
        self.error(
            request.call,
            ClientErrorKind::Decode {
                what: "the answer".to_owned(),
                error: format!("{why}: {}", snippet(answer)),
            },
        )
        .with_request(request.method.as_str(), &request.url, 1)
    }

    fn job_path(route: &str, id: &str) -> String {
        format!("/{route}/{}", utf8_percent_encode(id, PATH_SEGMENT))
    }
}

/// A job on a queue endpoint: its id, and the calls about it. Cheap to clone.
pub struct JobHandle<Out> {
    shared: Arc<Shared>,
    id: String,
    output: PhantomData<fn() -> Out>,
}

impl<Out> Clone for JobHandle<Out> {
    fn clone(&self) -> Self {
        JobHandle {
            shared: self.shared.clone(),
            id: self.id.clone(),
            output: PhantomData,
        }
    }
}

impl<Out> fmt::Debug for JobHandle<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("endpoint", &self.shared.id)
            .field("id", &self.id)
            .finish()
    }
}

impl<Out: DeserializeOwned> JobHandle<Out> {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job's status (`GET /status/{id}`), with its output once completed.
    pub async fn status(&self) -> Result<JobStatus<Out>, ClientError> {
        self.status_as("status").await
    }

    async fn status_as(&self, call: &'static str) -> Result<JobStatus<Out>, ClientError> {
        let body = self
            .shared
            .get(call, &Shared::job_path("status", &self.id))
            .await?;
        JobStatus::parse(&body, &self.id).map_err(|kind| self.shared.error(call, kind))
    }

    /// Wait up to `wait` for the job to end (polling its status, 50 ms apart at first, then
    /// up to 1 s while nothing changes) and return its output, or its error.
    pub async fn wait(&self, wait: Duration) -> Result<Out, ClientError> {
        self.wait_as("wait", wait, Instant::now()).await
    }

    async fn wait_as(
        &self,
        call: &'static str,
        wait: Duration,
        since: Instant,
    ) -> Result<Out, ClientError> {
        let deadline = Instant::now() + wait;
        let mut pause = POLL_FIRST;
        loop {
            let status = self.status_as(call).await?;
            if status.state.is_final() {
                return status
                    .into_result()
                    .map_err(|kind| self.shared.error(call, kind));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.shared.error(
                    call,
                    ClientErrorKind::StillRunning {
                        id: self.id.clone(),
                        state: status.state,
                        waited: since.elapsed(),
                    },
                ));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Cancel the job (`POST /cancel/{id}`): a queued job is dropped, a running one is stopped
    /// by its worker. Returns the job's status as the platform answered.
    pub async fn cancel(&self) -> Result<JobStatus<Out>, ClientError> {
        self.after("cancel").await
    }

    /// Queue a failed or timed-out job again under the same id (`POST /retry/{id}`), while
    /// the platform still keeps its result.
    pub async fn retry(&self) -> Result<JobStatus<Out>, ClientError> {
        self.after("retry").await
    }

    async fn after(&self, call: &'static str) -> Result<JobStatus<Out>, ClientError> {
        let body = self
            .shared
            .post(call, &Shared::job_path(call, &self.id), None)
            .await?;
        JobStatus::parse(&body, &self.id).map_err(|kind| self.shared.error(call, kind))
    }
}

impl<Out> JobHandle<Out> {
    /// The items the job streams (`/stream/{id}`, polled: at once while items come, then up to
    /// 1 s apart), each read as `Item`; the stream ends when the job has ended and every item
    /// was read, with an `Err` when it failed.
    pub fn stream<Item: DeserializeOwned + Send + 'static>(&self) -> JobStream<Item> {
        let shared = self.shared.clone();
        let id = self.id.clone();
        JobStream::spawn(move |events| read_stream(shared, id, events))
    }
}

/// Poll `/stream/{id}` until the job has ended and its items are all delivered.
async fn read_stream<Item: DeserializeOwned>(
    shared: Arc<Shared>,
    id: String,
    events: Events<Item>,
) {
    let path = Shared::job_path("stream", &id);
    let mut pause = POLL_FIRST;
    loop {
        let body = match shared.get("stream", &path).await {
            Ok(body) => body,
            Err(error) => {
                events.send(Err(error)).await;
                return;
            }
        };
        let state = body
            .get("status")
            .and_then(Value::as_str)
            .map(JobState::parse);
        let chunks = body.get("stream").and_then(Value::as_array);
        let fresh = chunks.is_some_and(|c| !c.is_empty());
        for chunk in chunks.into_iter().flatten() {
            let item = chunk.get("output").cloned().unwrap_or(Value::Null);
            let event = decode(item, &format!("a stream item of job `{id}`"))
                .map(StreamEvent::Item)
                .map_err(|kind| shared.error("stream", kind));
            let failed = event.is_err();
            if !events.send(event).await || failed {
                return;
            }
        }
        match state {
            Some(state) if state.is_final() && !fresh => {
                if state != JobState::Completed {
                    let error = JobError::new(&id, state, body.get("error"));
                    events
                        .send(Err(
                            shared.error("stream", ClientErrorKind::Job(Box::new(error)))
                        ))
                        .await;
                }
                return;
            }
            None => {
                let error = shared.error(
                    "stream",
                    ClientErrorKind::Decode {
                        what: "the answer".to_owned(),
                        error: format!("has no `status`: {}", snippet(&body)),
                    },
                );
                events.send(Err(error)).await;
                return;
            }
            _ => {}
        }
        if fresh {
            pause = POLL_FIRST;
        } else {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}
