//! The job slots: how many jobs may run at once, resizable while jobs hold slots (the Python
//! SDK's `concurrency_modifier`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many jobs may run at once.
#[derive(Clone, Copy)]
pub(crate) enum Concurrency {
    Fixed(usize),
    /// The Python SDK's `concurrency_modifier`: given the current value, returns the next.
    Dynamic(&'static (dyn Fn(usize) -> usize + Send + Sync)),
}

impl std::fmt::Debug for Concurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Concurrency::Fixed(n) => f.debug_tuple("Fixed").field(n).finish(),
            Concurrency::Dynamic(_) => f.write_str("Dynamic(..)"),
        }
    }
}

impl Concurrency {
    /// A modifier for the life of the process (the worker is configured once; a function item
    /// or a closure without captures is zero-sized, so nothing is allocated).
    pub(crate) fn dynamic(
        modifier: impl Fn(usize) -> usize + Send + Sync + 'static,
    ) -> Concurrency {
        Concurrency::Dynamic(Box::leak(Box::new(modifier)))
    }
}

impl Concurrency {
    /// The concurrency the worker starts with (at least 1): the fixed value, or what the
    /// modifier answers for 1.
    pub(crate) fn initial(self) -> usize {
        match self {
            Concurrency::Fixed(n) => n.max(1),
            Concurrency::Dynamic(modifier) => modifier(1).max(1),
        }
    }
}

/// A semaphore whose size can change while jobs hold permits. Shrinking takes effect as
/// running jobs finish (their permits are forgotten instead of returned).
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) semaphore: Arc<Semaphore>,
    size: usize,
    /// Permits to remove as soon as they come back.
    debt: usize,
}

impl Slots {
    pub(super) fn new(size: usize) -> Slots {
        Slots {
            semaphore: Arc::new(Semaphore::new(size)),
            size,
            debt: 0,
        }
    }

    pub(super) fn resize(&mut self, want: usize) {
        let want = want.max(1);
        if want > self.size {
            let grow = want - self.size;
            let repaid = grow.min(self.debt);
            self.debt -= repaid;
            self.semaphore.add_permits(grow - repaid);
        } else {
            self.debt += self.size - want;
        }
        if want != self.size {
            tracing::info!("concurrency changed from {} to {want}", self.size);
        }
        self.size = want;
        self.debt -= self.semaphore.forget_permits(self.debt);
    }

    /// Keep `permit` unless a shrink still owes permits.
    pub(super) fn keep(&mut self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        if self.debt > 0 {
            permit.forget();
            self.debt -= 1;
            None
        } else {
            Some(permit)
        }
    }
}
