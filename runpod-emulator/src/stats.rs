//! The counters an emulator keeps for tests.

/// Counters the emulator keeps for tests: see [`EmulatorHandle::stats`](crate::EmulatorHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmulatorStats {
    /// Jobs that completed (each counted once).
    pub completed: u64,
    /// Jobs that failed (each counted once).
    pub failed: u64,
    /// Final job-done posts for a job that already had its final result from the same worker
    /// (a retry after a lost answer); ignored.
    pub duplicate_finals: u64,
    /// Of those, how many carried a different body than the first final result.
    pub conflicting_finals: u64,
    /// Jobs put back in the queue because their worker was lost (no ping or request for the
    /// worker timeout); a job re-queued twice counts twice.
    pub requeued: u64,
    /// Faults injected so far.
    pub faults_injected: u64,
}
