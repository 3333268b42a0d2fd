//! The server's life: listen before init, health through init, serve, drain on SIGTERM.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Build;
use crate::config::LoadBalancing;
use crate::error::{Error, ErrorKind};
use crate::handler::Handler;
use crate::limits::Limits;
use crate::shutdown::{self, SecondSignal, Shutdown};
use crate::start::Settings;

/// How long a worker whose init failed keeps answering health with 503 and the reason, so the
/// platform (and whoever looks) sees why before the process exits. A SIGTERM ends it sooner.
const INIT_FAILED_LINGER: Duration = Duration::from_secs(10);
/// After the grace period, how long the requests failed by it get to write their answers.
const LAST_ANSWERS: Duration = Duration::from_secs(2);

/// Where the worker is in its life, as health reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// `#[worker::init]` runs: health 204, requests 503.
    Initializing = 0,
    /// Serving: health 200.
    Ready = 1,
    /// Init failed: health and requests 503 with the reason, then the process exits.
    Failed = 2,
    /// SIGTERM: health and new requests 503; running requests finish.
    Draining = 3,
}

/// What every route shares.
pub(super) struct Server<H> {
    handler: OnceLock<H>,
    phase: AtomicU8,
    /// The init failure's report (RunPod's error report, as JSON text).
    pub(super) init_failure: OnceLock<String>,
    /// One permit per request the worker runs (or, batching, holds) at once; none until ready.
    pub(super) slots: Arc<Semaphore>,
    capacity: AtomicUsize,
    pub(super) limits: Limits,
    pub(super) lb: LoadBalancing,
    pub(super) shutdown: Shutdown,
    /// `/openapi.json`, built once.
    pub(super) openapi: Vec<u8>,
}

impl<H: Handler> Server<H> {
    pub(super) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Initializing,
            1 => Phase::Ready,
            2 => Phase::Failed,
            _ => Phase::Draining,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// The handler, while the worker serves.
    pub(super) fn handler(&self) -> Option<&H> {
        match self.phase() {
            Phase::Ready => self.handler.get(),
            _ => None,
        }
    }

    /// The handler once built, whatever the phase (running jobs keep it while draining).
    pub(super) fn built_handler(&self) -> Option<&H> {
        self.handler.get()
    }

    /// How many requests run (or are held) at once.
    pub(super) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The reporter of error reports: hostname and worker id.
    pub(super) fn reporter(&self) -> (&str, &str) {
        (&self.lb.hostname, &self.lb.worker_id)
    }
}

pub(crate) async fn serve<H: Handler>(
    lb: LoadBalancing,
    build: Build<H>,
    settings: &Settings,
    limits: Limits,
    second: SecondSignal,
) -> Result<(), Error> {
    let listen_failed = |port: u16, e: std::io::Error| {
        let message = format!("could not listen on port {port}: {e}");
        crate::start::log_error("load-balancing", &message);
        Error::new(ErrorKind::Config, message).with_source(e)
    };
    let listener = TcpListener::bind(("0.0.0.0", lb.port))
        .await
        .map_err(|e| listen_failed(lb.port, e))?;
    let port = listener.local_addr().map_or(lb.port, |a| a.port());
    let health_listener = match lb.health_port {
        None => None,
        Some(health_port) => Some(
            TcpListener::bind(("0.0.0.0", health_port))
                .await
                .map_err(|e| listen_failed(health_port, e))?,
        ),
    };
    let health_port = health_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or(port, |a| a.port());

    let (trigger, shutdown) = shutdown::channel();
    shutdown::on_signals(trigger, limits.shutdown_grace, second);
    let contract = settings.contract_now();
    let server = Arc::new(Server {
        handler: OnceLock::new(),
        phase: AtomicU8::new(Phase::Initializing as u8),
        init_failure: OnceLock::new(),
        slots: Arc::new(Semaphore::new(0)),
        capacity: AtomicUsize::new(0),
        limits,
        openapi: super::openapi::document(settings.name(), &lb.health_path, &contract),
        lb,
        shutdown: shutdown.clone(),
    });
    tracing::info!(
        "load-balancing worker listening on port {port}: POST /runsync, /run and /stream, GET \
         /openapi.json; health at GET {} on port {health_port} (204 while init runs, 200 when \
         ready)",
        server.lb.health_path
    );

    let (close, closed) = tokio::sync::watch::channel(false);
    let mut servers = vec![tokio::spawn(super::routes::serve(
        listener,
        super::routes::router(server.clone(), true),
        closed.clone(),
    ))];
    if let Some(listener) = health_listener {
        servers.push(tokio::spawn(super::routes::serve(
            listener,
            super::routes::router(server.clone(), false),
            closed,
        )));
    }

    let result = tokio::select! {
        built = build => match built {
            Ok(handler) => {
                let capacity = handler.jobs_to_hold(settings.concurrency_now()).max(1);
                let _ = server.handler.set(handler);
                server.capacity.store(capacity, Ordering::Relaxed);
                server.slots.add_permits(capacity);
                server.set_phase(Phase::Ready);
                tracing::info!("ready: health answers 200; up to {capacity} request(s) at once");
                shutdown.requested().await;
                drain(&server, capacity).await;
                Ok(())
            }
            Err((failure, error)) => {
                let (hostname, worker_id) = server.reporter();
                let _ = server
                    .init_failure
                    .set(crate::wire::error_report(&failure, hostname, worker_id));
                server.set_phase(Phase::Failed);
                tracing::error!(
                    "health answers 503 with the reason for {INIT_FAILED_LINGER:?}, then the \
                     worker exits"
                );
                shutdown.sleep(INIT_FAILED_LINGER).await;
                Err(error)
            }
        },
        () = shutdown.requested() => {
            server.set_phase(Phase::Draining);
            tracing::info!("stopped before the init function finished");
            Ok(())
        }
    };
    let _ = close.send(true);
    for running in servers {
        // Connections still open (a client keeping its connection alive) are not waited for.
        let _ = tokio::time::timeout(LAST_ANSWERS, running).await;
    }
    crate::logging::flush();
    result
}

/// SIGTERM: health and new requests answer 503; running requests finish within the grace (then
/// they answer as failed, `WorkerShutdown`), and their answers are written.
async fn drain<H: Handler>(server: &Server<H>, capacity: usize) {
    server.set_phase(Phase::Draining);
    let all_free = server.slots.acquire_many(capacity as u32);
    tokio::pin!(all_free);
    tokio::select! {
        _ = &mut all_free => {}
        () = server.shutdown.grace_expired() => {
            let _ = tokio::time::timeout(LAST_ANSWERS, &mut all_free).await;
        }
    }
    tracing::info!("every running request has answered; closing the server");
}
