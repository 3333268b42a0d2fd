//! Load-balancing endpoints: the handler served over HTTP, as RunPod's load-balancing
//! endpoints route requests straight to a worker (`--load-balancing` or
//! `WORKER_MODE=load-balancing`; feature `load-balancing`, on by default).
//!
//! The server listens on `PORT` before init runs, so the platform sees health answer 204 while
//! `#[worker::init]` works, 200 once it is done, 503 (with the reason) if it failed, and 503
//! while draining after SIGTERM. Requests take one of `concurrency` slots (429 beyond them), run
//! through the same [`Handler::call`] as queued jobs, and answer in RunPod's job shapes
//! (`{"id", "status", "output" | "error"}`), so a client moves between the two kinds of endpoint
//! without changing its payloads.

#[cfg(feature = "load-balancing")]
mod answer;
#[cfg(feature = "load-balancing")]
mod openapi;
#[cfg(feature = "load-balancing")]
mod routes;
#[cfg(feature = "load-balancing")]
mod running;
#[cfg(feature = "load-balancing")]
mod server;

use crate::control::BoxFuture;
use crate::error::Error;
use crate::report::Failure;

/// The handler, once init finished: or what to report (and return) when it failed.
pub(crate) type Build<H> = BoxFuture<'static, Result<H, (Failure, Error)>>;

/// Serve `build`'s handler as a load-balancing worker until SIGTERM (then drain).
#[cfg(feature = "load-balancing")]
pub(crate) use server::serve;

/// A load-balancing worker built without the `load-balancing` feature.
#[cfg(not(feature = "load-balancing"))]
pub(crate) async fn serve<H: crate::handler::Handler>(
    _: crate::config::LoadBalancing,
    _: Build<H>,
    _: &crate::start::Settings,
    _: crate::limits::Limits,
    _: crate::shutdown::SecondSignal,
) -> Result<(), Error> {
    let message = "a load-balancing worker (--load-balancing, WORKER_MODE=load-balancing) needs \
                   the `load-balancing` feature of worker-runtime (on by default); this worker \
                   was built without it";
    tracing::error!("{message}");
    Err(Error::config(message))
}
