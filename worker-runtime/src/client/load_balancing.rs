//! A load-balancing endpoint served by a worker of this crate (`--load-balancing`): `POST
//! /runsync` (or `/run`), `POST /stream` as server-sent events, the health check, and
//! `/openapi.json`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::builder::Builder;
use super::error::{ClientError, ClientErrorKind, JobError};
use super::http::{Http, Replay, Request};
use super::sse::SseParser;
use super::status::{JobState, JobStatus, decode, snippet};
use super::stream::{Events, JobStream, StreamEvent};

/// A load-balancing endpoint, typed by its worker's input (`In`) and output (`Out`): the same
/// payloads as a queue endpoint's `/runsync`, answered by the worker itself. Cheap to clone.
///
/// `LoadBalancingEndpoint::new(id, api_key)` calls `https://{id}.api.runpod.ai`;
/// [`LoadBalancingEndpoint::builder`] sets another URL (a worker run with `--load-balancing` on
/// loopback), the health path, the timeout and the retries. A request the worker refuses with
/// 429 (all its slots busy) is sent again after its `Retry-After`.
pub struct LoadBalancingEndpoint<In, Out> {
    shared: Arc<Shared>,
    types: PhantomData<fn(In) -> Out>,
}

#[derive(Debug)]
struct Shared {
    id: String,
    root: String,
    health_path: String,
    http: Http,
}

impl<In, Out> Clone for LoadBalancingEndpoint<In, Out> {
    fn clone(&self) -> Self {
        LoadBalancingEndpoint {
            shared: self.shared.clone(),
            types: PhantomData,
        }
    }
}

impl<In, Out> fmt::Debug for LoadBalancingEndpoint<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadBalancingEndpoint")
            .field("id", &self.shared.id)
            .field("url", &self.shared.root)
            .finish_non_exhaustive()
    }
}

/// What a load-balancing worker's health check answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// 200: it takes requests.
    Ready,
    /// 204: its `#[worker::init]` is still running.
    Initializing,
    /// Anything else (503 when its init failed, with the reason, or while it drains).
    Unhealthy {
        /// The status code.
        status: u16,
        /// The answer's body (for a failed init, its error report).
        body: String,
    },
}

impl<In, Out> LoadBalancingEndpoint<In, Out> {
    /// A client for RunPod's load-balancing endpoint `id`, with the API key (sent as
    /// `Authorization: Bearer`).
    pub fn new(id: &str, api_key: &str) -> Result<LoadBalancingEndpoint<In, Out>, ClientError> {
        LoadBalancingEndpoint::builder(id, api_key).build()
    }

    /// Set up a client (base URL, health path, timeout, retries), then
    /// [`build`](Builder::build) it.
    pub fn builder(id: &str, api_key: &str) -> Builder<LoadBalancingEndpoint<In, Out>> {
        Builder::new(id, api_key)
    }

    pub(super) fn from_parts(
        id: String,
        http: Http,
        base: &str,
        health_path: &str,
    ) -> LoadBalancingEndpoint<In, Out> {
        LoadBalancingEndpoint {
            shared: Arc::new(Shared {
                id,
                root: base.to_owned(),
                health_path: health_path.to_owned(),
                http,
            }),
            types: PhantomData,
        }
    }

    /// The endpoint's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The worker's health check (`GET /ping`, or the builder's `health_path`). Only a failure
    /// to get an answer is an error; 204 and 503 are answers.
    pub async fn health(&self) -> Result<Readiness, ClientError> {
        let request =
            self.shared
                .request("health", Method::GET, &self.shared.health_path, None, None);
        let answer = self.shared.http.send(&request, |_| true).await?;
        Ok(match answer.status {
            StatusCode::OK => Readiness::Ready,
            StatusCode::NO_CONTENT => Readiness::Initializing,
            other => Readiness::Unhealthy {
                status: other.as_u16(),
                body: crate::wire::snippet(&String::from_utf8_lossy(&answer.body)),
            },
        })
    }

    /// The worker's contract as OpenAPI (`GET /openapi.json`).
    pub async fn openapi(&self) -> Result<Value, ClientError> {
        let request = self
            .shared
            .request("openapi", Method::GET, "/openapi.json", None, None);
        let answer = self.shared.http.send(&request, |_| false).await?;
        self.shared.json(&request, &answer.body)
    }
}

impl<In: Serialize, Out: DeserializeOwned> LoadBalancingEndpoint<In, Out> {
    /// Run the handler on `input` and return its output (`POST /runsync`), waiting up to
    /// `wait` (RunPod stops a load-balancing request after 5.5 minutes). A failed job (400 for
    /// an input the worker refused, 500 for a handler error) is an error holding its
    /// [`JobError`].
    pub async fn run_sync(&self, input: &In, wait: Duration) -> Result<Out, ClientError> {
        let body = self.envelope("run_sync", input)?;
        let request =
            self.shared
                .request("run_sync", Method::POST, "/runsync", Some(body), Some(wait));
        let answer = self.shared.http.send(&request, job_answer).await?;
        let value = self.shared.json(&request, &answer.body)?;
        self.shared.finished(&request, &value)
    }

    /// Run a streaming handler on `input` (`POST /stream`) and read its items as they come,
    /// each as `Item`, waiting up to `wait` in all. Progress updates come as
    /// [`StreamEvent::Progress`] through [`JobStream::next_event`]. A job refused before its
    /// first item (bad input) is this call's error; one failing later ends the stream with it.
    /// Dropping the stream closes the request, which cancels the job on the worker.
    pub async fn stream<Item: DeserializeOwned + Send + 'static>(
        &self,
        input: &In,
        wait: Duration,
    ) -> Result<JobStream<Item>, ClientError> {
        let body = self.envelope("stream", input)?;
        let request =
            self.shared
                .request("stream", Method::POST, "/stream", Some(body), Some(wait));
        let (response, _) = self.shared.http.send_raw(&request, &job_answer).await?;
        let is_events = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_events {
            // A job that failed before its first event answers as /runsync does.
            let bytes = response
                .bytes()
                .await
                .map_err(|error| self.shared.transport(&request, error))?;
            let value = self.shared.json(&request, &bytes)?;
            let status: JobStatus<Value> =
                JobStatus::parse(&value, "").map_err(|kind| self.shared.error("stream", kind))?;
            return Err(match status.error {
                Some(error) => self
                    .shared
                    .error("stream", ClientErrorKind::Job(Box::new(error))),
                None => self.shared.malformed(&request, &value, "is not a stream"),
            });
        }
        let shared = self.shared.clone();
        let url = request.url.clone();
        Ok(JobStream::spawn(move |events| {
            read_events(shared, url, response, events)
        }))
    }

    fn envelope(&self, call: &'static str, input: &In) -> Result<Vec<u8>, ClientError> {
        let encode = |e| self.shared.error(call, ClientErrorKind::Encode(e));
        let mut body = Map::new();
        body.insert("input".into(), serde_json::to_value(input).map_err(encode)?);
        serde_json::to_vec(&body).map_err(encode)
    }
}

/// The statuses a worker answers a finished job with besides 200: its input refused (400), its
/// handler failed (500). Their bodies are job answers, read as the job's error.
fn job_answer(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::INTERNAL_SERVER_ERROR
    )
}

impl Shared {
    fn request(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Request<'_> {
        Request {
            call,
            endpoint: &self.id,
            method,
            url: format!("{}{path}", self.root),
            body,
            timeout: timeout.unwrap_or(self.http.timeout),
            replay: if call == "run_sync" || call == "stream" {
                Replay::Submits
            } else {
                Replay::Idempotent
            },
        }
    }

    fn error(&self, call: &'static str, kind: ClientErrorKind) -> ClientError {
        ClientError::new(call, &self.id, kind)
    }

    fn transport(&self, request: &Request<'_>, error: reqwest::Error) -> ClientError {
        self.error(
            request.call,
            ClientErrorKind::Transport {
                error,
                maybe_submitted: true,
            },
        )
        .with_request(request.method.as_str(), &request.url, 1)
    }

    fn json(&self, request: &Request<'_>, body: &[u8]) -> Result<Value, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            let text = String::from_utf8_lossy(body);
            self.error(
                request.call,
                ClientErrorKind::Decode {
                    what: "the answer".to_owned(),
                    error: format!("is not JSON ({e}): {}", crate::wire::snippet(&text)),
                },
            )
            .with_request(request.method.as_str(), &request.url, 1)
        })
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

    /// A finished job's answer as its output or its error.
    fn finished<Out: DeserializeOwned>(
        &self,
        request: &Request<'_>,
        answer: &Value,
    ) -> Result<Out, ClientError> {
        let status: JobStatus<Out> =
            JobStatus::parse(answer, "").map_err(|kind| self.error(request.call, kind))?;
        if !status.state.is_final() {
            return Err(self.malformed(request, answer, "is not a finished job"));
        }
        status
            .into_result()
            .map_err(|kind| self.error(request.call, kind))
    }
}

/// Read a `/stream` response's events into the stream: `progress`, `stream` (`{"output":
/// item}`), then `result` (the job's answer).
async fn read_events<Item: DeserializeOwned>(
    shared: Arc<Shared>,
    url: String,
    mut response: Response,
    events: Events<Item>,
) {
    let mut parser = SseParser::default();
    let fail = |kind| shared.error("stream", kind).with_request("POST", &url, 1);
    loop {
        let bytes = match response.chunk().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                let kind = ClientErrorKind::Decode {
                    what: "the stream".to_owned(),
                    error: "ended before the job's result".to_owned(),
                };
                events.send(Err(fail(kind))).await;
                return;
            }
            Err(error) => {
                let kind = ClientErrorKind::Transport {
                    error,
                    maybe_submitted: true,
                };
                events.send(Err(fail(kind))).await;
                return;
            }
        };
        for event in parser.push(&bytes) {
            let data: Value = match serde_json::from_str(&event.data) {
                Ok(data) => data,
                Err(e) => {
                    let kind = ClientErrorKind::Decode {
                        what: format!("the `{}` event", event.event),
                        error: format!("is not JSON ({e}): {}", crate::wire::snippet(&event.data)),
                    };
                    events.send(Err(fail(kind))).await;
                    return;
                }
            };
            let sent = match event.event.as_str() {
                "progress" => {
                    // `{"status": "IN_PROGRESS", "output": update}`: the update, as a queue
                    // endpoint's status has it.
                    let update = data.get("output").cloned().unwrap_or(data);
                    events.send(Ok(StreamEvent::Progress(update))).await
                }
                "stream" => {
                    let item = data.get("output").cloned().unwrap_or(Value::Null);
                    match decode(item, "a stream item") {
                        Ok(item) => events.send(Ok(StreamEvent::Item(item))).await,
                        Err(kind) => {
                            events.send(Err(fail(kind))).await;
                            return;
                        }
                    }
                }
                "result" => {
                    let id = data.get("id").and_then(Value::as_str).unwrap_or_default();
                    let state = data
                        .get("status")
                        .and_then(Value::as_str)
                        .map_or(JobState::Other(String::new()), JobState::parse);
                    if state != JobState::Completed {
                        let error = JobError::new(id, state, data.get("error"));
                        events
                            .send(Err(fail(ClientErrorKind::Job(Box::new(error)))))
                            .await;
                    }
                    return;
                }
                _ => true, // an event this client does not know
            };
            if !sent {
                return;
            }
        }
    }
}
