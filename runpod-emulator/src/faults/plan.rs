//! The fault plan: which faults to inject, where and how often, built in code or parsed from
//! `--fault` rules such as `done:503=0.1`.

use std::str::FromStr;
use std::time::Duration;

use axum::http::StatusCode;

/// A worker-facing route, as far as fault injection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `job-take` and `job-take-batch`.
    JobTake,
    /// `job-done` (progress updates and final results).
    JobDone,
    /// `job-stream` (stream chunks).
    JobStream,
    /// `job-stop` (the cancellation long-poll).
    JobStop,
    /// `ping` (the heartbeat).
    Ping,
}

impl Route {
    /// Every worker-facing route (a slice, so a new route does not change the type).
    pub const ALL: &'static [Route] = &[
        Route::JobTake,
        Route::JobDone,
        Route::JobStream,
        Route::JobStop,
        Route::Ping,
    ];

    /// The route of a path `/v2/{endpoint_id}/{route}/…`.
    pub(super) fn of(path: &str) -> Option<Route> {
        let mut segments = path.strip_prefix("/v2/")?.split('/');
        let first = segments.nth(1)?;
        Some(match first {
            "job-take" | "job-take-batch" => Route::JobTake,
            "job-done" => Route::JobDone,
            "job-stream" => Route::JobStream,
            "job-stop" => Route::JobStop,
            "ping" => Route::Ping,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Route::JobTake => "take",
            Route::JobDone => "done",
            Route::JobStream => "stream",
            Route::JobStop => "stop",
            Route::Ping => "ping",
        }
    }

    /// The kinds that make sense on this route, for [`Faults::mixed`].
    fn kinds(self) -> &'static [FaultKind] {
        use FaultKind::*;
        match self {
            Route::JobTake => &[
                TooManyRequests,
                InternalError,
                BadGateway,
                Unavailable,
                Reset,
                Slow,
                NotJson,
                MissingId,
                MissingInput,
                BadBatchItems,
            ],
            Route::JobDone | Route::JobStream => &[
                TooManyRequests,
                InternalError,
                BadGateway,
                Unavailable,
                Reset,
                ResetAfter,
                Slow,
            ],
            Route::JobStop | Route::Ping => &[
                TooManyRequests,
                InternalError,
                BadGateway,
                Unavailable,
                Reset,
                Slow,
            ],
        }
    }
}

impl FromStr for Route {
    type Err = String;
    fn from_str(s: &str) -> Result<Route, String> {
        Route::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!("unknown route `{s}`: use take, done, stream, stop, ping or all")
            })
    }
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// 429 Too Many Requests (with `Retry-After`, see [`Faults::retry_after`]).
    TooManyRequests,
    /// 500 Internal Server Error.
    InternalError,
    /// 502 Bad Gateway.
    BadGateway,
    /// 503 Service Unavailable.
    Unavailable,
    /// The connection is reset before the request is processed (nothing happened).
    Reset,
    /// The request is processed, then the connection is reset: the answer is lost. On job-take
    /// and job-stop this is [`Reset`](Self::Reset) (a job handed to nobody is the platform's loss,
    /// not a worker fault).
    ResetAfter,
    /// The answer is delayed by up to [`Faults::slow_max`], then given normally.
    Slow,
    /// The request is read and never answered: the connection stays open until the worker
    /// gives up on it (a stalled keep-alive connection). Not part of [`Faults::mixed`].
    Stall,
    /// The request is processed at once (a job-take hands its jobs out), and its answer is held
    /// back for [`Faults::slow_max`]: a job-take in flight when the worker is told to stop may
    /// already hold jobs. Not part of [`Faults::mixed`].
    Late,
    /// job-take only: 200 with a body that is not JSON (no job is handed out).
    NotJson,
    /// job-take only: 200 with a job that has no `id`.
    MissingId,
    /// job-take only: 200 with a job that has no `input`.
    MissingInput,
    /// job-take only: the real answer (jobs or none) as a batch with malformed items added.
    BadBatchItems,
}

impl FaultKind {
    const ALL: [FaultKind; 13] = [
        FaultKind::TooManyRequests,
        FaultKind::InternalError,
        FaultKind::BadGateway,
        FaultKind::Unavailable,
        FaultKind::Reset,
        FaultKind::ResetAfter,
        FaultKind::Slow,
        FaultKind::Stall,
        FaultKind::Late,
        FaultKind::NotJson,
        FaultKind::MissingId,
        FaultKind::MissingInput,
        FaultKind::BadBatchItems,
    ];

    /// The name used by `--fault` and in recorded requests.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::InternalError => "500",
            FaultKind::BadGateway => "502",
            FaultKind::Unavailable => "503",
            FaultKind::Reset => "reset",
            FaultKind::ResetAfter => "reset-after",
            FaultKind::Slow => "slow",
            FaultKind::Stall => "stall",
            FaultKind::Late => "late",
            FaultKind::NotJson => "not-json",
            FaultKind::MissingId => "missing-id",
            FaultKind::MissingInput => "missing-input",
            FaultKind::BadBatchItems => "bad-batch",
        }
    }

    /// The status an injected error answers with; `None` for kinds that are not a status.
    pub(super) fn status(self) -> Option<StatusCode> {
        match self {
            FaultKind::TooManyRequests => Some(StatusCode::TOO_MANY_REQUESTS),
            FaultKind::InternalError => Some(StatusCode::INTERNAL_SERVER_ERROR),
            FaultKind::BadGateway => Some(StatusCode::BAD_GATEWAY),
            FaultKind::Unavailable => Some(StatusCode::SERVICE_UNAVAILABLE),
            _ => None,
        }
    }

    fn take_only(self) -> bool {
        matches!(
            self,
            FaultKind::NotJson
                | FaultKind::MissingId
                | FaultKind::MissingInput
                | FaultKind::BadBatchItems
        )
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault `{s}`: use one of {}", names.join(", "))
            })
    }
}

/// A fault-injection plan: off by default; see [`EmulatorBuilder::faults`](crate::EmulatorBuilder::faults).
///
/// ```
/// use runpod_emulator::{FaultKind, Faults, Route};
/// let faults = Faults::new(7)
///     .rate(Route::JobDone, FaultKind::Unavailable, 0.05)
///     .rate(Route::JobTake, FaultKind::NotJson, 0.01)
///     .fail_done_times(2);
/// # let _ = faults;
/// ```
// The fields are read by the decision code next door (`super::decision`), which applies the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub(super) seed: u64,
    /// `(route, kind, probability)`, at most one per route and kind.
    pub(super) rules: Vec<(Route, FaultKind, f64)>,
    pub(super) slow_max: Duration,
    pub(super) retry_after: Option<u64>,
    pub(super) fail_done: u32,
}

impl Faults {
    /// No faults yet, with this PRNG seed; add them with [`rate`](Self::rate).
    pub fn new(seed: u64) -> Faults {
        Faults {
            seed,
            rules: Vec::new(),
            slow_max: Duration::from_millis(200),
            retry_after: Some(1),
            fail_done: 0,
        }
    }

    /// About `probability` of faults on every worker-facing route, spread evenly over the kinds
    /// that make sense there (status errors, resets, slow answers; malformed answers on job-take).
    pub fn mixed(seed: u64, probability: f64) -> Faults {
        let mut faults = Faults::new(seed);
        for &route in Route::ALL {
            let kinds = route.kinds();
            for &kind in kinds {
                faults = faults.rate(route, kind, probability / kinds.len() as f64);
            }
        }
        faults
    }

    /// Inject `kind` on `route` with this probability (0–1) per request. The probabilities of one
    /// route add up (at most 1); job-take-only kinds on other routes are ignored.
    pub fn rate(mut self, route: Route, kind: FaultKind, probability: f64) -> Faults {
        if probability > 0.0 && (route == Route::JobTake || !kind.take_only()) {
            self.rules.retain(|(r, k, _)| !(*r == route && *k == kind));
            self.rules.push((route, kind, probability.min(1.0)));
        }
        self
    }

    /// The longest delay of a [`FaultKind::Slow`] answer, and the delay of a [`FaultKind::Late`]
    /// one (default 200 ms).
    pub fn slow_max(mut self, max: Duration) -> Faults {
        self.slow_max = max;
        self
    }

    /// The `Retry-After` (seconds) of injected 429s; `None` sends none (default 1).
    pub fn retry_after(mut self, seconds: Option<u64>) -> Faults {
        self.retry_after = seconds;
        self
    }

    /// The first `n` job-done posts of every job answer 500, then they succeed.
    pub fn fail_done_times(mut self, n: u32) -> Faults {
        self.fail_done = n;
        self
    }

    /// Parse a `--fault` rule: `route:kind=probability`, route `all` for every route, e.g.
    /// `done:503=0.05`, `take:not-json=0.01`, `all:reset=0.02`.
    pub fn with_rule(mut self, rule: &str) -> Result<Faults, String> {
        let (target, probability) = rule
            .split_once('=')
            .ok_or_else(|| format!("`{rule}`: expected route:kind=probability"))?;
        let (route, kind) = target
            .split_once(':')
            .ok_or_else(|| format!("`{rule}`: expected route:kind=probability"))?;
        let kind: FaultKind = kind.parse()?;
        let probability: f64 = probability
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("`{rule}`: the probability must be a number from 0 to 1"))?;
        let routes: Vec<Route> = if route == "all" {
            Route::ALL.to_vec()
        } else {
            vec![route.parse()?]
        };
        for route in routes {
            self = self.rate(route, kind, probability);
        }
        Ok(self)
    }

    /// A plan that injects nothing: the emulator then drops it, so requests skip the draw.
    pub(super) fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.fail_done == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_job_take_kinds_stay_on_job_take() {
        let f = Faults::new(1)
            .with_rule("all:503=0.1")
            .unwrap()
            .with_rule("done:not-json=0.5")
            .unwrap();
        assert_eq!(f.rules.len(), 5);
        assert!(Faults::new(1).with_rule("take:teapot=0.1").is_err());
        assert!(Faults::new(1).with_rule("take:503=2").is_err());
        assert!(Faults::new(1).with_rule("nowhere:503=0.1").is_err());
        assert!(Faults::new(1).with_rule("503").is_err());
    }
}
