//! The worker-facing API (§4–§8): job-take and job-take-batch (long-polls), job-done (progress
//! or final result), job-stream (one chunk), job-stop (long-poll of jobs to stop), ping.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::Report;
use super::{App, error, json_response, read_json};

/// The largest job-done / job-stream body accepted.
const RESULT_LIMIT: usize = 20 * 1024 * 1024;
/// The largest batch handed out at once.
const MAX_BATCH: usize = 100;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/job-take/{worker_id}", get(job_take))
        .route("/job-take-batch/{worker_id}", get(job_take_batch))
        .route("/job-stop/{worker_id}", get(job_stop))
        .route("/job-done/{worker_id}/{*job_id}", post(job_done))
        .route("/job-stream/{worker_id}/{*job_id}", post(job_stream))
        .route("/ping/{worker_id}", get(ping))
}

#[derive(Deserialize)]
struct WorkerPath {
    worker_id: String,
}

#[derive(Deserialize)]
struct JobPath {
    worker_id: String,
    job_id: String,
}

type Params = Query<HashMap<String, String>>;

async fn job_take(State(app): State<Arc<App>>, Path(p): Path<WorkerPath>) -> Response {
    take(&app, &p.worker_id, None).await
}

async fn job_take_batch(
    State(app): State<Arc<App>>,
    Path(p): Path<WorkerPath>,
    Query(query): Params,
) -> Response {
    let size = query
        .get("batch_size")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, MAX_BATCH);
    take(&app, &p.worker_id, Some(size)).await
}

/// Hold the request until a job is queued (a JSON object, or an array for the batch form) or
/// the long-poll timeout passes (204).
async fn take(app: &App, worker: &str, batch: Option<usize>) -> Response {
    if let Some(observer) = &app.observer {
        observer.take_requested(worker);
    }
    let _open = app.state.open_poll(worker);
    let deadline = tokio::time::Instant::now() + app.state.settings.take_timeout;
    loop {
        // Register interest before looking, so a job queued in between is not missed.
        let mut queued = pin!(app.state.queued().notified());
        queued.as_mut().enable();
        let jobs = app.state.take(worker, batch.unwrap_or(1));
        if !jobs.is_empty() {
            if let Some(observer) = &app.observer {
                for job in &jobs {
                    observer.job_handed(job["id"].as_str().unwrap_or_default());
                }
            }
            let body = match batch {
                Some(_) => Value::Array(jobs),
                None => jobs.into_iter().next().unwrap_or_default(),
            };
            return json_response(StatusCode::OK, body);
        }
        tokio::select! {
            () = queued => {}
            () = tokio::time::sleep_until(deadline) => return StatusCode::NO_CONTENT.into_response(),
            () = app.stopped() => return StatusCode::NO_CONTENT.into_response(),
        }
    }
}

/// Hold the request until one of the worker's jobs must stop (`{"jobsToStop": [ids]}`) or the
/// long-poll timeout passes (204).
async fn job_stop(State(app): State<Arc<App>>, Path(p): Path<WorkerPath>) -> Response {
    let worker = p.worker_id.as_str();
    let _open = app.state.open_poll(worker);
    let deadline = tokio::time::Instant::now() + app.state.settings.take_timeout;
    loop {
        let mut stops = pin!(app.state.stops().notified());
        stops.as_mut().enable();
        let ids = app.state.take_stops(worker);
        if !ids.is_empty() {
            return json_response(StatusCode::OK, json!({ "jobsToStop": ids }));
        }
        tokio::select! {
            () = stops => {}
            () = tokio::time::sleep_until(deadline) => return StatusCode::NO_CONTENT.into_response(),
            () = app.stopped() => return StatusCode::NO_CONTENT.into_response(),
        }
    }
}

fn answer(report: Report) -> Response {
    match report {
        Report::Accepted => json_response(StatusCode::OK, json!({})),
        Report::Ignored(why) => json_response(StatusCode::OK, json!({ "ignored": why })),
        Report::NotFound(why) => error(StatusCode::NOT_FOUND, why),
        Report::BadRequest(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// The body is JSON whatever the content type says (the SDKs send it as a form).
async fn job_done(
    State(app): State<Arc<App>>,
    Path(p): Path<JobPath>,
    Query(query): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_json(&headers, body, RESULT_LIMIT, "job-done").await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let is_stream = query.get("isStream").is_some_and(|v| v == "true");
    let is_final = body.get("status").and_then(Value::as_str) != Some("IN_PROGRESS");
    let report = app.state.done(&p.worker_id, &p.job_id, body, is_stream);
    if let (Some(observer), Report::Accepted, true) = (&app.observer, &report, is_final) {
        observer.job_finished(&p.job_id);
    }
    answer(report)
}

async fn job_stream(
    State(app): State<Arc<App>>,
    Path(p): Path<JobPath>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_json(&headers, body, RESULT_LIMIT, "job-stream").await {
        Ok(v) => v,
        Err(response) => return response,
    };
    answer(app.state.stream_chunk(&p.worker_id, &p.job_id, body))
}

/// `?job_id=a,b&runpod_version=…`, or a failed start-up check:
/// `?status=unhealthy&check=…&reason=…`.
async fn ping(
    State(app): State<Arc<App>>,
    Path(p): Path<WorkerPath>,
    Query(query): Params,
) -> Response {
    let job_ids: Vec<&str> = query
        .get("job_id")
        .map(|ids| ids.split(',').filter(|id| !id.is_empty()).collect())
        .unwrap_or_default();
    let unhealthy = (query.get("status").map(String::as_str) == Some("unhealthy")).then(|| {
        format!(
            "{}: {}",
            query
                .get("check")
                .map(String::as_str)
                .unwrap_or("unknown check"),
            query
                .get("reason")
                .map(String::as_str)
                .unwrap_or("no reason given")
        )
    });
    app.state.ping(&p.worker_id, &job_ids, unhealthy);
    json_response(StatusCode::OK, json!({}))
}
