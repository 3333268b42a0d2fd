//! Back-off between retried requests: job-take and job-stop errors (100 ms doubling to 10 s,
//! for as long as the platform keeps failing, reset by an answer) and result, stream-chunk and
//! progress posts (200 ms doubling to 15 s, within a total time).
//!
//! The delays come from `backon` (the emulator's webhooks use it too), not a loop of our own:
//! its exponential back-off with jitter. backon's jitter adds 0–100 % to each delay, so the
//! builders start from half the nominal delay and each wait is 50–100 % of it, which keeps
//! many workers from retrying in step without ever waiting longer than the nominal delay.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Exponential delays with jitter: each is 50–100 % of `first`, `2 × first`, … up to `max`.
fn exponential(first: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(first / 2)
        .with_max_delay(max / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The back-off of a request that repeats for the life of the worker (job-take, job-stop):
/// 100 ms doubling to 10 s while requests fail, back to 100 ms after one succeeds.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// The delays since the last success; made on the first failure, so the job loop's
    /// successful takes only clear an `Option`.
    delays: Option<ExponentialBackoff>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Backoff {
        Backoff::default()
    }

    /// A request succeeded: the next failure waits the first delay again.
    pub(crate) fn reset(&mut self) {
        self.delays = None;
    }

    /// How long to wait after this failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.delays
            .get_or_insert_with(|| exponential(Backoff::FIRST, Backoff::MAX))
            .next()
            .unwrap_or(Backoff::MAX)
    }
}

/// How a post retries: exponential delays from `first_delay` to `max_delay`, and no new
/// attempt that would start after `total` has passed since the first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) first_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) total: Duration,
    /// The longest one attempt may wait for its answer (a stalled connection), within what is
    /// left of `total`; the next attempt goes out on a fresh connection.
    pub(crate) attempt: Duration,
}

impl Default for RetryPolicy {
    /// Results and stream chunks: 200 ms doubling to 15 s, for 300 s, each attempt at most 30 s
    /// (`WORKER_POST_RETRY_SECONDS` sets `total`, `WORKER_POST_ATTEMPT_SECONDS` `attempt`).
    fn default() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(15),
            total: Duration::from_secs(300),
            attempt: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delays between attempts, in order.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        exponential(self.first_delay, self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, nominal_ms: u64) -> bool {
        let nominal = Duration::from_millis(nominal_ms);
        d >= nominal / 2 && d <= nominal
    }

    #[test]
    fn request_backoff_doubles_to_ten_seconds_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let nominal = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
        for ms in nominal {
            let d = backoff.next_delay();
            assert!(within(d, ms), "{d:?} is not 50–100 % of {ms} ms");
        }
        backoff.reset();
        assert!(within(backoff.next_delay(), 100));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let firsts: std::collections::HashSet<Duration> =
            (0..50).map(|_| Backoff::new().next_delay()).collect();
        assert!(firsts.len() > 10, "{firsts:?}");
    }

    #[test]
    fn post_delays_double_from_200_ms_to_15_s() {
        let delays: Vec<Duration> = RetryPolicy::default().delays().take(10).collect();
        let nominal = [
            200, 400, 800, 1600, 3200, 6400, 12_800, 15_000, 15_000, 15_000,
        ];
        for (d, ms) in delays.iter().zip(nominal) {
            assert!(within(*d, ms), "{d:?} is not 50–100 % of {ms} ms");
        }
    }
}
