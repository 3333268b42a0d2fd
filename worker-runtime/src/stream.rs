//! Streaming handlers: a handler that takes a [`StreamSender<T>`] sends its output item by
//! item; each item is posted to the platform (`{"output": item}`) before `send` returns.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;

use crate::job::Job;

/// Sends a streaming handler's items, one at a time, as RunPod stream chunks.
///
/// A handler streams by taking a `StreamSender<T>` parameter (by value or `&`); its return is
/// then `()` or `Result<(), E>`, and the job's final output is `[]`, or every item with
/// `#[worker::handler(return_aggregate_stream)]`.
///
/// ```no_run
/// use worker::{StreamSender, StreamError};
///
/// #[worker::handler]
/// async fn count(to: u32, stream: StreamSender<u32>) -> Result<(), StreamError> {
///     for n in 1..=to {
///         stream.send(n).await?;
///     }
///     Ok(())
/// }
/// ```
pub struct StreamSender<T> {
    job: Job,
    _items: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for StreamSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSender")
            .field("job", &self.job.id())
            .finish()
    }
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender {
            job: self.job.clone(),
            _items: PhantomData,
        }
    }
}

/// Why an item could not be streamed. Returning it from the handler (`?`) fails the job; the
/// items sent before it stay delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    message: String,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StreamError {}

impl<T: Serialize> StreamSender<T> {
    /// A sender for `job`'s stream. The macro makes it for you; tests can make one on a
    /// [`Job::new`] job and read what was sent with [`Job::streamed`].
    pub fn new(job: &Job) -> StreamSender<T> {
        job.control().stream().started = true;
        StreamSender {
            job: job.clone(),
            _items: PhantomData,
        }
    }

    /// Send one item and wait until the platform has it: `stream.send(item).await?`. Nothing
    /// is sent until the future is awaited; a plain `fn` handler uses
    /// [`send_blocking`](Self::send_blocking).
    // Not an `async fn`: `#[must_use]` then marks the future itself, whose note says what to do.
    #[allow(clippy::manual_async_fn)]
    #[must_use = "the item is sent only when this future is awaited: write `stream.send(item).await?`, or in a plain `fn` handler `stream.send_blocking(item)?`"]
    pub fn send(&self, item: T) -> impl Future<Output = Result<(), StreamError>> + '_ {
        async move { self.send_now(item).await }
    }

    async fn send_now(&self, item: T) -> Result<(), StreamError> {
        let output = serde_json::value::to_raw_value(&item).map_err(|e| StreamError {
            message: format!(
                "a stream item (`{}`) could not be serialized to JSON: {e}",
                std::any::type_name::<T>()
            ),
        })?;
        let control = self.job.control();
        if let Some(outbound) = control.outbound() {
            let body = crate::wire::stream_chunk(&output);
            outbound
                .chunk(self.job.id(), body)
                .await
                .map_err(|message| StreamError { message })?;
        }
        if control.aggregates() {
            control.stream().items.push(output);
        }
        Ok(())
    }

    /// [`send`](Self::send) for blocking (sync) handlers, which run on a blocking thread.
    ///
    /// # Panics
    /// When called from async code (an `async fn` handler, a task): blocking there would stall
    /// the thread other jobs run on. The panic points at the call and says to write
    /// `send(item).await`.
    #[track_caller]
    pub fn send_blocking(&self, item: T) -> Result<(), StreamError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                // tokio refuses to block a thread that drives async tasks, with a panic located
                // inside the runtime; say what to do instead, at the caller's line.
                match crate::report::catch_panic(|| handle.block_on(self.send(item))) {
                    Ok(sent) => sent,
                    Err(panic) if panic.message().contains("within a runtime") => panic!(
                        "`StreamSender::send_blocking` was called from async code (an `async fn` \
                         handler or a task), where blocking would stall other jobs: write \
                         `stream.send(item).await` instead"
                    ),
                    Err(panic) => panic!("{}", panic.message()),
                }
            }
            Err(_) => {
                // Outside a runtime (a plain unit test): nothing to post to, keep the item.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StreamError {
                        message: format!("could not start a runtime to send the item: {e}"),
                    })?;
                runtime.block_on(self.send(item))
            }
        }
    }
}

#[cfg(test)]
mod send_blocking_tests {
    use super::*;

    #[tokio::test]
    async fn send_blocking_in_async_code_says_to_await_send() {
        crate::report::install_panic_hook();
        let job = Job::new("j", serde_json::json!(null));
        let stream = StreamSender::<u8>::new(&job);
        let line = line!() + 1;
        let panic = crate::report::catch_panic(|| stream.send_blocking(1)).unwrap_err();
        assert!(
            panic
                .message()
                .starts_with("`StreamSender::send_blocking` was called from async code"),
            "{}",
            panic.message()
        );
        assert!(
            panic
                .message()
                .ends_with("write `stream.send(item).await` instead")
        );
        let at = format!("src/stream.rs:{line}:");
        assert!(panic.traceback().contains(&at), "{}", panic.traceback());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn send_blocking_on_a_blocking_thread_sends() {
        let job = Job::new("j", serde_json::json!(null));
        let stream = StreamSender::<u8>::new(&job);
        tokio::task::spawn_blocking(move || stream.send_blocking(7))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.streamed(), [serde_json::json!(7)]);
    }
}
