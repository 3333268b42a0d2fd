//! The HTTP side of the client: one connection pool, the key, per-request timeouts, and the
//! retry rules (which answers and errors a call is sent again after, and how long it waits).

use std::time::Duration;

use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use reqwest::{Client, Method, Response, StatusCode};

use super::builder::Settings;
use super::error::{ClientError, ClientErrorKind};

/// How many attempts a call gets and the back-off between them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retries {
    pub(super) attempts: u32,
    pub(super) first_delay: Duration,
    pub(super) max_delay: Duration,
}

impl Default for Retries {
    fn default() -> Retries {
        Retries {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Retries {
    /// The wait before attempt `attempt + 1`: `first × 2^(attempt-1)` up to `max`, 50–100 % of it
    /// (so that many clients do not retry in step), or the server's `Retry-After` when longer.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let nominal = self
            .first_delay
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_delay);
        let jittered = nominal.mul_f64(0.5 + fastrand::f64() / 2.0);
        match retry_after {
            // A server that says how long to wait is believed, up to a minute.
            Some(after) => after.min(Duration::from_secs(60)).max(jittered),
            None => jittered,
        }
    }
}

/// Whether a call may be sent again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Sending it twice does no harm (reads, cancel, retry, purge): retried after transport
    /// errors and 408/425/429/500/502/503/504.
    Idempotent,
    /// It submits a job: sent again only when the job cannot have been submitted, that is when
    /// the connection was never made or the answer was 429 (refused before it was queued).
    Submits,
}

impl Replay {
    fn after_status(self, status: StatusCode) -> bool {
        match self {
            Replay::Idempotent => {
                matches!(status.as_u16(), 408 | 425 | 429 | 500 | 502 | 503 | 504)
            }
            Replay::Submits => status == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn after_error(self, error: &reqwest::Error) -> bool {
        if error.is_builder() {
            return false;
        }
        match self {
            Replay::Idempotent => true,
            Replay::Submits => error.is_connect(),
        }
    }
}

/// A request of a call: what the call is named in errors, and what it sends.
#[derive(Debug)]
pub(super) struct Request<'a> {
    pub(super) call: &'static str,
    pub(super) endpoint: &'a str,
    pub(super) method: Method,
    pub(super) url: String,
    /// A JSON body; `None` sends an empty body (`Content-Length: 0`) on a POST.
    pub(super) body: Option<Vec<u8>>,
    pub(super) timeout: Duration,
    pub(super) replay: Replay,
}

impl Request<'_> {
    fn error(&self, kind: ClientErrorKind, attempts: u32) -> ClientError {
        ClientError::new(self.call, self.endpoint, kind).with_request(
            self.method.as_str(),
            &self.url,
            attempts,
        )
    }
}

/// An answer read whole.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

/// The client's connection pool and retry rules, shared by an endpoint and its job handles.
#[derive(Debug)]
pub(super) struct Http {
    client: Client,
    retries: Retries,
    pub(super) timeout: Duration,
}

impl Http {
    pub(super) fn new(settings: &Settings) -> Result<Http, ClientError> {
        let tls = crate::tls::client_config().map_err(|e| {
            ClientError::config(format!("could not set up TLS for the client: {e}"))
        })?;
        let mut headers = HeaderMap::new();
        if !settings.api_key.is_empty() {
            let mut key =
                HeaderValue::from_str(&format!("Bearer {}", settings.api_key)).map_err(|_| {
                    ClientError::config(
                        "the API key contains characters that cannot go in an HTTP header",
                    )
                })?;
            key.set_sensitive(true);
            headers.insert(AUTHORIZATION, key);
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("worker-runtime-client/", env!("CARGO_PKG_VERSION"))),
        );
        let client = Client::builder()
            .tls_backend_preconfigured(tls)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::config(format!("could not build the HTTP client: {e}")))?;
        Ok(Http {
            client,
            retries: settings.retries,
            timeout: settings.timeout,
        })
    }

    /// A base URL without its trailing `/`, or why it is not one.
    pub(super) fn check_base(base: &str) -> Result<String, ClientError> {
        let trimmed = base.trim().trim_end_matches('/');
        match reqwest::Url::parse(trimmed) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Ok(trimmed.to_owned())
            }
            Ok(_) => Err(ClientError::config(format!(
                "the base URL must be an http:// or https:// URL with a host, not {base:?}"
            ))),
            Err(e) => Err(ClientError::config(format!(
                "the base URL {base:?} is not a URL ({e}): give an http:// or https:// URL, \
                 such as http://127.0.0.1:8000/v2"
            ))),
        }
    }

    /// Send the request, again while its replay rule allows, and read the answer whole. An
    /// error status is an error (its body in the message) unless `accept` takes it.
    pub(super) async fn send(
        &self,
        request: &Request<'_>,
        accept: impl Fn(StatusCode) -> bool + Sync,
    ) -> Result<Answer, ClientError> {
        let (response, attempts) = self.send_raw(request, &accept).await?;
        let status = response.status();
        match response.bytes().await {
            Ok(body) => Ok(Answer {
                status,
                body: body.to_vec(),
            }),
            Err(error) => Err(request.error(
                ClientErrorKind::Transport {
                    maybe_submitted: request.replay == Replay::Submits,
                    error,
                },
                attempts,
            )),
        }
    }

    /// Send the request and return the response once its status is accepted (for answers read
    /// as they come, such as server-sent events), with the number of attempts it took.
    pub(super) async fn send_raw(
        &self,
        request: &Request<'_>,
        accept: &(dyn Fn(StatusCode) -> bool + Sync),
    ) -> Result<(Response, u32), ClientError> {
        let mut attempt = 1;
        loop {
            let mut builder = self
                .client
                .request(request.method.clone(), &request.url)
                .timeout(request.timeout);
            builder = match &request.body {
                Some(body) => builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
                None if request.method == Method::POST => builder.body(Vec::new()),
                None => builder,
            };
            let retry_in = match builder.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() || accept(status) {
                        return Ok((response, attempt));
                    }
                    if attempt >= self.retries.attempts || !request.replay.after_status(status) {
                        let body = response.text().await.unwrap_or_default();
                        let body = crate::wire::snippet(&body);
                        return Err(request.error(
                            ClientErrorKind::Status {
                                status: status.as_u16(),
                                body,
                            },
                            attempt,
                        ));
                    }
                    self.retries.delay(attempt, retry_after(response.headers()))
                }
                Err(error) => {
                    if attempt >= self.retries.attempts || !request.replay.after_error(&error) {
                        let maybe_submitted =
                            request.replay == Replay::Submits && !error.is_connect();
                        return Err(request.error(
                            ClientErrorKind::Transport {
                                error,
                                maybe_submitted,
                            },
                            attempt,
                        ));
                    }
                    self.retries.delay(attempt, None)
                }
            };
            tracing::debug!(
                call = request.call,
                url = %request.url,
                attempt,
                "retrying in {} ms",
                retry_in.as_millis()
            );
            tokio::time::sleep(retry_in).await;
            attempt += 1;
        }
    }
}

/// A `Retry-After` in seconds (the HTTP-date form is not used by RunPod or our workers).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_max() {
        let retries = Retries::default();
        for attempt in 1..10 {
            let nominal =
                (Duration::from_millis(250) * (1 << (attempt - 1))).min(Duration::from_secs(8));
            let delay = retries.delay(attempt, None);
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "{attempt}: {delay:?}"
            );
        }
        let told = retries.delay(1, Some(Duration::from_secs(2)));
        assert_eq!(told, Duration::from_secs(2));
        let capped = retries.delay(1, Some(Duration::from_secs(3600)));
        assert_eq!(capped, Duration::from_secs(60));
    }

    #[test]
    fn a_submitting_call_is_only_repeated_when_nothing_was_queued() {
        assert!(Replay::Submits.after_status(StatusCode::TOO_MANY_REQUESTS));
        for status in [500, 502, 503, 504, 408] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!Replay::Submits.after_status(status), "{status}");
            assert!(Replay::Idempotent.after_status(status), "{status}");
        }
        for status in [400, 401, 404, 413] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!Replay::Idempotent.after_status(status), "{status}");
        }
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            Http::check_base("http://127.0.0.1:8000/v2/").unwrap(),
            "http://127.0.0.1:8000/v2"
        );
        assert!(Http::check_base("ftp://example.com").is_err());
        assert!(Http::check_base("127.0.0.1:8000").is_err());
    }
}
