//! The routes: health, `/runsync` and `/run` (the answer in the response), `/stream`
//! (server-sent events), `/openapi.json`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::net::TcpListener;

use super::answer::{self, Answer};
use super::running::{self, Message};
use super::server::{Phase, Server};
use crate::handler::Handler;
use crate::job::Job;
use crate::report::Failure;

/// The work routes and health (`work`), or health alone (the `PORT_HEALTH` listener).
pub(super) fn router<H: Handler>(server: Arc<Server<H>>, work: bool) -> Router {
    let mut router = Router::new().route(&server.lb.health_path, get(health::<H>));
    if work {
        router = router
            .route("/runsync", post(runsync::<H>))
            .route("/run", post(runsync::<H>))
            .route("/stream", post(stream::<H>))
            .route("/openapi.json", get(openapi::<H>));
    }
    router.with_state(server)
}

/// Serve `router` on `listener` until `closed` turns true (connections then finish gracefully).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = closed.wait_for(|closed| *closed).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("the load-balancing server stopped: {e}");
    }
}

/// 204 while init runs, 200 when ready, 503 (with the reason) once init failed or while
/// draining.
async fn health<H: Handler>(State(server): State<Arc<Server<H>>>) -> Response {
    match server.phase() {
        Phase::Initializing => StatusCode::NO_CONTENT.into_response(),
        Phase::Ready => answer::json(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()),
        Phase::Failed => answer::json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::to_vec(&serde_json::json!({
                "status": "init_failed",
                "error": server.init_failure.get(),
            }))
            .unwrap_or_default(),
        ),
        Phase::Draining => answer::json(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"status":"draining"}"#.to_vec(),
        ),
    }
}

async fn openapi<H: Handler>(State(server): State<Arc<Server<H>>>) -> Response {
    answer::json(StatusCode::OK, server.openapi.clone())
}

/// `POST /runsync` and `POST /run`: run the job, answer with its result.
async fn runsync<H: Handler>(
    State(server): State<Arc<Server<H>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = match start(&server, &headers, body, false).await {
        Ok(started) => started,
        Err(refused) => return refused,
    };
    let running::Started {
        id,
        mut messages,
        mut guard,
    } = started;
    loop {
        match messages.recv().await {
            Some(Message::Done(answer)) => {
                guard.disarm();
                return answer.into_response();
            }
            Some(_) => {}
            None => return answer::no_result(&id, server.reporter()),
        }
    }
}

/// `POST /stream`: the job's progress updates and stream items as server-sent events, then its
/// result. A job that fails before its first event answers as `/runsync` would (400 for bad
/// input, 500 for a handler error), so a bad request gets a status code, not a stream.
async fn stream<H: Handler>(
    State(server): State<Arc<Server<H>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = match start(&server, &headers, body, true).await {
        Ok(started) => started,
        Err(refused) => return refused,
    };
    let running::Started {
        id,
        mut messages,
        mut guard,
    } = started;
    let first = match messages.recv().await {
        Some(Message::Done(answer)) if answer.failed_job() => {
            guard.disarm();
            return answer.into_response();
        }
        Some(first) => first,
        None => return answer::no_result(&id, server.reporter()),
    };
    let events = running::Events::new(first, messages, guard);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Check the worker can take the request, read it as a job, take a slot and start it.
async fn start<H: Handler>(
    server: &Arc<Server<H>>,
    headers: &HeaderMap,
    body: Body,
    streamed: bool,
) -> Result<running::Started, Response> {
    if server.handler().is_none() {
        return Err(answer::unavailable(server));
    }
    let id = request_id(headers);
    let job = read_job(server, &id, headers, body).await?;
    // The phase may have changed while the body was read.
    if server.handler().is_none() {
        return Err(answer::unavailable(server));
    }
    let Ok(slot) = server.slots.clone().try_acquire_owned() else {
        return Err(answer::busy(server.capacity()));
    };
    Ok(running::start(server.clone(), job, slot, streamed))
}

/// The client's `X-Request-Id` when it is a usable id, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| format!("lb-{:016x}", fastrand::u64(..)), str::to_owned)
}

/// The request body as a job: RunPod's envelope `{"input": …}` (other keys, such as
/// `s3Config`, stay in the job as the platform would send them).
async fn read_job<H: Handler>(
    server: &Server<H>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Job, Response> {
    let limit = server.lb.max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(answer::too_large(limit, declared));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| answer::too_large(limit, None))?;
    let bad = |message: String| {
        Answer::failed(
            id,
            Failure::new("InvalidRequest", message),
            server.reporter(),
        )
        .into_response()
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "the request body is not valid JSON ({e}); send the job as {{\"input\": …}}"
        ))
    })?;
    let Value::Object(mut envelope) = value else {
        return Err(bad(
            "the request body must be a JSON object with the job's input under `input`: \
             {\"input\": …}"
                .to_owned(),
        ));
    };
    match envelope.get("input") {
        None | Some(Value::Null) => {
            return Err(bad(format!(
                "the request body has no `input`; send the job as {{\"input\": …}} (it has: {})",
                keys(&envelope)
            )));
        }
        Some(_) => {}
    }
    envelope.insert("id".into(), Value::String(id.to_owned()));
    Job::parse(Value::Object(envelope)).map_err(|e| bad(e.to_string()))
}

/// The keys of an object, for a message.
fn keys(object: &serde_json::Map<String, Value>) -> String {
    if object.is_empty() {
        return "no keys".to_owned();
    }
    object
        .keys()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `Infallible` error type for the event stream.
pub(super) type EventResult = Result<axum::response::sse::Event, Infallible>;
