//! Which fault, if any, one worker request gets: a seeded draw over the plan's rules.
//!
//! A small PRNG (splitmix64) draws one number per worker request and picks at most one fault, so
//! the same seed gives the same sequence of decisions (which request gets which fault then
//! depends only on the order requests arrive in).

use std::collections::HashMap;
use std::time::Duration;

use super::Instrument;
use super::plan::{FaultKind, Faults, Route};

/// The fault plan being applied, with its PRNG and per-job counters.
#[derive(Debug)]
pub(super) struct Active {
    plan: Faults,
    rng: u64,
    /// job-done posts seen per job, for [`Faults::fail_done_times`].
    done_posts: HashMap<String, u32>,
}

impl Active {
    /// Start applying `plan`, its PRNG at the plan's seed.
    pub(super) fn new(plan: Faults) -> Active {
        Active {
            rng: plan.seed,
            plan,
            done_posts: HashMap::new(),
        }
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy)]
pub(super) enum Decision {
    Kind(FaultKind),
    Delay(Duration),
    FailDone(u32, u32),
}

impl Decision {
    /// The fault's name, as recorded and logged.
    pub(super) fn name(self) -> &'static str {
        match self {
            Decision::Kind(k) => k.name(),
            Decision::Delay(_) => FaultKind::Slow.name(),
            Decision::FailDone(..) => "fail-done",
        }
    }
}

impl Instrument {
    /// Draw the fault of one request on `route` (at `path`); `None` without a plan or fault.
    pub(super) fn decide(&self, route: Route, path: &str) -> Option<Decision> {
        let mut guard = self.lock_faults();
        let active = guard.as_mut()?;
        // fail-done is counted, not drawn: it does not advance the PRNG.
        if route == Route::JobDone && active.plan.fail_done > 0 {
            let job = path.rsplit('/').next().unwrap_or_default().to_owned();
            let limit = active.plan.fail_done;
            let posts = active.done_posts.entry(job).or_default();
            if *posts < limit {
                *posts += 1;
                return Some(Decision::FailDone(*posts, limit));
            }
        }
        let draw = active.unit();
        let mut at = 0.0;
        let mut picked = None;
        for &(r, kind, p) in &active.plan.rules {
            if r != route {
                continue;
            }
            at += p;
            if draw < at {
                picked = Some(kind);
                break;
            }
        }
        Some(match picked? {
            FaultKind::Slow => {
                let max = active.plan.slow_max.as_micros().max(1) as u64;
                Decision::Delay(Duration::from_micros(active.next() % max))
            }
            FaultKind::ResetAfter if matches!(route, Route::JobTake | Route::JobStop) => {
                Decision::Kind(FaultKind::Reset)
            }
            kind => Decision::Kind(kind),
        })
    }

    /// How long a [`FaultKind::Late`] answer is held back, from the plan in force.
    pub(super) fn late_delay(&self) -> Duration {
        self.lock_faults()
            .as_ref()
            .map_or(Duration::ZERO, |a| a.plan.slow_max)
    }

    /// The `Retry-After` of injected 429s, from the plan in force.
    pub(super) fn retry_after(&self) -> Option<u64> {
        self.lock_faults().as_ref().and_then(|a| a.plan.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let plan = Faults::mixed(42, 0.5);
        let draws = |plan: &Faults| {
            let ins = Instrument::new(false, false, Some(plan.clone()));
            (0..200)
                .map(|i| {
                    let route = Route::ALL[i % Route::ALL.len()];
                    ins.decide(route, "/job-done/w/j").map(|d| d.name())
                })
                .collect::<Vec<_>>()
        };
        let a = draws(&plan);
        assert_eq!(a, draws(&plan));
        assert_ne!(a, draws(&Faults::mixed(43, 0.5)));
        let faulted = a.iter().filter(|d| d.is_some()).count();
        assert!((60..140).contains(&faulted), "{faulted} of 200");
    }

    #[test]
    fn fail_done_fails_the_first_n_posts_of_each_job() {
        let ins = Instrument::new(false, false, Some(Faults::new(1).fail_done_times(2)));
        let names: Vec<_> = ["a", "a", "b", "a", "b", "b"]
            .iter()
            .map(|j| {
                ins.decide(Route::JobDone, &format!("/job-done/w/{j}"))
                    .map(|d| d.name())
            })
            .collect();
        assert_eq!(
            names,
            [
                Some("fail-done"),
                Some("fail-done"),
                Some("fail-done"),
                None,
                Some("fail-done"),
                None
            ]
        );
        assert!(ins.decide(Route::JobTake, "/job-take/w").is_none());
    }
}
