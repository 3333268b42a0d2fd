//! A job's stream as the caller reads it: its items in order, typed, then the end (or the job's
//! error). The requests behind it run on a task of their own, stopped when the stream is dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::error::ClientError;

/// What a job's stream carries: the items the handler streamed, and its progress updates.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent<Item> {
    /// An item the handler streamed.
    Item(Item),
    /// A progress update (`job.progress(…)`), where the endpoint reports them in its stream
    /// (a load-balancing worker's `/stream` does). Progress is the job's latest state: updates
    /// sent faster than they are delivered are coalesced, the last one always arrives.
    Progress(Value),
}

/// The items a job streams, in order. It is a [`futures_core::Stream`] of
/// `Result<Item, ClientError>`, and has [`next`](JobStream::next) of its own, so that no stream
/// extension crate is needed:
///
/// ```no_run
/// # async fn demo(job: worker::client::JobHandle<Vec<String>>) -> Result<(), worker::client::ClientError> {
/// let mut words = job.stream::<String>();
/// while let Some(word) = words.next().await {
///     print!("{} ", word?);
/// }
/// # Ok(()) }
/// ```
///
/// The stream ends after the job's last item; a job that fails, is cancelled or times out
/// ends it with an `Err` holding its [`JobError`](super::JobError). Dropping the stream stops
/// reading it (on a load-balancing endpoint this closes the request, which cancels the job).
pub struct JobStream<Item> {
    events: mpsc::Receiver<Result<StreamEvent<Item>, ClientError>>,
    reader: JoinHandle<()>,
}

impl<Item> fmt::Debug for JobStream<Item> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobStream").finish_non_exhaustive()
    }
}

/// Where a stream's reader puts what it read.
#[derive(Debug)]
pub(super) struct Events<Item> {
    sender: mpsc::Sender<Result<StreamEvent<Item>, ClientError>>,
}

impl<Item> Events<Item> {
    /// Hand on an event; false once the stream was dropped (the reader then stops).
    pub(super) async fn send(&self, event: Result<StreamEvent<Item>, ClientError>) -> bool {
        self.sender.send(event).await.is_ok()
    }
}

impl<Item: Send + 'static> JobStream<Item> {
    /// A stream whose events `read` produces on a task of its own.
    pub(super) fn spawn<F, Fut>(read: F) -> JobStream<Item>
    where
        F: FnOnce(Events<Item>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // A few events of read-ahead; past them the reader waits for the caller.
        let (sender, events) = mpsc::channel(16);
        let reader = tokio::spawn(read(Events { sender }));
        JobStream { events, reader }
    }
}

impl<Item> JobStream<Item> {
    /// The next item, or the error that ended the stream; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<Item, ClientError>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The next item or progress update, or the error that ended the stream; `None` after the
    /// last.
    pub async fn next_event(&mut self) -> Option<Result<StreamEvent<Item>, ClientError>> {
        self.events.recv().await
    }

    /// Every item, in order, or the first error.
    pub async fn collect(mut self) -> Result<Vec<Item>, ClientError> {
        let mut items = Vec::new();
        while let Some(item) = self.next().await {
            items.push(item?);
        }
        Ok(items)
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Item, ClientError>>> {
        loop {
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(Ok(StreamEvent::Progress(_)))) => continue,
                Poll::Ready(Some(Ok(StreamEvent::Item(item)))) => {
                    return Poll::Ready(Some(Ok(item)));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<Item> futures_core::Stream for JobStream<Item> {
    type Item = Result<Item, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl<Item> Drop for JobStream<Item> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
