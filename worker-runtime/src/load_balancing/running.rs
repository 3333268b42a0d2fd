//! One request's job: its task (the handler, cancellation when the client goes away, the
//! shutdown grace), and what it sends back: progress updates and stream items (for `/stream`),
//! then its answer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::response::sse::Event;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::Instrument;

use super::answer::Answer;
use super::routes::EventResult;
use super::server::Server;
use crate::control::{BoxFuture, Control, Outbound};
use crate::final_body::log_outcome;
use crate::handler::{Handler, Outcome};
use crate::job::Job;
use crate::logging::job_span;
use crate::report::Failure;

/// What a job sends its request, in order: the answer last.
#[derive(Debug)]
pub(super) enum Message {
    /// A progress update's body (`{"status":"IN_PROGRESS","output":…}`).
    Progress(Vec<u8>),
    /// A stream chunk's body (`{"output":…}`, one item).
    Chunk(Vec<u8>),
    Done(Answer),
}

/// A started job, as its request holds it.
#[derive(Debug)]
pub(super) struct Started {
    pub(super) id: String,
    pub(super) messages: mpsc::Receiver<Message>,
    pub(super) guard: CancelOnDrop,
}

/// Start `job` on its own task, holding `slot` until it is done. Dropping the returned guard
/// before the answer arrived (the client went away) cancels the job.
pub(super) fn start<H: Handler>(
    server: Arc<Server<H>>,
    job: Job,
    slot: OwnedSemaphorePermit,
    streamed: bool,
) -> Started {
    // A stream's items wait for the client (as a queued job's chunk posts wait for the
    // platform); a plain request's job sends only its answer.
    let (sender, messages) = mpsc::channel(if streamed { 32 } else { 1 });
    let outbound: Arc<dyn Outbound> = if streamed {
        Arc::new(ToClient(sender.clone()))
    } else {
        Arc::new(Discard)
    };
    // Aggregated: the answer of a streaming handler holds every item, as `/runsync` on a queue
    // endpoint does.
    job.control().attach(outbound, true);
    let started = Started {
        id: job.id().to_owned(),
        messages,
        guard: CancelOnDrop(Some(job.control().clone())),
    };
    tokio::spawn(run(server, job, slot, sender));
    started
}

async fn run<H: Handler>(
    server: Arc<Server<H>>,
    job: Job,
    slot: OwnedSemaphorePermit,
    answer: mpsc::Sender<Message>,
) {
    let span = job_span(&job);
    async move {
        let Some(handler) = server.built_handler() else {
            return;
        };
        let id = job.id().to_owned();
        let control = job.control().clone();
        tracing::info!("Started.");
        let mut call = handler.call(job);
        let thread = call.take_thread();
        tokio::pin!(call);
        let outcome = tokio::select! {
            biased;
            () = control.cancelled() => {
                // As for a cancelled queued job: the handler sees `job.cancelled()` and gets the
                // cancel grace to clean up, then its future is dropped.
                let grace = server.limits.cancel_grace;
                if !grace.is_zero() && tokio::time::timeout(grace, &mut call).await.is_err() {
                    tracing::debug!("the cancelled handler was still running after {grace:?}; dropped");
                }
                None
            }
            () = server.shutdown.grace_expired() => Some(Outcome::failed(Failure::new(
                "WorkerShutdown",
                format!(
                    "worker shutting down: the request did not finish within the {:?} grace \
                     period (WORKER_SHUTDOWN_GRACE_SECONDS)",
                    server.limits.shutdown_grace
                ),
            ))),
            outcome = &mut call => Some(outcome),
        };
        control.close_progress().await;
        match outcome {
            None => tracing::info!("Job stopped: the client went away."),
            Some(outcome) => {
                let outcome = outcome.with_job_logs();
                log_outcome(&outcome);
                let answer_of = Answer::of(
                    &id,
                    outcome,
                    &control,
                    server.reporter(),
                    server.limits.max_output_bytes,
                );
                if !answer_of.failed_job() {
                    tracing::info!("Finished.");
                }
                if answer.send(Message::Done(answer_of)).await.is_err() {
                    tracing::info!("the client went away before the answer was sent");
                }
            }
        }
        crate::job_loop::hold_until_thread_returns(thread, slot, &server.shutdown).await;
    }
    .instrument(span)
    .await;
}

/// Cancels the job when dropped armed: the request's future or its event stream was dropped
/// because the client disconnected.
pub(super) struct CancelOnDrop(Option<Arc<Control>>);

impl std::fmt::Debug for CancelOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CancelOnDrop")
            .field(&self.0.is_some())
            .finish()
    }
}

impl CancelOnDrop {
    /// The answer arrived: nothing to cancel.
    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(control) = self.0.take() {
            control.cancel();
        }
    }
}

/// `/stream`'s progress updates and items go to the client, in order.
struct ToClient(mpsc::Sender<Message>);

impl Outbound for ToClient {
    fn progress(&self, _job_id: &str, body: Vec<u8>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.0.send(Message::Progress(body)).await;
        })
    }

    fn chunk(&self, _job_id: &str, body: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.0
                .send(Message::Chunk(body))
                .await
                .map_err(|_| "the client of this /stream request disconnected".to_owned())
        })
    }
}

/// `/runsync` answers once: progress is not sent, items are only aggregated.
struct Discard;

impl Outbound for Discard {
    fn progress(&self, _job_id: &str, _body: Vec<u8>) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn chunk(&self, _job_id: &str, _body: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// `/stream`'s server-sent events: `progress` (`{"status":"IN_PROGRESS","output":…}`),
/// `stream` (`{"output": item}`, RunPod's stream chunk) and last `result` (the `/runsync`
/// answer). Dropped before `result` (the client went away), it cancels the job.
#[derive(Debug)]
pub(super) struct Events {
    first: Option<Message>,
    messages: mpsc::Receiver<Message>,
    guard: CancelOnDrop,
    ended: bool,
}

impl Events {
    pub(super) fn new(
        first: Message,
        messages: mpsc::Receiver<Message>,
        guard: CancelOnDrop,
    ) -> Events {
        Events {
            first: Some(first),
            messages,
            guard,
            ended: false,
        }
    }

    fn event(&mut self, message: Message) -> Event {
        let (name, data) = match message {
            Message::Progress(body) => ("progress", String::from_utf8_lossy(&body).into_owned()),
            Message::Chunk(body) => ("stream", String::from_utf8_lossy(&body).into_owned()),
            Message::Done(answer) => {
                self.ended = true;
                self.guard.disarm();
                ("result", answer.text())
            }
        };
        Event::default().event(name).data(data)
    }
}

impl futures_core::Stream for Events {
    type Item = EventResult;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EventResult>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let message = match this.first.take() {
            Some(message) => message,
            None => match ready!(this.messages.poll_recv(cx)) {
                Some(message) => message,
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
            },
        };
        Poll::Ready(Some(Ok(this.event(message))))
    }
}
