//! The jobs taken and not yet reported: what `job_in_progress`, the heartbeat's `job_id` list
//! and the job-stop poller read.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::job::Job;

/// The jobs taken and not yet reported, in the order they were taken.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    jobs: Mutex<Vec<Job>>,
    added: Notify,
}

impl InFlight {
    pub(crate) fn insert(&self, job: &Job) {
        self.lock().push(job.clone());
        self.added.notify_waiters();
    }

    pub(crate) fn remove(&self, id: &str) {
        let removed = {
            let mut jobs = self.lock();
            jobs.iter()
                .position(|j| j.id() == id)
                .map(|pos| jobs.remove(pos))
        };
        // Often the job's last clone: its input is freed here, not while the heartbeat and the
        // job loop wait for the lock.
        drop(removed);
    }

    pub(super) fn get(&self, id: &str) -> Option<Job> {
        self.lock().iter().find(|j| j.id() == id).cloned()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The ids, for the heartbeat.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        self.lock().iter().map(|j| j.id().to_owned()).collect()
    }

    /// Resolves once at least one job is in flight.
    pub(super) async fn wait_non_empty(&self) {
        loop {
            let added = self.added.notified();
            if !self.is_empty() {
                return;
            }
            added.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Job>> {
        // A panic while holding this lock cannot leave the list inconsistent; keep going.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
