//! Platform-side timestamps: the emulator's [`Observer`] hook records when the worker first
//! asks for a job and when each job is handed out and finished, so that every worker is timed
//! the same way, from outside, whatever it logs or reports itself.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use runpod_emulator::Observer;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Events {
    pub(crate) first_take: Option<Instant>,
    pub(crate) handed: HashMap<String, Instant>,
    pub(crate) finished: HashMap<String, Instant>,
    /// Job-take requests (single and batch) so far.
    pub(crate) takes: u64,
    /// Jobs handed out and not finished now, and the most there ever were: the platform's
    /// view of how many jobs the worker holds.
    pub(crate) held: usize,
    pub(crate) held_max: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    events: Mutex<Events>,
    /// Woken on every final result, so that waiting for N results costs O(1) per result.
    pub(crate) finished: Notify,
}

impl Recorder {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for Recorder {
    fn take_requested(&self, _worker_id: &str) {
        let now = Instant::now();
        let mut events = self.lock();
        events.first_take.get_or_insert(now);
        events.takes += 1;
    }
    fn job_handed(&self, job_id: &str) {
        let now = Instant::now();
        let mut events = self.lock();
        if events.handed.insert(job_id.to_owned(), now).is_none() {
            events.held += 1;
            events.held_max = events.held_max.max(events.held);
        }
    }
    fn job_finished(&self, job_id: &str) {
        let now = Instant::now();
        let mut events = self.lock();
        // Only a job it handed out, and only its first final result (a retried post repeats it).
        if !events.handed.contains_key(job_id) || events.finished.contains_key(job_id) {
            return;
        }
        events.finished.insert(job_id.to_owned(), now);
        events.held -= 1;
        drop(events);
        self.finished.notify_waiters();
    }
}
