//! The per-job control plane: what a running job sends out besides its result (progress
//! updates, stream chunks) and what the worker tells it (cancellation). Progress and chunks go
//! through one ordered path per job, which is flushed before the final result is posted, so a
//! progress update can never arrive after the result.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A boxed future, for the object-safe [`Outbound`] trait.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a job's progress updates and stream chunks go: the platform, or the local terminal.
pub(crate) trait Outbound: Send + Sync + 'static {
    /// Deliver one progress update body (`{"status":"IN_PROGRESS","output":…}`).
    fn progress(&self, job_id: &str, body: Vec<u8>) -> BoxFuture<'_, ()>;
    /// Deliver one stream chunk body (`{"output":…}`); `Err` says why it could not be.
    fn chunk(&self, job_id: &str, body: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;
}

/// The control state of one job, shared by the job's handle(s) and the worker.
#[derive(Default)]
pub(crate) struct Control {
    outbound: OnceLock<Arc<dyn Outbound>>,
    /// Keep every chunk for the final result (`return_aggregate_stream`, and local mode).
    aggregate: AtomicBool,
    cancelled: AtomicBool,
    cancel_notify: Notify,
    refresh: AtomicBool,
    progress: ProgressQueue,
    /// Progress updates of a job no platform is attached to (built in a test), kept for
    /// `Job::progress_updates`.
    kept_progress: Mutex<Vec<serde_json::Value>>,
    stream: Mutex<StreamState>,
}

/// What was streamed so far.
#[derive(Default)]
pub(crate) struct StreamState {
    /// A `StreamSender` was made for this job: its final post says `isStream=true`.
    pub(crate) started: bool,
    /// The chunks' outputs, kept when aggregating.
    pub(crate) items: Vec<Box<RawValue>>,
}

/// The latest progress update not yet posted, and the task that posts updates in order.
#[derive(Default)]
struct ProgressQueue {
    latest: Mutex<Option<Vec<u8>>>,
    wake: Notify,
    closed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Control {
    pub(crate) fn attach(&self, outbound: Arc<dyn Outbound>, aggregate: bool) {
        let _ = self.outbound.set(outbound);
        self.aggregate.store(aggregate, Ordering::Relaxed);
    }

    pub(crate) fn outbound(&self) -> Option<&Arc<dyn Outbound>> {
        self.outbound.get()
    }

    pub(crate) fn aggregates(&self) -> bool {
        self.aggregate.load(Ordering::Relaxed) || self.outbound.get().is_none()
    }

    /* ---- cancellation ---- */

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.cancel_notify.notify_waiters();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.cancel_notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /* ---- refresh ---- */

    pub(crate) fn request_refresh(&self) {
        self.refresh.store(true, Ordering::Relaxed);
    }

    pub(crate) fn refresh_requested(&self) -> bool {
        self.refresh.load(Ordering::Relaxed)
    }

    /* ---- streaming ---- */

    pub(crate) fn stream(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /* ---- progress ---- */

    /// Keep an update of a job without a platform (see `kept_progress`).
    pub(crate) fn keep_progress(&self, update: serde_json::Value) {
        self.kept_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(update);
    }

    pub(crate) fn kept_progress(&self) -> Vec<serde_json::Value> {
        self.kept_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queue a progress update; a newer one replaces an older one not yet posted. Posting happens
    /// on a per-job task, in order, so the handler never waits for it.
    pub(crate) fn progress(self: &Arc<Self>, job_id: &str, body: Vec<u8>) {
        let queue = &self.progress;
        let Some(outbound) = self.outbound.get().cloned() else {
            tracing::debug!(
                "progress update (no platform attached): {}",
                String::from_utf8_lossy(&body)
            );
            return;
        };
        // The closed check, the update and the posting task's start happen under the task's
        // lock, which `close_progress` takes to close: an update from a thread still running
        // after the handler returned is either queued before the close (and posted before the
        // result) or refused.
        let mut task = queue.task.lock().unwrap_or_else(|p| p.into_inner());
        if queue.closed.load(Ordering::SeqCst) {
            return;
        }
        *queue.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        if task.is_none() {
            let control = self.clone();
            let job_id = job_id.to_owned();
            let span = tracing::Span::current();
            *task = Some(tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let queue = &control.progress;
                    loop {
                        let next = queue
                            .latest
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take();
                        match next {
                            Some(body) => outbound.progress(&job_id, body).await,
                            None if queue.closed.load(Ordering::SeqCst) => break,
                            None => queue.wake.notified().await,
                        }
                    }
                },
                span,
            )));
        }
        queue.wake.notify_one();
    }

    /// Before the final result: stop accepting updates, and wait until the latest one queued
    /// is posted (so a handler's last update is seen while the job runs), never after.
    pub(crate) async fn close_progress(&self) {
        let queue = &self.progress;
        let task = {
            let mut task = queue.task.lock().unwrap_or_else(|p| p.into_inner());
            queue.closed.store(true, Ordering::SeqCst);
            task.take()
        };
        queue.wake.notify_one();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Records what was delivered; each progress post takes a while, like a slow network.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<String>>,
    }

    impl Outbound for Recorder {
        fn progress(&self, _job_id: &str, body: Vec<u8>) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.events
                    .lock()
                    .unwrap()
                    .push(String::from_utf8(body).unwrap());
            })
        }
        fn chunk(&self, _job_id: &str, _body: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[tokio::test]
    async fn no_progress_is_delivered_after_the_queue_closes_and_newest_wins() {
        let recorder = Arc::new(Recorder::default());
        let control = Arc::new(Control::default());
        control.attach(recorder.clone(), false);
        for step in 0..50 {
            control.progress("j", format!("{step}").into_bytes());
        }
        control.close_progress().await;
        recorder.events.lock().unwrap().push("final".into());
        control.progress("j", b"late".to_vec());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let events = recorder.events.lock().unwrap().clone();
        assert_eq!(
            events.last().map(String::as_str),
            Some("final"),
            "{events:?}"
        );
        // Updates that were superseded before they could be posted were dropped; the latest
        // was posted before the result.
        assert!(events.len() < 10, "{events:?}");
        assert_eq!(events[events.len() - 2], "49", "{events:?}");
        assert!(!events.contains(&"late".to_owned()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn updates_from_a_thread_still_running_never_follow_the_result() {
        let recorder = Arc::new(Recorder::default());
        let control = Arc::new(Control::default());
        control.attach(recorder.clone(), false);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (control, stop) = (control.clone(), stop.clone());
            let runtime = tokio::runtime::Handle::current();
            std::thread::spawn(move || {
                let _guard = runtime.enter();
                let mut step = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    control.progress("j", format!("{step}").into_bytes());
                    step += 1;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        control.close_progress().await;
        recorder.events.lock().unwrap().push("final".into());
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        let events = recorder.events.lock().unwrap().clone();
        assert_eq!(
            events.last().map(String::as_str),
            Some("final"),
            "an update was posted after the result: {events:?}"
        );
    }

    #[tokio::test]
    async fn cancellation_wakes_waiters() {
        let control = Arc::new(Control::default());
        let waiter = {
            let control = control.clone();
            tokio::spawn(async move { control.cancelled().await })
        };
        assert!(!control.is_cancelled());
        control.cancel();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(control.is_cancelled());
    }
}
