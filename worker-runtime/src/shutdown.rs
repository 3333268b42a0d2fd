//! Shutdown: SIGTERM and SIGINT (or a job asking for a refresh) stop the taking of jobs; running
//! jobs get a grace period to finish and post; a second signal exits at once (the generated
//! `main`) or ends the grace period (a program's own `main`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A cloneable handle that tells when a shutdown was requested, and when its grace period ran out.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    stop: watch::Receiver<bool>,
    expired: watch::Receiver<bool>,
}

/// Requests a shutdown, or ends its grace period.
#[derive(Debug, Clone)]
pub(crate) struct ShutdownTrigger {
    stop: Arc<watch::Sender<bool>>,
    expired: Arc<watch::Sender<bool>>,
}

pub(crate) fn channel() -> (ShutdownTrigger, Shutdown) {
    let (stop_tx, stop) = watch::channel(false);
    let (expired_tx, expired) = watch::channel(false);
    let trigger = ShutdownTrigger {
        stop: Arc::new(stop_tx),
        expired: Arc::new(expired_tx),
    };
    (trigger, Shutdown { stop, expired })
}

impl ShutdownTrigger {
    /// Stop taking jobs; running jobs finish.
    pub(crate) fn trigger(&self) {
        let _ = self.stop.send(true);
    }

    /// The grace period is over: running jobs are reported failed.
    pub(crate) fn expire(&self) {
        let _ = self.expired.send(true);
    }
}

impl Shutdown {
    /// Resolves once a shutdown is requested (at once if it already was).
    pub(crate) async fn requested(&self) {
        let mut rx = self.stop.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Whether a shutdown was requested.
    pub(crate) fn is_requested(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once the grace period of a shutdown is over.
    pub(crate) async fn grace_expired(&self) {
        let mut rx = self.expired.clone();
        let _ = rx.wait_for(|expired| *expired).await;
    }

    /// Sleep for `duration`, or less if a shutdown is requested meanwhile.
    pub(crate) async fn sleep(&self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.requested() => {}
        }
    }
}

/// What a second SIGTERM/SIGINT does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondSignal {
    /// Exit the process at once (code 1): only the generated `main` owns the process.
    Exit,
    /// End the grace period now: running jobs are reported failed and `run` returns. A library
    /// never ends the process of the program that called it.
    EndGrace,
}

/// On SIGTERM or SIGINT: stop taking jobs and start the grace period; on a second signal, see
/// [`SecondSignal`].
pub(crate) fn on_signals(trigger: ShutdownTrigger, grace: Duration, second: SecondSignal) {
    tokio::spawn(async move {
        wait_for_signal().await;
        let again = match second {
            SecondSignal::Exit => "send the signal again to exit now",
            SecondSignal::EndGrace => "send the signal again to end the grace period now",
        };
        tracing::info!(
            "shutdown requested: no new jobs will be taken; running jobs have {grace:?} to finish \
             ({again})"
        );
        trigger.trigger();
        let expire = trigger.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::warn!(
                "shutdown grace period of {grace:?} is over: failing the jobs still running"
            );
            expire.expire();
        });
        wait_for_signal().await;
        match second {
            SecondSignal::Exit => {
                tracing::warn!("second shutdown signal: exiting now");
                crate::logging::flush();
                std::process::exit(1);
            }
            SecondSignal::EndGrace => {
                tracing::warn!("second shutdown signal: failing the jobs still running now");
                trigger.expire();
            }
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!(
            "could not listen for SIGTERM/SIGINT; the worker will not shut down gracefully"
        );
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
