//! Dynamic batching: jobs that arrive close together are gathered into one call of a handler
//! that takes a `Vec` of inputs, so a model sees many inputs at once, and each job still ends
//! with its own result.
//!
//! [`Batched`] is a [`Handler`]: every job goes through the ordinary job task (its own span,
//! cancellation, shutdown grace and result post). Its `call` deserializes the job's input (a bad
//! one fails only that job) and queues it; one gathering task per handler starts a batch when
//! `size` jobs wait or the oldest has waited `wait`, as long as fewer than `concurrency` batches
//! run. A job whose task stopped waiting (cancelled) is left out of a batch not yet started.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::handler::{Handler, Invocation, Outcome, deserialize_described, failure_of_error};
use crate::job::Job;
use crate::report::{self, Failure};

/// How long a batch waits for more jobs after its first one arrived, unless set.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(10);

/// The jobs of one batch: their inputs, and the jobs themselves in the same order.
pub struct Batch<I> {
    inputs: Vec<I>,
    jobs: Vec<Job>,
}

impl<I> Batch<I> {
    /// A batch of `inputs` for `jobs` (the same length, in the same order). Meant for tests.
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn new(inputs: Vec<I>, jobs: Vec<Job>) -> Batch<I> {
        assert_eq!(inputs.len(), jobs.len(), "one job per input");
        Batch { inputs, jobs }
    }

    /// How many jobs the batch holds.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether the batch holds no job (never true for a batch the worker made).
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The inputs, one per job.
    pub fn inputs(&self) -> &[I] {
        &self.inputs
    }

    /// The jobs, in the order of the inputs.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The inputs and the jobs.
    pub fn into_parts(self) -> (Vec<I>, Vec<Job>) {
        (self.inputs, self.jobs)
    }
}

impl<I> fmt::Debug for Batch<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.jobs.iter().map(Job::id).collect();
        f.debug_struct("Batch").field("jobs", &ids).finish()
    }
}

/// What a batch ends as: one [`Outcome`] per job, in order, or one failure for all of them.
pub type BatchOutcome = Result<Vec<Outcome>, Failure>;

/// The running of one batch: a future that ends in a [`BatchOutcome`]. Panics inside it are
/// caught and fail every job of the batch.
pub struct BatchInvocation {
    future: Pin<Box<dyn Future<Output = BatchOutcome> + Send + 'static>>,
}

impl BatchInvocation {
    /// A batch that runs `future` on the async runtime.
    pub fn new(future: impl Future<Output = BatchOutcome> + Send + 'static) -> BatchInvocation {
        BatchInvocation {
            future: Box::pin(future),
        }
    }

    /// A batch that runs blocking code (a model's forward pass) on a blocking thread, so the
    /// job loop, heartbeats and the next batch's gathering keep going.
    pub fn blocking(work: impl FnOnce() -> BatchOutcome + Send + 'static) -> BatchInvocation {
        let span = tracing::Span::current();
        BatchInvocation::new(async move {
            match tokio::task::spawn_blocking(move || span.in_scope(|| report::catch_panic(work)))
                .await
            {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(panic)) => Err(panic),
                Err(join) => Err(Failure::new(
                    "JoinError",
                    format!("the blocking batch handler task did not finish: {join}"),
                )),
            }
        })
    }
}

impl Future for BatchInvocation {
    type Output = BatchOutcome;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BatchOutcome> {
        let future = self.future.as_mut();
        match report::catch_panic(|| future.poll(cx)) {
            Ok(poll) => poll,
            Err(failure) => Poll::Ready(Err(failure)),
        }
    }
}

impl fmt::Debug for BatchInvocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchInvocation").finish_non_exhaustive()
    }
}

/// A handler of batches: what [`Batched`] calls with the gathered jobs.
///
/// `#[worker::handler(batch = N)]` implements it for you. Without the macro, use [`batch_fn`],
/// or implement it on your own type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch handler",
    note = "wrap an async function of `(Vec<Input>, Vec<Job>)` with `worker::batch_fn(f)`, or annotate it with `#[worker::handler(batch = 32)]`"
)]
pub trait BatchHandler: Send + Sync + 'static {
    /// One job's input, deserialized from its `input`.
    type Input: DeserializeOwned + Send + 'static;

    /// Start running `batch`; the outcome holds one entry per job, in order.
    fn call(&self, batch: Batch<Self::Input>) -> BatchInvocation;

    /// Check one job's deserialized input (`raw` is its `input` as sent) before it joins a
    /// batch: a job that fails here fails alone, with this failure, and the batch goes on
    /// without it. The default accepts every input; `#[worker::handler(batch = …)]` checks
    /// the input type's `#[garde(...)]` constraints here.
    fn check_input(&self, input: &Self::Input, raw: &serde_json::Value) -> Result<(), Failure> {
        let _ = (input, raw);
        Ok(())
    }

    /// The JSON Schema of one job's input, if there is one: a job whose input does not
    /// deserialize is then told what a missing field is. `#[worker::handler(batch = …)]`
    /// gives the input type's, when it derives `JsonSchema`.
    fn input_schema(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A [`BatchHandler`] from an async function `f(inputs, jobs) -> Result<Vec<T>, E>` that returns
/// one output per input, in order.
///
/// ```no_run
/// use std::convert::Infallible;
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let lengths = worker::batch_fn(|texts: Vec<String>, _jobs: Vec<worker::Job>| async move {
///         Ok::<_, Infallible>(texts.iter().map(|t| t.len()).collect::<Vec<_>>())
///     });
///     worker::run(worker::Batched::new(lengths, 32)).await
/// }
/// ```
pub fn batch_fn<F, I, Fut, T, E>(f: F) -> BatchFn<F, I>
where
    F: Fn(Vec<I>, Vec<Job>) -> Fut + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    Fut: Future<Output = Result<Vec<T>, E>> + Send + 'static,
    T: Serialize,
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    BatchFn {
        f,
        _input: PhantomData,
    }
}

/// The [`BatchHandler`] returned by [`batch_fn`].
pub struct BatchFn<F, I> {
    f: F,
    _input: PhantomData<fn(I)>,
}

impl<F, I> fmt::Debug for BatchFn<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFn")
            .field("input", &std::any::type_name::<I>())
            .finish()
    }
}

impl<F, I, Fut, T, E> BatchHandler for BatchFn<F, I>
where
    F: Fn(Vec<I>, Vec<Job>) -> Fut + Send + Sync + 'static,
    I: DeserializeOwned + Send + 'static,
    Fut: Future<Output = Result<Vec<T>, E>> + Send + 'static,
    T: Serialize,
    E: Into<Box<dyn StdError + Send + Sync + 'static>>,
{
    type Input = I;

    fn call(&self, batch: Batch<I>) -> BatchInvocation {
        let (inputs, jobs) = batch.into_parts();
        let future = (self.f)(inputs, jobs);
        BatchInvocation::new(async move {
            match future.await {
                Ok(outputs) => Ok(outputs.iter().map(Outcome::output).collect()),
                Err(error) => Err(failure_of_error(error)),
            }
        })
    }
}

/// A job waiting for its batch.
struct Waiting<I> {
    input: I,
    job: Job,
    reply: oneshot::Sender<Outcome>,
    arrived: Instant,
}

/// A [`Handler`] that runs a [`BatchHandler`] on batches of up to `size` jobs.
///
/// The worker holds up to `size × (concurrency + 1)` jobs: `concurrency` batches running and
/// one gathering, so the next batch is ready when one ends. A batch starts when `size` jobs
/// wait, or when the oldest waiting job has waited [`wait`](Batched::wait) (10 ms unless set).
pub struct Batched<B: BatchHandler> {
    gather: Arc<Gather<B>>,
}

struct Gather<B: BatchHandler> {
    handler: B,
    size: usize,
    wait: Duration,
    queue: Mutex<VecDeque<Waiting<B::Input>>>,
    /// Batches that may run at once (the worker's concurrency).
    limit: AtomicUsize,
    running: AtomicUsize,
    /// A job was queued (one waiter: the gathering task).
    arrived: Notify,
    /// A batch ended.
    ended: Notify,
    gatherer: Mutex<Option<JoinHandle<()>>>,
}

impl<B: BatchHandler> Batched<B> {
    /// Run `handler` on batches of up to `size` jobs (at least 1).
    pub fn new(handler: B, size: usize) -> Batched<B> {
        Batched {
            gather: Arc::new(Gather {
                handler,
                size: size.max(1),
                wait: DEFAULT_BATCH_WAIT,
                queue: Mutex::new(VecDeque::new()),
                limit: AtomicUsize::new(1),
                running: AtomicUsize::new(0),
                arrived: Notify::new(),
                ended: Notify::new(),
                gatherer: Mutex::new(None),
            }),
        }
    }

    /// Wait at most `wait` after a batch's first job for more jobs before starting it.
    ///
    /// # Panics
    /// When called after the handler ran its first job.
    pub fn wait(mut self, wait: Duration) -> Batched<B> {
        Arc::get_mut(&mut self.gather)
            .expect("set the batch wait before the worker runs")
            .wait = wait;
        self
    }

    /// The most jobs one batch holds.
    pub fn size(&self) -> usize {
        self.gather.size
    }

    /// The longest a batch waits for more jobs after its first.
    pub fn wait_bound(&self) -> Duration {
        self.gather.wait
    }

    /// Start the gathering task on the current runtime, again if the runtime it ran on ended
    /// (a handler reused across tests).
    fn ensure_gatherer(&self) {
        let mut gatherer = self
            .gather
            .gatherer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if gatherer.as_ref().is_none_or(JoinHandle::is_finished) {
            *gatherer = Some(tokio::spawn(gather(self.gather.clone())));
        }
    }
}

impl<B: BatchHandler> fmt::Debug for Batched<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batched")
            .field("size", &self.gather.size)
            .field("wait", &self.gather.wait)
            .finish_non_exhaustive()
    }
}

impl<B: BatchHandler> Handler for Batched<B> {
    fn call(&self, job: Job) -> Invocation {
        let handler = &self.gather.handler;
        let input = match deserialize_described::<B::Input>(&job, || handler.input_schema())
            .and_then(|input| handler.check_input(&input, job.input()).map(|()| input))
        {
            Ok(input) => input,
            Err(failure) => return Invocation::ready(Outcome::failed(failure)),
        };
        let (reply, outcome) = oneshot::channel();
        self.gather
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Waiting {
                input,
                job,
                reply,
                arrived: Instant::now(),
            });
        self.ensure_gatherer();
        self.gather.arrived.notify_one();
        Invocation::new(async move {
            outcome.await.unwrap_or_else(|_| {
                Outcome::failed(Failure::new(
                    "BatchStopped",
                    "the batch holding this job stopped before it ended (the worker is shutting \
                     down)",
                ))
            })
        })
    }

    fn jobs_to_hold(&self, concurrency: usize) -> usize {
        let concurrency = concurrency.max(1);
        self.gather.limit.store(concurrency, Ordering::Relaxed);
        // A batch may have ended waiting for room that a raise just made.
        self.gather.ended.notify_one();
        self.gather.size * (concurrency + 1)
    }
}

/// The gathering task: forever, wait for room to run a batch and for a first job, then for the
/// batch to fill or its wait to pass, and start it.
async fn gather<B: BatchHandler>(gather: Arc<Gather<B>>) {
    loop {
        while gather.running.load(Ordering::Acquire) >= gather.limit.load(Ordering::Relaxed) {
            gather.ended.notified().await;
        }
        let oldest = loop {
            if let Some(oldest) = gather.oldest_waiting() {
                break oldest;
            }
            gather.arrived.notified().await;
        };
        let deadline = oldest + gather.wait;
        while gather.waiting() < gather.size && Instant::now() < deadline {
            tokio::select! {
                () = gather.arrived.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        let batch = gather.take_batch();
        if batch.is_empty() {
            continue;
        }
        gather.running.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(run_batch(gather.clone(), batch));
    }
}

impl<B: BatchHandler> Gather<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting<B::Input>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the oldest job still waiting arrived; jobs no one waits for are dropped.
    fn oldest_waiting(&self) -> Option<Instant> {
        let mut queue = self.lock();
        while queue.front().is_some_and(|w| w.reply.is_closed()) {
            queue.pop_front();
        }
        queue.front().map(|w| w.arrived)
    }

    fn waiting(&self) -> usize {
        self.lock().iter().filter(|w| !w.reply.is_closed()).count()
    }

    /// Up to `size` jobs, oldest first, leaving out those whose task stopped waiting
    /// (cancelled, or failed by the shutdown grace).
    fn take_batch(&self) -> Vec<Waiting<B::Input>> {
        let mut queue = self.lock();
        let mut batch = Vec::with_capacity(self.size.min(queue.len()));
        while batch.len() < self.size {
            let Some(waiting) = queue.pop_front() else {
                break;
            };
            if !waiting.reply.is_closed() && !waiting.job.is_cancelled() {
                batch.push(waiting);
            }
        }
        batch
    }
}

/// Run one batch and give each job its outcome.
async fn run_batch<B: BatchHandler>(gather: Arc<Gather<B>>, batch: Vec<Waiting<B::Input>>) {
    let count = batch.len();
    let mut inputs = Vec::with_capacity(count);
    let mut jobs = Vec::with_capacity(count);
    let mut replies = Vec::with_capacity(count);
    for waiting in batch {
        inputs.push(waiting.input);
        jobs.push(waiting.job);
        replies.push(waiting.reply);
    }
    let span = tracing::info_span!("batch", jobs = count);
    let outcome = async {
        let ids: Vec<&str> = jobs.iter().map(Job::id).collect();
        tracing::debug!("batch of {count} job(s): {}", ids.join(", "));
        let invocation = gather.handler.call(Batch {
            inputs,
            jobs: jobs.clone(),
        });
        invocation.await
    }
    .instrument(span)
    .await;
    match outcome {
        Ok(outcomes) if outcomes.len() == count => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Ok(outcomes) => {
            let failure = Failure::new(
                "BatchOutputLength",
                format!(
                    "the batch handler returned {} output(s) for a batch of {count} job(s): \
                     return exactly one output per input, in the inputs' order",
                    outcomes.len()
                ),
            );
            tracing::error!("{failure}");
            for reply in replies {
                let _ = reply.send(Outcome::failed(failure.clone()));
            }
        }
        Err(failure) => {
            for reply in replies {
                let _ = reply.send(Outcome::failed(failure.clone()));
            }
        }
    }
    drop(jobs);
    gather.running.fetch_sub(1, Ordering::AcqRel);
    gather.ended.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicBool;

    /// Doubles each number; records the batch sizes it saw.
    fn doubler(sizes: Arc<Mutex<Vec<usize>>>) -> Batched<impl BatchHandler<Input = i64>> {
        Batched::new(
            batch_fn(move |inputs: Vec<i64>, jobs: Vec<Job>| {
                sizes.lock().unwrap().push(inputs.len());
                async move {
                    assert_eq!(inputs.len(), jobs.len());
                    if inputs.contains(&-1) {
                        return Err(std::io::Error::other("a negative one"));
                    }
                    if inputs.contains(&-2) {
                        panic!("minus two");
                    }
                    Ok(inputs.iter().map(|n| n * 2).collect::<Vec<_>>())
                }
            }),
            4,
        )
        .wait(Duration::from_millis(50))
    }

    async fn run_all(
        handler: &Batched<impl BatchHandler>,
        inputs: &[serde_json::Value],
    ) -> Vec<Outcome> {
        let calls: Vec<Invocation> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| handler.call(Job::new(format!("j{i}"), input.clone())))
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await);
        }
        outcomes
    }

    #[tokio::test]
    async fn jobs_are_gathered_and_each_gets_its_own_output() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let handler = doubler(sizes.clone());
        let inputs: Vec<_> = (0..10).map(|n| json!(n)).collect();
        let outcomes = run_all(&handler, &inputs).await;
        let outputs: Vec<_> = outcomes.iter().map(|o| o.output_json().unwrap()).collect();
        assert_eq!(
            outputs,
            ["0", "2", "4", "6", "8", "10", "12", "14", "16", "18"]
        );
        // At most `size` per batch, and queued together they are gathered together.
        assert_eq!(*sizes.lock().unwrap(), [4, 4, 2]);
    }

    #[tokio::test]
    async fn a_bad_input_fails_only_its_job() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let handler = doubler(sizes.clone());
        let outcomes = run_all(&handler, &[json!(1), json!("two"), json!(3)]).await;
        assert_eq!(outcomes[0].output_json(), Some("2"));
        let failure = outcomes[1].failure().unwrap();
        assert_eq!(failure.error_type(), "InvalidInput");
        assert_eq!(outcomes[2].output_json(), Some("6"));
        assert_eq!(*sizes.lock().unwrap(), [2]);
    }

    #[tokio::test]
    async fn an_error_or_a_panic_fails_every_job_of_its_batch() {
        report::install_panic_hook();
        let handler = doubler(Arc::default());
        let outcomes = run_all(&handler, &[json!(1), json!(-1)]).await;
        for outcome in &outcomes {
            assert_eq!(outcome.failure().unwrap().message(), "a negative one");
        }
        let outcomes = run_all(&handler, &[json!(-2), json!(5)]).await;
        for outcome in &outcomes {
            assert_eq!(outcome.failure().unwrap().message(), "minus two");
        }
        // The handler keeps working.
        let outcomes = run_all(&handler, &[json!(7)]).await;
        assert_eq!(outcomes[0].output_json(), Some("14"));
    }

    #[tokio::test]
    async fn a_wrong_number_of_outputs_fails_the_batch_with_a_reason() {
        let handler = Batched::new(
            batch_fn(|inputs: Vec<u8>, _| async move {
                Ok::<_, std::io::Error>(vec![0; inputs.len() + 1])
            }),
            8,
        );
        let outcomes = run_all(&handler, &[json!(1), json!(2)]).await;
        let failure = outcomes[0].failure().unwrap();
        assert_eq!(failure.error_type(), "BatchOutputLength");
        assert!(
            failure
                .message()
                .starts_with("the batch handler returned 3 output(s) for a batch of 2 job(s)"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn a_job_whose_task_stopped_waiting_is_left_out() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let handler = doubler(sizes.clone());
        let dropped = handler.call(Job::new("gone", json!(1)));
        let kept = handler.call(Job::new("kept", json!(2)));
        drop(dropped);
        assert_eq!(kept.await.output_json(), Some("4"));
        assert_eq!(*sizes.lock().unwrap(), [1]);
    }

    #[tokio::test]
    async fn batches_wait_for_room_under_the_concurrency() {
        let running = Arc::new(AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicBool::new(false));
        let (r, o) = (running.clone(), overlapped.clone());
        let handler = Batched::new(
            batch_fn(move |inputs: Vec<u8>, _| {
                let (r, o) = (r.clone(), o.clone());
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) > 0 {
                        o.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(inputs)
                }
            }),
            2,
        )
        .wait(Duration::ZERO);
        assert_eq!(handler.jobs_to_hold(1), 4);
        let inputs: Vec<_> = (0..6).map(|n| json!(n)).collect();
        let outcomes = run_all(&handler, &inputs).await;
        assert!(outcomes.iter().all(|o| o.failure().is_none()));
        assert!(
            !overlapped.load(Ordering::SeqCst),
            "two batches ran at once"
        );
    }
}
