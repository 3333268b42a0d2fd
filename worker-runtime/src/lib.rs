//! Write RunPod serverless workers in Rust.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Prompt { text: String }
//!
//! #[derive(Serialize)]
//! struct Reply { shout: String }
//!
//! struct Model { suffix: String }
//!
//! #[worker::init]
//! fn load() -> Model {
//!     Model { suffix: "!".into() }
//! }
//!
//! #[worker::handler]
//! async fn generate(input: Prompt, model: &Model) -> Result<Reply, std::io::Error> {
//!     Ok(Reply { shout: input.text.to_uppercase() + &model.suffix })
//! }
//! ```
//!
//! The macros generate `fn main`: it reads RunPod's environment, runs `load` once, and then
//! either runs one local test job (`--test_input '{"input": …}'` or `./test_input.json`) or takes
//! jobs from the platform until SIGTERM. Both functions stay plain Rust that tests can call.
//!
//! Without the macros, build a [`Handler`] with [`handler_fn`] and call [`run`].
//!
//! `#[worker::handler(batch = 32)]` on a handler taking `Vec<Input>` gathers jobs that arrive
//! together into one call ([`Batched`]), each job keeping its own result.
//!
//! Opt-in features: `storage` (the `worker::storage` module: upload large outputs and files to
//! S3-compatible storage and return presigned URLs) and `download` (`worker::download`,
//! `Job::download`: URL inputs into a per-job temporary directory, with the Python SDK's SSRF
//! rules).

mod batch;
#[cfg(feature = "client")]
pub mod client;
mod config;
mod constraints;
mod contract;
mod control;
#[cfg(feature = "download")]
pub mod download;
mod erased;
mod error;
mod final_body;
mod finite;
mod handler;
mod heartbeat;
mod hub;
mod init_gate;
mod job;
mod job_log;
mod job_loop;
mod limits;
mod load_balancing;
mod local;
mod logging;
mod platform;
mod platform_client;
#[cfg(test)]
mod props;
mod report;
mod retry;
mod serve_api;
mod shutdown;
mod start;
#[cfg(feature = "storage")]
pub mod storage;
mod stream;
mod tls;
mod wire;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use batch::{
    Batch, BatchFn, BatchHandler, BatchInvocation, BatchOutcome, Batched, DEFAULT_BATCH_WAIT,
    batch_fn,
};
pub use error::{Error, ErrorKind};
pub use handler::{Handler, HandlerFn, Invocation, Outcome, handler_fn};
pub use job::Job;
pub use platform::Platform;
pub use report::{Diagnostic, Failure};
pub use start::{Worker, args, run};
pub use stream::{StreamError, StreamSender};
pub use worker_macros::{handler, init};

/// JSON Schema for input and output types, so callers can read the endpoint's contract
/// (`--schema`). Derive it with the crate path, as schemars is re-exported rather than a
/// dependency of yours:
///
/// ```
/// #[derive(serde::Deserialize, worker::JsonSchema)]
/// #[schemars(crate = "worker::schemars")]
/// struct Prompt {
///     /// What to say (becomes the field's `description`).
///     text: String,
/// }
/// ```
#[cfg(feature = "schema")]
pub use schemars::{self, JsonSchema};

/// garde, whose `#[garde(...)]` rules on an input type are checked before the handler runs
/// (README, "The input contract"). Its derive names the crate `garde`, so a crate deriving
/// `garde::Validate` depends on it itself, at the version this one uses (0.23):
/// `garde = { version = "0.23", features = ["derive"] }`.
#[cfg(feature = "validate")]
pub use garde;

/// JSON values, for handlers whose input or output is any JSON.
pub use serde_json::{Value, json};

/// tokio's timers (`sleep`, `timeout`, `interval`, `Instant`), re-exported so an async handler
/// can wait or bound its work without a direct `tokio` dependency.
///
/// ```no_run
/// #[worker::handler]
/// async fn slow(input: String) -> Result<String, worker::time::error::Elapsed> {
///     worker::time::timeout(std::time::Duration::from_secs(5), async {
///         worker::time::sleep(std::time::Duration::from_millis(100)).await;
///         input
///     })
///     .await
/// }
/// ```
pub use tokio::time;

/// Logging macros, re-exported so workers need no direct `tracing` dependency. Lines logged
/// inside a handler carry the job id.
pub use tracing;
