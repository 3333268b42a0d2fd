//! Fault injection and request recording on the worker-facing routes.
//!
//! A [`Faults`] plan ([`plan`]) says, per route and per kind, how likely a fault is; a seeded
//! draw ([`decision`]) picks at most one fault per worker request, which the middleware
//! ([`middleware`]) injects. Connection resets are real: connections are accepted through a
//! listener ([`listener`]) whose streams can be reset from a handler. The recorder and request
//! log ([`recorder`]) see every worker request, faulted or not.
//!
//! [`Instrument`] ties them together, one per emulator. With no plan, no recording and no
//! request log, the middleware is a single atomic load.

mod decision;
mod listener;
mod middleware;
mod plan;
mod recorder;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use self::decision::Active;
use self::recorder::Recorded;

pub(crate) use self::listener::{Conn, FaultyListener};
pub(crate) use self::middleware::instrument;
pub use self::plan::{FaultKind, Faults, Route};
pub use self::recorder::RecordedRequest;

/// The recorder, request log and fault plan of one emulator.
#[derive(Debug, Default)]
pub(crate) struct Instrument {
    /// Any of the three below is on: the middleware's fast path reads only this.
    active: AtomicBool,
    record: AtomicBool,
    log: AtomicBool,
    faults: Mutex<Option<Active>>,
    requests: Mutex<Recorded>,
    injected: AtomicU64,
}

impl Instrument {
    pub(crate) fn new(record: bool, log: bool, faults: Option<Faults>) -> Instrument {
        let instrument = Instrument {
            record: AtomicBool::new(record),
            log: AtomicBool::new(log),
            ..Instrument::default()
        };
        instrument.set_faults(faults);
        instrument
    }

    fn lock_faults(&self) -> MutexGuard<'_, Option<Active>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the plan; an empty one is dropped, so requests skip the draw.
    pub(crate) fn set_faults(&self, faults: Option<Faults>) {
        let active = faults.filter(|f| !f.is_empty()).map(Active::new);
        let on = active.is_some();
        *self.lock_faults() = active;
        self.active.store(
            on || self.record.load(Ordering::Relaxed) || self.log.load(Ordering::Relaxed),
            Ordering::SeqCst,
        );
    }

    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}
