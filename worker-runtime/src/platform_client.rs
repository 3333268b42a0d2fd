//! The HTTP client to the platform: keep-alive connections for the life of the worker, the
//! job-take and job-stop requests, and posts that retry with back-off. What goes on the wire
//! (URLs, bodies, headers, how answers are read) is `wire`'s.
//!
//! Requests go on connections their own task drives ([`direct`]); reqwest serves them when a
//! proxy is configured.

mod direct;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};

use crate::config::PlatformConfig;
use crate::job::Job;
use crate::retry::RetryPolicy;
use crate::wire::{self, Target, parse_jobs, parse_stop, snippet, user_agent};

/// How long a job-take long-poll may take before we give up on it and ask again.
const TAKE_TIMEOUT: Duration = Duration::from_secs(90);

/// The platform client: its own connections, or reqwest's behind a proxy.
#[derive(Clone, Debug)]
pub(crate) enum Client {
    Direct(Arc<direct::Connections>),
    Reqwest(reqwest::Client),
}

impl Client {
    /// One request, no retry: its answer, read whole, or why there was none.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Target,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<direct::Answer, RequestError> {
        let client = match self {
            Client::Direct(direct) => {
                return direct
                    .request(method, url, extra, body, timeout)
                    .await
                    .map_err(|e| RequestError::Transport(Box::new(e)));
            }
            Client::Reqwest(client) => client,
        };
        let url = url.to_url().map_err(RequestError::Transport)?;
        let mut request = client.request(method, url).timeout(timeout);
        for (name, value) in extra {
            request = request.header(name.clone(), value.clone());
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let transport = |e: reqwest::Error| RequestError::Transport(Box::new(e));
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .cloned();
        let body = response.bytes().await.map_err(transport)?;
        Ok(direct::Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// Build the shared HTTP client with the platform's headers.
pub(crate) fn build(api_key: &str) -> Result<Client, crate::Error> {
    // The process's rustls provider, for reqwest here and for the connections' TLS when an
    // https URL first needs it (start-up installs it too; tests build clients directly).
    crate::tls::install_crypto_provider();
    // A list, not a `HeaderMap`: the direct connections write it out as it is; only reqwest
    // (behind a proxy) takes a map.
    let mut headers = Vec::with_capacity(3);
    if !api_key.is_empty() {
        let mut key = HeaderValue::from_str(api_key).map_err(|_| {
            crate::Error::config(
                "RUNPOD_AI_API_KEY contains characters that cannot go in an HTTP header",
            )
        })?;
        key.set_sensitive(true);
        headers.push((AUTHORIZATION, key));
    }
    headers.push((
        USER_AGENT,
        HeaderValue::from_str(&user_agent())
            .unwrap_or(HeaderValue::from_static("RunPod-Rust-Worker")),
    ));
    headers.push((ACCEPT, HeaderValue::from_static("*/*")));
    // reqwest is built only when a proxy is configured: otherwise none of its code runs.
    if !direct::proxy_configured() {
        return Ok(Client::Direct(Arc::new(direct::Connections::new(headers))));
    }
    let headers: HeaderMap = headers.into_iter().collect();
    let tls = crate::tls::client_config()
        .map_err(|e| crate::Error::config(format!("could not set up TLS: {e}")).with_source(e))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map(Client::Reqwest)
        .map_err(|e| {
            crate::Error::config(format!("could not build the HTTP client: {e}")).with_source(e)
        })
}

/// What a job-take request gave.
#[derive(Debug)]
pub(crate) enum Take {
    /// Zero or more jobs (an empty list is the normal "no job right now").
    Jobs(Vec<Job>),
    /// 400: what RunPod answers an idle worker with FlashBoot, and also what a misconfigured
    /// URL gets; no job.
    BadRequest,
    /// 429: the platform asks us to slow down.
    TooManyRequests(Option<Duration>),
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// No answer: connection refused, reset, timed out.
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// An HTTP error status, with the start of the response body.
    Status(StatusCode, String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Transport(e) => f.write_str(&crate::error::chain(e.as_ref())),
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
    let answer = client
        .send(Method::GET, &url, &[], Bytes::new(), TAKE_TIMEOUT)
        .await?;
    match answer.status {
        // 204: nothing queued. 400: what the platform answers with FlashBoot when idle.
        StatusCode::NO_CONTENT => Ok(Take::Jobs(Vec::new())),
        StatusCode::BAD_REQUEST => Ok(Take::BadRequest),
        StatusCode::TOO_MANY_REQUESTS => {
            let wait = answer
                .retry_after
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim_ascii().parse::<u64>().ok())
                .map(Duration::from_secs);
            Ok(Take::TooManyRequests(wait))
        }
        s if !s.is_success() => Err(RequestError::Status(
            s,
            snippet(&String::from_utf8_lossy(&answer.body)),
        )),
        _ => Ok(Take::Jobs(parse_jobs(&answer.body))),
    }
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
pub(crate) async fn stop(client: &Client, url: &Target) -> Result<Stop, RequestError> {
    let answer = client
        .send(Method::GET, url, &[], Bytes::new(), TAKE_TIMEOUT)
        .await?;
    match answer.status {
        StatusCode::NO_CONTENT => Ok(Stop::Jobs(Vec::new())),
        StatusCode::TOO_MANY_REQUESTS => Ok(Stop::TooManyRequests),
        s if !s.is_success() => Err(RequestError::Status(
            s,
            snippet(&String::from_utf8_lossy(&answer.body)),
        )),
        _ => Ok(Stop::Jobs(parse_stop(&answer.body))),
    }
}

/// POST a JSON body to a job-done or job-stream URL, retrying transport errors, 5xx and 429
/// with exponential backoff and jitter until `policy.total` has passed. Other 4xx answers are
/// final: trying the same body again cannot help.
pub(crate) async fn post(
    client: &Client,
    url: &Target,
    job_id: &str,
    body: Vec<u8>,
    policy: RetryPolicy,
) -> Result<(), RequestError> {
    let started = Instant::now();
    // Made on the first failure: a post that is answered at once builds no back-off.
    let mut delays = None;
    let mut attempt = 1u32;
    let headers = wire::post_headers(job_id);
    let body = Bytes::from(body);
    loop {
        // Every attempt is bounded, within what is left of the whole budget: a connection that
        // accepts the request and never answers must not hold the job forever.
        let left = policy.total.saturating_sub(started.elapsed());
        let bound = policy.attempt.min(left).max(Duration::from_millis(100));
        let error = match client
            .send(Method::POST, url, &headers, body.clone(), bound)
            .await
        {
            Ok(answer) if answer.status.is_success() => return Ok(()),
            Ok(answer) => RequestError::Status(
                answer.status,
                snippet(&String::from_utf8_lossy(&answer.body)),
            ),
            Err(e) => e,
        };
        let delay = delays
            .get_or_insert_with(|| policy.delays())
            .next()
            .unwrap_or(policy.max_delay);
        if !error.is_retryable() || started.elapsed() + delay > policy.total {
            return Err(error);
        }
        tracing::warn!(
            "posting to the platform failed (attempt {attempt}: {error}); retrying in {delay:?}"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    mod against_the_emulator {
        use super::super::*;
        use runpod_emulator::{Emulator, EmulatorHandle, FaultKind, Faults, Route};

        const QUICK: RetryPolicy = RetryPolicy {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            total: Duration::from_secs(20),
            attempt: Duration::from_secs(5),
        };

        /// An emulator recording worker requests, with one job taken by worker `w` through
        /// [`take`]; the URLs are the worker's own, from the emulator's environment.
        async fn emulator_with_a_running_job(
            faults: Faults,
        ) -> (EmulatorHandle, Client, String, PlatformConfig) {
            let emu = Emulator::builder()
                .bind("127.0.0.1:0")
                .take_timeout(Duration::from_millis(200))
                .record_requests(true)
                .build()
                .await
                .unwrap();
            let cfg = PlatformConfig::from_env(&emu.worker_env("w")).unwrap();
            let http = build(&cfg.api_key).unwrap();
            let id = emu.submit(serde_json::json!({"input": 1})).unwrap();
            match take(&http, &cfg, 1, false).await.unwrap() {
                Take::Jobs(jobs) => assert_eq!(jobs[0].id(), id),
                other => panic!("no job taken: {other:?}"),
            }
            emu.set_faults(Some(faults));
            emu.clear_worker_requests();
            (emu, http, id, cfg)
        }

        /// A final body `{"output": <json>}`, as the job task builds it.
        fn output(json: &str) -> Vec<u8> {
            let raw = serde_json::value::RawValue::from_string(json.to_owned()).unwrap();
            wire::done_body(Ok(&raw), false)
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
            let (emu, http, id, cfg) = emulator_with_a_running_job(faults).await;
            let url = cfg.urls.done(&id, false);
            post(&http, &url, &id, output("1"), QUICK).await.unwrap();
            let tries = attempts(&emu, "/job-done/");
            assert_eq!(tries.last(), Some(&None), "{tries:?}");
            assert!(tries[..tries.len() - 1].iter().all(Option::is_some));
            assert_eq!(emu.stats().completed, 1);
        }

        #[tokio::test]
        async fn a_lost_answer_is_retried_and_the_platform_sees_one_result() {
            let faults = Faults::new(1).rate(Route::JobDone, FaultKind::ResetAfter, 1.0);
            let (emu, http, id, cfg) = emulator_with_a_running_job(faults).await;
            let url = cfg.urls.done(&id, false);
            let posting = tokio::spawn({
                let (http, url, id) = (http.clone(), url.clone(), id.clone());
                async move { post(&http, &url, &id, output("1"), QUICK).await }
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
            let (emu, http, _, cfg) = emulator_with_a_running_job(Faults::new(1)).await;
            let url = cfg.urls.done("no-such-job", false);
            let err = post(&http, &url, "no-such-job", output("1"), QUICK)
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
        async fn a_stalled_post_is_retried_after_its_attempt_bound() {
            let faults = Faults::new(1).rate(Route::JobDone, FaultKind::Stall, 1.0);
            let (emu, http, id, cfg) = emulator_with_a_running_job(faults).await;
            let url = cfg.urls.done(&id, false);
            let policy = RetryPolicy {
                attempt: Duration::from_millis(300),
                ..QUICK
            };
            // Stalled twice, then the platform answers.
            let unstall = async {
                while attempts(&emu, "/job-done/").len() < 2 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                emu.set_faults(None);
            };
            let started = Instant::now();
            let (posted, ()) = tokio::join!(post(&http, &url, &id, output("1"), policy), unstall);
            posted.unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            assert!(attempts(&emu, "/job-done/").len() >= 3);
        }

        #[tokio::test]
        async fn posts_give_up_after_the_total_time() {
            let faults = Faults::new(1).rate(Route::JobDone, FaultKind::BadGateway, 1.0);
            let (emu, http, id, cfg) = emulator_with_a_running_job(faults).await;
            let url = cfg.urls.done(&id, false);
            let policy = RetryPolicy {
                total: Duration::from_millis(600),
                ..QUICK
            };
            let started = Instant::now();
            let err = post(&http, &url, &id, output("1"), policy)
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
            let (emu, http, id, cfg) = emulator_with_a_running_job(faults).await;
            let url = cfg.urls.stream(&id).unwrap();
            for n in 0..20 {
                let item = serde_json::value::to_raw_value(&n).unwrap();
                let body = wire::stream_chunk(&item);
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
}
