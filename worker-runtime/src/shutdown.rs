//! Shutdown requests: SIGTERM and SIGINT (or a test) ask the loop to stop taking jobs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A cloneable handle that tells when a shutdown was requested.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Requests a shutdown.
#[derive(Debug, Clone)]
pub(crate) struct ShutdownTrigger {
    tx: Arc<watch::Sender<bool>>,
}

pub(crate) fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx: Arc::new(tx) }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub(crate) fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// Resolves once a shutdown is requested (at once if it already was).
    pub(crate) async fn requested(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Sleep for `duration`, or less if a shutdown is requested meanwhile.
    pub(crate) async fn sleep(&self, duration: Duration) {
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.requested() => {}
        }
    }
}

/// Trigger `trigger` on SIGTERM or SIGINT.
pub(crate) fn on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: no new jobs will be taken");
        trigger.trigger();
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
