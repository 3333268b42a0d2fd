//! How an endpoint client is set up: where the endpoint is, the key, timeouts and retries.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::error::ClientError;
use super::http::{Http, Retries};
use super::load_balancing::LoadBalancingEndpoint;
use super::queue::Endpoint;

/// The settings of an [`Endpoint`] or a [`LoadBalancingEndpoint`] before it is built:
/// `Endpoint::builder(id, key)` / `LoadBalancingEndpoint::builder(id, key)`, then
/// [`build`](Builder::build).
///
/// ```no_run
/// # async fn demo() -> Result<(), worker::client::ClientError> {
/// use std::time::Duration;
/// use worker::client::Endpoint;
///
/// // A worker run with `--rp_serve_api` serves the endpoint `local` on 127.0.0.1:8000.
/// let endpoint = Endpoint::<worker::Value, worker::Value>::builder("local", "")
///     .base_url("http://127.0.0.1:8000/v2")
///     .timeout(Duration::from_secs(5))
///     .max_attempts(3)
///     .build()?;
/// # Ok(()) }
/// ```
pub struct Builder<E> {
    pub(super) settings: Settings,
    endpoint: PhantomData<fn() -> E>,
}

/// What a builder holds (the same for both kinds of endpoint).
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) id: String,
    pub(super) api_key: String,
    pub(super) base_url: Option<String>,
    pub(super) timeout: Duration,
    pub(super) retries: Retries,
    pub(super) health_path: String,
}

impl<E> fmt::Debug for Builder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("Builder")
            .field("id", &s.id)
            .field("api_key", &if s.api_key.is_empty() { "" } else { "…" })
            .field("base_url", &s.base_url)
            .field("timeout", &s.timeout)
            .field("retries", &s.retries)
            .finish()
    }
}

impl<E> Builder<E> {
    pub(super) fn new(id: &str, api_key: &str) -> Builder<E> {
        Builder {
            settings: Settings {
                id: id.trim().to_owned(),
                api_key: api_key.trim().to_owned(),
                base_url: None,
                timeout: Duration::from_secs(30),
                retries: Retries::default(),
                health_path: "/ping".to_owned(),
            },
            endpoint: PhantomData,
        }
    }

    /// Where the endpoint's API is, instead of RunPod's.
    ///
    /// For a queue endpoint this is the base the endpoint id goes under, as runpod-python's
    /// `endpoint_url_base`: `https://api.runpod.ai/v2` by default, `http://127.0.0.1:8000/v2`
    /// for a worker run with `--rp_serve_api` or the emulator (whose endpoint id is `local`).
    /// For a load-balancing endpoint it is the server itself (`https://{id}.api.runpod.ai` by
    /// default), such as `http://127.0.0.1:8080` for a worker run with `--load-balancing`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.settings.base_url = Some(url.into());
        self
    }

    /// The longest one request may take, from connecting to the end of its answer (30 s by
    /// default). Calls that wait for a job (`run_sync`, `wait`, a load-balancing `stream`)
    /// take their own `wait` instead.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How many times a call is made at most, the first included (5 by default); 1 turns
    /// retries off.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.retries.attempts = attempts.max(1);
        self
    }

    /// The back-off between attempts: the first delay, doubling up to `max` (250 ms and 8 s by
    /// default), each with jitter; a 429's `Retry-After` is waited instead when it says longer.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.settings.retries.first_delay = first;
        self.settings.retries.max_delay = max.max(first);
        self
    }

    fn http(&self, default_base: String) -> Result<(Http, String), ClientError> {
        let base = self.settings.base_url.clone().unwrap_or(default_base);
        let base = Http::check_base(&base)?;
        Ok((Http::new(&self.settings)?, base))
    }
}

impl<In, Out> Builder<Endpoint<In, Out>> {
    /// The client, or why it cannot be made (an unusable base URL or key).
    pub fn build(self) -> Result<Endpoint<In, Out>, ClientError> {
        if self.settings.id.is_empty() || self.settings.id.contains('/') {
            return Err(ClientError::config(format!(
                "`{}` is not an endpoint id: pass the id RunPod shows for the endpoint (the part \
                 after /v2/ in its URL)",
                self.settings.id
            )));
        }
        let (http, base) = self.http("https://api.runpod.ai/v2".to_owned())?;
        Ok(Endpoint::from_parts(self.settings.id, http, &base))
    }
}

impl<In, Out> Builder<LoadBalancingEndpoint<In, Out>> {
    /// The path of the worker's health check (`/ping` by default, RunPod's default
    /// `HEALTH_CHECK_PATH`).
    pub fn health_path(mut self, path: impl Into<String>) -> Self {
        self.settings.health_path = path.into();
        self
    }

    /// The client, or why it cannot be made (an unusable base URL, key or health path).
    pub fn build(self) -> Result<LoadBalancingEndpoint<In, Out>, ClientError> {
        if !self.settings.health_path.starts_with('/') {
            return Err(ClientError::config(format!(
                "the health path must start with `/`, not {:?}",
                self.settings.health_path
            )));
        }
        let default_base = format!("https://{}.api.runpod.ai", self.settings.id);
        if self.settings.base_url.is_none()
            && (self.settings.id.is_empty()
                || !self
                    .settings
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(ClientError::config(format!(
                "`{}` is not an endpoint id: pass the id RunPod shows for the endpoint (the part \
                 before .api.runpod.ai in its URL), or set `base_url`",
                self.settings.id
            )));
        }
        let (http, base) = self.http(default_base)?;
        Ok(LoadBalancingEndpoint::from_parts(
            self.settings.id,
            http,
            &base,
            &self.settings.health_path,
        ))
    }
}
