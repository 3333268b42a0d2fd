//! The client-facing API (RunPod's public endpoint API, §13): run, runsync, status, stream,
//! cancel, retry, health, purge-queue. `status` and `stream` answer GET (RunPod) and POST (the
//! Python SDK's local API).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::state::Refused;
use super::{App, error, json_response, read_json};

/// `/run` accepts bodies up to 10 MB, `/runsync` up to 20 MB (RunPod's limits).
const RUN_LIMIT: usize = 10 * 1024 * 1024;
const RUNSYNC_LIMIT: usize = 20 * 1024 * 1024;
/// How long `/runsync` waits without `?wait=`, and at most.
const RUNSYNC_WAIT: Duration = Duration::from_secs(90);
const RUNSYNC_MAX_WAIT: Duration = Duration::from_secs(300);

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/run", post(run))
        .route("/runsync", post(runsync))
        .route("/status/{id}", get(status).post(status))
        .route("/stream/{id}", get(stream).post(stream))
        .route("/cancel/{id}", post(cancel))
        .route("/retry/{id}", post(retry))
        .route("/health", get(health))
        .route("/purge-queue", post(purge_queue))
        .route("/openapi.json", get(openapi))
}

async fn openapi(State(app): State<Arc<App>>) -> Response {
    json_response(StatusCode::OK, app.openapi.clone())
}

/// The job id of `…/{id}` (other path parameters, such as the endpoint id, are ignored).
#[derive(Deserialize)]
struct JobId {
    id: String,
}

fn refused(refused: Refused) -> Response {
    match refused {
        Refused::NotFound(message) => error(StatusCode::NOT_FOUND, message),
        Refused::BadRequest(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no job `{id}`"))
}

async fn run(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let request = match read_json(&headers, body, RUN_LIMIT, "/run").await {
        Ok(v) => v,
        Err(response) => return response,
    };
    match app.state.submit(request, false) {
        Ok((view, _)) => json_response(StatusCode::OK, view),
        Err(e) => refused(e),
    }
}

async fn runsync(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let wait = match query.get("wait") {
        None => RUNSYNC_WAIT,
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms).min(RUNSYNC_MAX_WAIT),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`wait` must be a number of milliseconds, not {raw:?}"),
                );
            }
        },
    };
    let request = match read_json(&headers, body, RUNSYNC_LIMIT, "/runsync").await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let (view, mut changes) = match app.state.submit(request, true) {
        Ok(submitted) => submitted,
        Err(e) => return refused(e),
    };
    let id = view["id"].as_str().unwrap_or_default().to_owned();
    let finished = async {
        let _ = changes.wait_for(|s| s.is_terminal()).await.map(|_| ());
    };
    tokio::select! {
        _ = tokio::time::timeout(wait, finished) => {}
        () = app.stopped() => {}
    }
    json_response(StatusCode::OK, app.state.status(&id).unwrap_or(view))
}

async fn status(State(app): State<Arc<App>>, Path(JobId { id }): Path<JobId>) -> Response {
    match app.state.status(&id) {
        Some(view) => json_response(StatusCode::OK, view),
        None => not_found(&id),
    }
}

async fn stream(State(app): State<Arc<App>>, Path(JobId { id }): Path<JobId>) -> Response {
    match app.state.stream(&id) {
        Some(view) => json_response(StatusCode::OK, view),
        None => not_found(&id),
    }
}

async fn cancel(State(app): State<Arc<App>>, Path(JobId { id }): Path<JobId>) -> Response {
    match app.state.cancel(&id) {
        Some(view) => json_response(StatusCode::OK, view),
        None => not_found(&id),
    }
}

async fn retry(State(app): State<Arc<App>>, Path(JobId { id }): Path<JobId>) -> Response {
    match app.state.retry(&id) {
        Ok(view) => json_response(StatusCode::OK, view),
        Err(e) => refused(e),
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    json_response(StatusCode::OK, app.state.health())
}

async fn purge_queue(State(app): State<Arc<App>>) -> Response {
    let removed = app.state.purge();
    json_response(
        StatusCode::OK,
        json!({ "removed": removed, "status": "completed" }),
    )
}
