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

    /// Send one item and wait until the platform has it.
    pub async fn send(&self, item: T) -> Result<(), StreamError> {
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
    pub fn send_blocking(&self, item: T) -> Result<(), StreamError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(self.send(item)),
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
