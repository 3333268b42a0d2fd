//! The HTTP client to the platform: one keep-alive connection pool for the life of the worker,
//! the job-take request and its answers, and posts that retry with backoff.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::config::PlatformConfig;
use crate::job::Job;
use crate::protocol::VERSION;

/// How long a job-take long-poll may take before we give up on it and ask again.
const TAKE_TIMEOUT: Duration = Duration::from_secs(90);

/// The User-Agent of every request to the platform.
pub(crate) fn user_agent() -> String {
    format!(
        "RunPod-Rust-Worker/{VERSION} ({} {}) Language/Rust",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Build the shared HTTP client with the platform's headers.
pub(crate) fn build(api_key: &str) -> Result<Client, crate::Error> {
    let tls = crate::tls::client_config()
        .map_err(|e| crate::Error::config(format!("could not set up TLS: {e}")))?;
    let mut headers = HeaderMap::new();
    if !api_key.is_empty() {
        let mut key = HeaderValue::from_str(api_key).map_err(|_| {
            crate::Error::config(
                "RUNPOD_AI_API_KEY contains characters that cannot go in an HTTP header",
            )
        })?;
        key.set_sensitive(true);
        headers.insert(AUTHORIZATION, key);
    }
    headers.insert(
        USER_AGENT,
        HeaderValue::from_str(&user_agent())
            .unwrap_or(HeaderValue::from_static("RunPod-Rust-Worker")),
    );
    Client::builder()
        .tls_backend_preconfigured(tls)
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| crate::Error::config(format!("could not build the HTTP client: {e}")))
}

/// What a job-take request gave.
#[derive(Debug)]
pub(crate) enum Take {
    /// Zero or more jobs (an empty list is the normal "no job right now").
    Jobs(Vec<Job>),
    /// 429: the platform asks us to slow down.
    TooManyRequests(Option<Duration>),
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// No answer: connection refused, reset, timed out.
    Transport(reqwest::Error),
    /// An HTTP error status, with the start of the response body.
    Status(StatusCode, String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Transport(e) => f.write_str(&crate::error::chain(e)),
            RequestError::Status(status, body) if body.is_empty() => write!(f, "HTTP {status}"),
            RequestError::Status(status, body) => write!(f, "HTTP {status}: {body}"),
        }
    }
}

impl RequestError {
    /// Whether trying again may help: transport errors, 5xx, 408 and 429.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            RequestError::Transport(_) => true,
            RequestError::Status(s, _) => {
                s.is_server_error()
                    || *s == StatusCode::TOO_MANY_REQUESTS
                    || *s == StatusCode::REQUEST_TIMEOUT
            }
        }
    }
}

/// Ask the platform for up to `free` jobs.
pub(crate) async fn take(
    client: &Client,
    cfg: &PlatformConfig,
    free: usize,
    job_in_progress: bool,
) -> Result<Take, RequestError> {
    let url = cfg.urls.take(free, job_in_progress);
    tracing::trace!(url = %url, "job-take");
    let response = client
        .get(&url)
        .timeout(TAKE_TIMEOUT)
        .send()
        .await
        .map_err(RequestError::Transport)?;
    let status = response.status();
    match status {
        // 204: nothing queued. 400: what the platform answers with FlashBoot when idle.
        StatusCode::NO_CONTENT | StatusCode::BAD_REQUEST => return Ok(Take::Jobs(Vec::new())),
        StatusCode::TOO_MANY_REQUESTS => {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Ok(Take::TooManyRequests(wait));
        }
        s if !s.is_success() => {
            let body = response.text().await.unwrap_or_default();
            return Err(RequestError::Status(s, snippet(&body)));
        }
        _ => {}
    }
    let body = response.bytes().await.map_err(RequestError::Transport)?;
    Ok(Take::Jobs(parse_jobs(&body)))
}

/// Read a job-take answer: an object is one job, an array a batch. Anything else is "no job";
/// a malformed job is logged and skipped, never fatal.
pub(crate) fn parse_jobs(body: &[u8]) -> Vec<Job> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(
                "job-take answered with something that is not JSON ({e}); ignoring it: {}",
                snippet(&String::from_utf8_lossy(body))
            );
            return Vec::new();
        }
    };
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        Value::Null => return Vec::new(),
        other => {
            tracing::warn!(
                "job-take answered with JSON that is not a job; ignoring it: {}",
                snippet(&other.to_string())
            );
            return Vec::new();
        }
    };
    items
        .into_iter()
        .filter_map(|item| match Job::parse(item) {
            Ok(job) => Some(job),
            Err(why) => {
                tracing::error!("skipping a malformed job from job-take: {why}");
                None
            }
        })
        .collect()
}

/// What a job-stop request gave.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The ids of jobs to stop (possibly none).
    Jobs(Vec<String>),
    /// 429: slow down.
    TooManyRequests,
}

/// Ask the platform which running jobs to stop (a long-poll).
pub(crate) async fn stop(client: &Client, url: &str) -> Result<Stop, RequestError> {
    let response = client
        .get(url)
        .timeout(TAKE_TIMEOUT)
        .send()
        .await
        .map_err(RequestError::Transport)?;
    match response.status() {
        StatusCode::NO_CONTENT => return Ok(Stop::Jobs(Vec::new())),
        StatusCode::TOO_MANY_REQUESTS => return Ok(Stop::TooManyRequests),
        s if !s.is_success() => {
            let body = response.text().await.unwrap_or_default();
            return Err(RequestError::Status(s, snippet(&body)));
        }
        _ => {}
    }
    let body = response.bytes().await.map_err(RequestError::Transport)?;
    Ok(Stop::Jobs(parse_stop(&body)))
}

/// `{"jobsToStop": ["id", …]}`; ids that are not strings are skipped with a warning.
pub(crate) fn parse_stop(body: &[u8]) -> Vec<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        tracing::warn!("job-stop answered with something other than a JSON object; ignoring it");
        return Vec::new();
    };
    let Some(Value::Array(ids)) = object.get("jobsToStop") else {
        tracing::warn!("job-stop answered without a `jobsToStop` list; ignoring it");
        return Vec::new();
    };
    ids.iter()
        .filter_map(|id| match id {
            Value::String(id) => Some(id.clone()),
            other => {
                tracing::warn!(
                    "job-stop listed a job id that is not a string ({other}); ignoring it"
                );
                None
            }
        })
        .collect()
}

/// How long posts of results keep retrying before giving up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) first_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(15),
            total: Duration::from_secs(300),
        }
    }
}

/// POST a JSON body to a job-done or job-stream URL, retrying transport errors, 5xx and 429
/// with exponential backoff and jitter until `policy.total` has passed. Other 4xx answers are
/// final: trying the same body again cannot help.
pub(crate) async fn post(
    client: &Client,
    url: &str,
    job_id: &str,
    body: Vec<u8>,
    policy: RetryPolicy,
) -> Result<(), RequestError> {
    let started = Instant::now();
    let mut delay = policy.first_delay;
    let mut attempt = 1u32;
    loop {
        let result = client
            .post(url)
            // The platform's job-done endpoint is used to the Python SDK's form content type
            // (with a JSON body); keep that wire shape.
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("charset", "utf-8")
            .header(
                "X-Request-ID",
                HeaderValue::from_str(job_id).unwrap_or(HeaderValue::from_static("invalid")),
            )
            .body(body.clone())
            .send()
            .await;
        let error = match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                RequestError::Status(status, snippet(&text))
            }
            Err(e) => RequestError::Transport(e),
        };
        if !error.is_retryable() || started.elapsed() + delay > policy.total {
            return Err(error);
        }
        tracing::warn!(
            "posting to the platform failed (attempt {attempt}: {error}); retrying in {delay:?}"
        );
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(policy.max_delay);
        attempt += 1;
    }
}

/// A delay between 50 % and 100 % of `delay`, so many workers do not retry in step.
pub(crate) fn jitter(delay: Duration) -> Duration {
    let fraction = 0.5 + (crate::random::random_u64() % 1000) as f64 / 2000.0;
    delay.mul_f64(fraction)
}

/// The start of a response body, for log lines.
fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_take_answers() {
        assert!(parse_jobs(b"").is_empty());
        assert!(parse_jobs(b"not json").is_empty());
        assert!(parse_jobs(b"null").is_empty());
        assert!(parse_jobs(b"42").is_empty());
        let one = parse_jobs(br#"{"id":"a","input":{"x":1}}"#);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id(), "a");
        let batch =
            parse_jobs(br#"[{"id":"a","input":1},{"input":2},{"id":"c","input":3},"junk"]"#);
        assert_eq!(batch.iter().map(|j| j.id()).collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn job_stop_answers() {
        assert_eq!(parse_stop(br#"{"jobsToStop": ["a", "b", 5]}"#), ["a", "b"]);
        assert!(parse_stop(b"").is_empty());
        assert!(parse_stop(b"[]").is_empty());
        assert!(parse_stop(br#"{"jobsToStop": "a"}"#).is_empty());
        assert!(parse_stop(b"{nope").is_empty());
    }

    #[cfg(feature = "serve-api")]
    mod against_the_emulator {
        use super::super::*;
        use crate::emulator::{Emulator, EmulatorHandle, FaultKind, Faults, Route};

        const QUICK: RetryPolicy = RetryPolicy {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            total: Duration::from_secs(20),
        };

        /// An emulator recording worker requests, with one job taken by worker `w`.
        async fn emulator_with_a_running_job(faults: Faults) -> (EmulatorHandle, Client, String) {
            let emu = Emulator::builder()
                .bind("127.0.0.1:0")
                .take_timeout(Duration::from_millis(200))
                .record_requests(true)
                .build()
                .await
                .unwrap();
            let http = build("").unwrap();
            let queued = http
                .post(format!("{}/run", emu.endpoint_url()))
                .body(r#"{"input": 1}"#)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let queued: Value = serde_json::from_slice(&queued).unwrap();
            let id = queued["id"].as_str().unwrap().to_owned();
            http.get(format!("{}/job-take/w?gpu=x", emu.endpoint_url()))
                .send()
                .await
                .unwrap();
            emu.set_faults(Some(faults));
            emu.clear_worker_requests();
            (emu, http, id)
        }

        fn attempts(emu: &EmulatorHandle, route: &str) -> Vec<Option<String>> {
            emu.worker_requests()
                .into_iter()
                .filter(|r| r.path.contains(route))
                .map(|r| r.fault)
                .collect()
        }

        #[tokio::test]
        async fn posts_retry_5xx_429_and_resets_until_one_is_answered() {
            let faults = Faults::new(9)
                .rate(Route::JobDone, FaultKind::Unavailable, 0.25)
                .rate(Route::JobDone, FaultKind::TooManyRequests, 0.25)
                .rate(Route::JobDone, FaultKind::Reset, 0.25)
                .retry_after(None);
            let (emu, http, id) = emulator_with_a_running_job(faults).await;
            let url = format!(
                "{}/job-done/w/{id}?gpu=x&isStream=false",
                emu.endpoint_url()
            );
            post(&http, &url, &id, br#"{"output":1}"#.to_vec(), QUICK)
                .await
                .unwrap();
            let tries = attempts(&emu, "/job-done/");
            assert_eq!(tries.last(), Some(&None), "{tries:?}");
            assert!(tries[..tries.len() - 1].iter().all(Option::is_some));
            assert_eq!(emu.stats().completed, 1);
        }

        #[tokio::test]
        async fn a_lost_answer_is_retried_and_the_platform_sees_one_result() {
            let faults = Faults::new(1).rate(Route::JobDone, FaultKind::ResetAfter, 1.0);
            let (emu, http, id) = emulator_with_a_running_job(faults).await;
            let url = format!(
                "{}/job-done/w/{id}?gpu=x&isStream=false",
                emu.endpoint_url()
            );
            let posting = tokio::spawn({
                let (http, url, id) = (http.clone(), url.clone(), id.clone());
                async move { post(&http, &url, &id, br#"{"output":1}"#.to_vec(), QUICK).await }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while attempts(&emu, "/job-done/").len() < 2 {
                assert!(Instant::now() < deadline, "no retry after a lost answer");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            emu.set_faults(None);
            posting.await.unwrap().unwrap();
            let stats = emu.stats();
            assert_eq!((stats.completed, stats.conflicting_finals), (1, 0));
            assert!(stats.duplicate_finals >= 1);
        }

        #[tokio::test]
        async fn a_4xx_is_not_retried_and_its_body_is_in_the_error() {
            let (emu, http, _) = emulator_with_a_running_job(Faults::new(1)).await;
            let url = format!(
                "{}/job-done/w/no-such-job?gpu=x&isStream=false",
                emu.endpoint_url()
            );
            let err = post(&http, &url, "no-such-job", b"{}".to_vec(), QUICK)
                .await
                .unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                r#"HTTP 404 Not Found: {"error":"no job `no-such-job`"}"#
            );
            assert_eq!(attempts(&emu, "/job-done/").len(), 1);
        }

        #[tokio::test]
        async fn posts_give_up_after_the_total_time() {
            let faults = Faults::new(1).rate(Route::JobDone, FaultKind::BadGateway, 1.0);
            let (emu, http, id) = emulator_with_a_running_job(faults).await;
            let url = format!(
                "{}/job-done/w/{id}?gpu=x&isStream=false",
                emu.endpoint_url()
            );
            let policy = RetryPolicy {
                total: Duration::from_millis(600),
                ..QUICK
            };
            let started = Instant::now();
            let err = post(&http, &url, &id, b"{}".to_vec(), policy)
                .await
                .unwrap_err();
            assert!(err.to_string().starts_with("HTTP 502 Bad Gateway"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(2));
            let tries = attempts(&emu, "/job-done/").len();
            assert!((3..=40).contains(&tries), "{tries} attempts in 600 ms");
        }

        #[tokio::test]
        async fn an_answered_chunk_is_posted_once() {
            let faults = Faults::new(4)
                .rate(Route::JobStream, FaultKind::InternalError, 0.3)
                .rate(Route::JobStream, FaultKind::Slow, 0.3)
                .slow_max(Duration::from_millis(20));
            let (emu, http, id) = emulator_with_a_running_job(faults).await;
            let url = format!("{}/job-stream/w/{id}?gpu=x", emu.endpoint_url());
            for n in 0..20 {
                let body = format!(r#"{{"output":{n}}}"#).into_bytes();
                post(&http, &url, &id, body, QUICK).await.unwrap();
            }
            // Per chunk: failed attempts, then exactly one answered one (slow ones are answered).
            let mut answered = Vec::new();
            for r in emu.worker_requests() {
                if r.fault.as_deref().is_none_or(|f| f == "slow") {
                    answered.push(r.json().unwrap()["output"].as_u64().unwrap());
                }
            }
            assert_eq!(answered, (0..20).collect::<Vec<u64>>());
            assert!(emu.stats().faults_injected > 0);
        }
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}
