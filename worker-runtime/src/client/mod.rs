//! Calling an endpoint from Rust: a typed client for RunPod's endpoint API (queue endpoints)
//! and for load-balancing endpoints served by a worker of this crate.
//!
//! The input and output types are the worker's own (`Endpoint<In, Out>`): keep them in a crate
//! both sides depend on and the caller and the worker share one contract, checked by the
//! compiler on the caller's side and by the worker's deserialization on the other.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use serde::{Deserialize, Serialize};
//! use worker::client::Endpoint;
//!
//! #[derive(Serialize)]
//! struct Prompt {
//!     prompt: String,
//! }
//!
//! #[derive(Deserialize)]
//! struct Answer {
//!     text: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), worker::client::ClientError> {
//!     let key = std::env::var("RUNPOD_API_KEY").unwrap_or_default();
//!     let endpoint = Endpoint::<Prompt, Answer>::new("abc123xyz", &key)?;
//!
//!     // Wait for the answer (RunPod's /runsync, then /status polling past its wait).
//!     let prompt = Prompt { prompt: "hello".into() };
//!     let answer = endpoint.run_sync(&prompt, Duration::from_secs(60)).await?;
//!     println!("{}", answer.text);
//!
//!     // Or queue the job and come back for it.
//!     let job = endpoint.run(&prompt).await?;
//!     println!("queued {}", job.id());
//!     let answer = job.wait(Duration::from_secs(600)).await?;
//!     println!("{}", answer.text);
//!     Ok(())
//! }
//! ```
//!
//! Every call has a timeout (the builder's [`timeout`](Builder::timeout), or the `wait` a call
//! takes) and retries with exponential back-off on the answers and errors that say the call
//! can be made again: 408, 429 (after its `Retry-After`), 500, 502, 503, 504 and transport
//! errors, for the calls that can be repeated without harm (`status`, `stream`, `cancel`,
//! `retry`, `health`, `purge_queue`). A call that submits a job (`run`, `run_sync`) is repeated
//! only when the job cannot have been submitted: the connection was never made, or the
//! platform refused it with 429; after anything else (a timeout, a reset connection, a 5xx)
//! the job may be running, and the error says so instead of submitting it twice.
//! A failed call's [`ClientError`] names the call, the request, and the platform's answer.

mod builder;
mod error;
mod http;
mod load_balancing;
mod queue;
mod sse;
mod status;
mod stream;

pub use builder::Builder;
pub use error::{ClientError, ClientErrorKind, JobError};
pub use load_balancing::{LoadBalancingEndpoint, Readiness};
pub use queue::{Endpoint, JobHandle, RunOptions};
pub use status::{Health, JobCounts, JobState, JobStatus, WorkerCounts};
pub use stream::{JobStream, StreamEvent};
