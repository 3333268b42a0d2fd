//! Futures put behind a pointer and a vtable where the code that runs should stay small.
//!
//! An `async fn` awaited inside another is usually inlined into the caller's poll function: the
//! start-up's mode dispatch became one 40 KB function holding every mode (local test,
//! `--rp_serve_api`, load balancing, production), and a platform request's poll held every way
//! an answer's body can end. Only a few parts of such a function run, spread over all its
//! pages, and the kernel maps 64 KB around every page that runs: erasing the parts a worker
//! does not run keeps the code it runs closer together, and fewer pages of the binary resident
//! (BENCHMARKS.md, "Memory"). Each costs an allocation when it runs, so only what runs once (a
//! mode) or rarely (a body not framed by Content-Length) goes through here, never what every
//! job does.

use std::future::Future;
use std::pin::Pin;

/// `future`, boxed, behind `dyn Future`: polled through a vtable, so never inlined.
pub(crate) fn erased<'a, T>(
    future: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}
