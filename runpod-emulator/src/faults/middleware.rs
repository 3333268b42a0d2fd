//! The middleware on the worker routes: decide, record, inject, log.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::decision::Decision;
use super::listener::Conn;
use super::plan::{FaultKind, Route};
use crate::App;

/// The middleware on the worker routes: record, decide, inject, log.
pub(crate) async fn instrument(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let ins = &app.instrument;
    // The fast path: with no plan, no recording and no log, one atomic load.
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
    let conn = req
        .extensions()
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.clone());
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let method = req.method().to_string();
    let (req, entry) = ins.record(req, decision.map(Decision::name)).await;

    let reset = |conn: &Option<Conn>| {
        if let Some(conn) = conn {
            conn.reset();
        }
        // Never written: the connection fails first. Without a connection handle (not served
        // through FaultyListener), a 503 stands in for the reset.
        crate::error(StatusCode::SERVICE_UNAVAILABLE, "injected fault: reset")
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
        Some(Decision::FailDone(n, limit)) => crate::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("injected fault: job-done post {n} of the first {limit} of this job fails"),
        ),
        Some(Decision::Kind(kind)) => match kind {
            FaultKind::Reset => reset(&conn),
            FaultKind::ResetAfter => {
                let _ = handle(req).await;
                reset(&conn)
            }
            FaultKind::Stall => {
                // Read the request, then never answer: only the worker can end this.
                let _ = axum::body::to_bytes(req.into_body(), usize::MAX).await;
                ins.log(&method, &path, &query, None, Some("stall"));
                std::future::pending::<()>().await;
                unreachable!("a stalled request is never answered")
            }
            FaultKind::Late => {
                let response = handle(req).await;
                tokio::time::sleep(ins.late_delay()).await;
                response
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
                let mut response =
                    crate::error(status, format!("injected fault: HTTP {}", status.as_u16()));
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
    let lost = matches!(
        decision,
        Some(Decision::Kind(FaultKind::Reset | FaultKind::ResetAfter))
    );
    ins.log(
        &method,
        &path,
        &query,
        (!lost).then(|| response.status()),
        decision.map(Decision::name),
    );
    response
}

/// A malformed job, as an object (job-take) or a one-item batch (job-take-batch).
fn malformed(path: &str, job: Value) -> Response {
    let body = if path.contains("/job-take-batch/") {
        json!([job])
    } else {
        job
    };
    crate::json_response(StatusCode::OK, body)
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
    crate::json_response(StatusCode::OK, Value::Array(items))
}
