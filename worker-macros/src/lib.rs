//! Attribute macros for RunPod workers. Use them through the `worker-runtime` crate, as
//! `#[worker::handler]` and `#[worker::init]`; the generated code names only
//! `worker::__private` paths.
//!
//! Each macro is parse → validate → expand over `proc_macro2` tokens: `attr` reads the
//! `key = value` arguments, `handler/` and `init/` hold one module per stage, and `expand.rs`
//! is the only place that writes generated code. On any error the user's item is emitted
//! unchanged next to the `compile_error!`s. To see an expansion, use `cargo expand` (the
//! macros read no environment variable of their own: cargo could not track it).

mod attr;
mod codegen;
mod compiled_crate;
mod errors;
mod handler;
mod init;
mod manifest;
#[cfg(test)]
mod props;
mod signature;

use proc_macro::TokenStream;

/// Turns a function into a RunPod worker: the function stays as written (tests can call it)
/// and the macro adds a `fn main` that runs it for each job.
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Prompt { text: String }
///
/// #[derive(Serialize)]
/// struct Output { shout: String }
///
/// struct Model { suffix: String }
///
/// #[worker::init]
/// async fn load() -> anyhow::Result<Model> {
///     Ok(Model { suffix: "!".into() })
/// }
///
/// #[worker::handler(concurrency = 4)]
/// async fn generate(input: Prompt, model: &Model, job: &worker::Job) -> anyhow::Result<Output> {
///     worker::tracing::info!("job {}", job.id());
///     Ok(Output { shout: input.text.to_uppercase() + &model.suffix })
/// }
/// ```
///
/// # Parameters
///
/// Parameters are recognised by their type, in any order, and passed positionally (so patterns
/// such as `Prompt { text }: Prompt` are fine):
///
/// - **Job context**: a parameter whose type is `Job` or `&Job`, meaning any path whose last
///   segment is `Job` (`worker::Job`, `my_worker::Job`). At most one; `&mut Job` is rejected.
/// - **State**: any other shared reference `&T`. It borrows what the module's
///   `#[worker::init]` function returns (`T`, or the `Ok` value of a `Result<T, E>`); without
///   an init function, or with one returning another type, it is a compile error. At most one,
///   and never `&mut T`: the state is shared by concurrent jobs.
/// - **Stream**: `StreamSender<T>` (or `&StreamSender<T>`): the handler streams its output,
///   item by item, and returns `()` or `Result<(), E>`.
/// - **Batch context** (with `batch = N`): `&[Job]` or `Vec<Job>`, the jobs of the batch in
///   the inputs' order.
/// - **Input**: exactly one by-value parameter of any other type `T: DeserializeOwned`,
///   deserialized from the job's `input`. A handler without one is rejected; take
///   `input: serde_json::Value` to accept anything.
///
/// The handler cannot be a method, generic, `unsafe` or `extern`.
///
/// # Return value
///
/// Any `T: Serialize` is the job's output. A `Result<T, E>` (including aliases such as
/// `anyhow::Result<T>`: it is recognised through traits, not by name) fails the job on `Err`;
/// `E` must be `Display`, and `std::error::Error` types, `anyhow::Error` and boxed errors
/// report their cause chain as the traceback.
///
/// An `async fn` runs on the async runtime and its future must be `Send`. A plain `fn` runs on
/// a blocking thread, so it may block (e.g. run a model synchronously).
///
/// # Arguments
///
/// - `concurrency = 4`: run up to 4 jobs at once (default 1); for a batch handler, batches. Any
///   `usize` expression works too (`concurrency = MAX_JOBS`, a `const`).
/// - `concurrency = scale`: `fn scale(current: usize) -> usize` (or a closure) decides the
///   concurrency as the worker runs (the Python SDK's `concurrency_modifier`); asked before
///   every job-take, a change applies at once. From the environment, in one line:
///   `concurrency = |_| std::env::var("CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(1)`.
/// - `batch = 32`: gather up to 32 jobs into one call of a handler taking `Vec<Input>` (and
///   optionally `jobs: &[Job]`), returning one output per input (`Vec<T>`, `Vec<Result<T, E>>`
///   or `Result<Vec<T>, E>`); each job keeps its own result.
/// - `batch_wait = "5ms"`: start a batch at most this long after its first job arrived
///   (default 10 ms; `"500us"`, `"1s"`).
/// - `refresh_worker`: every job asks RunPod for a fresh worker afterwards (`stopPod: true`).
/// - `return_aggregate_stream`: a streaming handler's final output lists every item it sent.
/// - `schema`: the input and output types (a stream's item; the `T` of `Result<T, E>`) must
///   derive `worker::JsonSchema` (a compile error at the type otherwise), so the contract that
///   `--schema` and `/openapi.json` show is never `{}`.
/// - `main = false`: generate `fn worker_main() -> std::process::ExitCode` (with the handler's
///   visibility) instead of `fn main`, for a crate that has its own `main` or puts the handler
///   outside the crate root. Call `worker_main()` from your `main`.
/// - `test_input = "path/to/test_input.json"`: embed this file (relative to the package's
///   `Cargo.toml` directory) as the input of local test mode when neither `--test_input` nor
///   `./test_input.json` is given. It is checked when the crate compiles: a file that is not
///   JSON, or not a job (`{"input": …}`, or a list of them), is a compile error saying where.
/// - `flavor = "current_thread"`: run on a single-threaded tokio runtime instead of the default
///   multi-thread one (`flavor = "multi_thread"`), as `#[tokio::main]` does. One thread means no
///   hand-offs between threads: lower per-job overhead and memory for async handlers that only
///   await (calls to other services). But the job loop, result posts, progress and cancellation
///   then run on that thread too, so an async handler that blocks it (a synchronous model call,
///   a busy loop) holds them all back, and `tokio::task::block_in_place` panics. Plain `fn`
///   handlers still run on blocking threads; the heartbeat has its own thread either way.
/// - `crate = "my_worker"`: the path of the runtime crate in generated code, when it is not
///   `::worker` (e.g. a re-export: `use worker as my_worker;`). A rename in `Cargo.toml`
///   (`rp = { package = "worker-runtime" }`) needs none: the macros read it there.
///
/// The generated `fn main` must be in the crate root; a module holds at most one handler.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(attr.into(), item.into()).into()
}

/// Marks the function that builds the handler's state, run once before the first job.
///
/// It takes no parameters and returns the state `T`, or `Result<T, E>` with `E: Display` (an
/// `Err` is logged, reported to RunPod and ends the process with a failure). `T` must be
/// `Send + Sync + 'static`. It may be `async`, or a plain `fn`, which runs on a blocking thread
/// (loading a model synchronously is fine). The function stays as written.
///
/// ```no_run
/// struct Model { weights: Vec<f32> }
///
/// #[worker::init]
/// fn load() -> std::io::Result<Model> {
///     Ok(Model { weights: vec![0.0; 16] })
/// }
///
/// #[worker::handler]
/// fn predict(input: Vec<f32>, model: &Model) -> f32 {
///     input.iter().zip(&model.weights).map(|(a, b)| a * b).sum()
/// }
/// ```
///
/// The handler in the same module finds it: a module has at most one `#[worker::init]`.
///
/// Arguments: `timeout = "10m"` bounds how long it may run (`"90s"`, `"1h"`; no bound unless
/// set): a hung init is reported as failed, like an `Err`. On RunPod, jobs taken while init runs
/// are then told why the worker could not start. `crate = "…"` as for
/// [`handler`](macro@handler).
#[proc_macro_attribute]
pub fn init(attr: TokenStream, item: TokenStream) -> TokenStream {
    init::expand(attr.into(), item.into()).into()
}
