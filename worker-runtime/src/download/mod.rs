//! URL inputs: download a job's files into a temporary directory of its own, removed when the
//! job ends (feature `download`).
//!
//! ```no_run
//! # async fn handler(job: &worker::Job) -> Result<(), worker::download::DownloadError> {
//! let path = job.download("https://example.com/cat.png").await?;
//! let bytes = std::fs::read(&path).map_err(|e| e.to_string());
//! # let _ = bytes; Ok(()) }
//! ```
//!
//! The rules are the Python SDK's `rp_download`/`rp_ssrf` ones:
//!
//! - only `http` and `https` URLs;
//! - the host is resolved and every address must be globally routable: loopback, private
//!   (RFC 1918), link-local (cloud metadata services), CGNAT, unique-local, multicast,
//!   unspecified, documentation and other reserved ranges are refused, unless
//!   `RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS` is `1`, `true` or `yes`
//!   ([`Downloads::allow_private`]);
//! - the connection goes to the address that was checked (no second DNS lookup), never through
//!   a proxy;
//! - at most 5 redirects, each checked the same way;
//! - at most `RUNPOD_MAX_DOWNLOAD_BYTES` bytes (default 5 GiB, [`Downloads::max_bytes`]).
//!
//! Besides the address forms (mapped IPv6, decimal/octal/hex IPv4, …, in `address.rs`), the
//! tests give the downloader a hostile resolver: a public host that redirects to a private
//! address, a name with a public and a private address, a redirect loop, and DNS rebinding
//! (public on the check, private on a second lookup: the connection still goes to the checked
//! address, and only a fresh download sees, and refuses, the new answer).
//!
//! Unlike the Python SDK, a failed download is an error the handler sees (and can `?`), not a
//! `None` in a list.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::{Url, header};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;

use crate::error::chain;

mod address;

pub use self::address::is_global;

/// The default size cap: 5 GiB, as the Python SDK.
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The most redirects followed.
pub const MAX_REDIRECTS: usize = 5;

/// Why a download failed.
#[derive(Debug, Clone)]
pub struct DownloadError {
    kind: DownloadErrorKind,
    message: String,
    source: crate::error::Source,
}

/// What kind of [`DownloadError`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownloadErrorKind {
    /// Not a URL, or not `http`/`https`.
    InvalidUrl,
    /// The URL (or a redirect) points at an address that is not globally routable.
    Refused,
    /// The file is larger than the size cap.
    TooLarge,
    /// More than [`MAX_REDIRECTS`] redirects.
    TooManyRedirects,
    /// The server answered with an error status.
    Status,
    /// DNS, connection, TLS or transfer failure.
    Network,
    /// The file could not be written.
    Io,
    /// `RUNPOD_MAX_DOWNLOAD_BYTES` is malformed.
    Config,
}

crate::error::kinded_error!(DownloadError, DownloadErrorKind);

/// A job's downloads: a temporary directory, created on the first download and removed with
/// everything in it when this value is dropped.
///
/// [`Job::download`](crate::Job::download) keeps one per job, dropped when the job ends; make
/// your own to choose the settings.
#[derive(Debug)]
pub struct Downloads {
    job_id: String,
    dir: OnceLock<TempDir>,
    created: Mutex<()>,
    count: AtomicUsize,
    max_bytes: u64,
    allow_private: bool,
    connect_timeout: Duration,
    read_timeout: Duration,
    net: Net,
}

/// How a host name becomes the address connected to: the system resolver, and that address
/// itself. Tests replace both, to answer as a hostile DNS server would and to reach a
/// loopback server behind a "public" address.
#[derive(Clone, Default)]
struct Net {
    lookup: Option<Arc<Lookup>>,
    dial: Option<Arc<Dial>>,
}

type Lookup = dyn Fn(&str, u16) -> Vec<SocketAddr> + Send + Sync;
type Dial = dyn Fn(SocketAddr) -> SocketAddr + Send + Sync;

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.lookup.is_some() {
            "Net(test)"
        } else {
            "Net(system)"
        })
    }
}

impl Downloads {
    /// Downloads for the job `job_id`, with the settings from the environment
    /// (`RUNPOD_MAX_DOWNLOAD_BYTES`, `RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS`).
    pub fn new(job_id: &str) -> Result<Downloads, DownloadError> {
        let max_bytes = match std::env::var("RUNPOD_MAX_DOWNLOAD_BYTES") {
            Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
                DownloadError::new(
                    DownloadErrorKind::Config,
                    format!("RUNPOD_MAX_DOWNLOAD_BYTES={v:?} is not a number of bytes"),
                )
            })?,
            _ => DEFAULT_MAX_BYTES,
        };
        let allow_private = std::env::var("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS")
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        Ok(Downloads {
            job_id: job_id.to_owned(),
            dir: OnceLock::new(),
            created: Mutex::new(()),
            count: AtomicUsize::new(0),
            max_bytes,
            allow_private,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            net: Net::default(),
        })
    }

    /// Resolve with `lookup` and connect to `dial(checked address)` instead of the system's
    /// resolver and the address itself.
    #[cfg(test)]
    fn with_net(
        mut self,
        lookup: impl Fn(&str, u16) -> Vec<SocketAddr> + Send + Sync + 'static,
        dial: impl Fn(SocketAddr) -> SocketAddr + Send + Sync + 'static,
    ) -> Downloads {
        self.net = Net {
            lookup: Some(Arc::new(lookup)),
            dial: Some(Arc::new(dial)),
        };
        self
    }

    /// Allow (or refuse) URLs that resolve to loopback, private, link-local and other
    /// non-global addresses. Default: `RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS`, else refuse.
    pub fn allow_private(mut self, allow: bool) -> Downloads {
        self.allow_private = allow;
        self
    }

    /// The largest file accepted, in bytes. Default: `RUNPOD_MAX_DOWNLOAD_BYTES`, else 5 GiB.
    pub fn max_bytes(mut self, max_bytes: u64) -> Downloads {
        self.max_bytes = max_bytes;
        self
    }

    /// How long to wait for a connection (default 10 s) and for each read (default 30 s).
    pub fn timeouts(mut self, connect: Duration, read: Duration) -> Downloads {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// The directory downloads are saved in, once the first one started.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.get().map(TempDir::path)
    }

    fn ensure_dir(&self) -> Result<&Path, DownloadError> {
        let _guard = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.dir.get() {
            return Ok(dir.path());
        }
        let dir = job_dir(&self.job_id, &std::env::temp_dir())?;
        Ok(self.dir.get_or_init(|| dir).path())
    }

    /// Download `url` into this job's directory and return the file's path. The file is named
    /// after the last segment of the URL's path (made safe), prefixed with a counter.
    pub async fn fetch(&self, url: &str) -> Result<PathBuf, DownloadError> {
        let mut current = Url::parse(url).map_err(|e| {
            DownloadError::new(
                DownloadErrorKind::InvalidUrl,
                format!("{url:?} is not a URL: {e}"),
            )
        })?;
        let mut redirects = 0;
        let response = loop {
            let client = self.pinned_client(&current).await?;
            let response = client.get(current.clone()).send().await.map_err(|e| {
                DownloadError::new(
                    DownloadErrorKind::Network,
                    format!("downloading {}: {}", redact(&current), chain(&e)),
                )
            })?;
            if !response.status().is_redirection() {
                break response;
            }
            let Some(location) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                break response;
            };
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(DownloadError::new(
                    DownloadErrorKind::TooManyRedirects,
                    format!(
                        "downloading {}: more than {MAX_REDIRECTS} redirects",
                        redact(&Url::parse(url).unwrap_or(current))
                    ),
                ));
            }
            current = current.join(location).map_err(|e| {
                DownloadError::new(
                    DownloadErrorKind::InvalidUrl,
                    format!(
                        "downloading {}: bad redirect {location:?}: {e}",
                        redact(&current)
                    ),
                )
            })?;
        };
        let status = response.status();
        if !status.is_success() {
            return Err(DownloadError::new(
                DownloadErrorKind::Status,
                format!(
                    "downloading {}: the server answered {status}",
                    redact(&current)
                ),
            ));
        }
        if let Some(length) = response.content_length()
            && length > self.max_bytes
        {
            return Err(self.too_large(&current, length));
        }
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let path = self
            .ensure_dir()?
            .join(format!("{n}-{}", file_name(&current)));
        let result = self.save(response, &path, &current).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        result.map(|()| path)
    }

    async fn save(
        &self,
        mut response: reqwest::Response,
        path: &Path,
        url: &Url,
    ) -> Result<(), DownloadError> {
        let io = |e: std::io::Error| {
            DownloadError::new(
                DownloadErrorKind::Io,
                format!("writing {}: {e}", path.display()),
            )
        };
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut written: u64 = 0;
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                DownloadError::new(
                    DownloadErrorKind::Network,
                    format!("downloading {}: {}", redact(url), chain(&e)),
                )
            })?;
            let Some(chunk) = chunk else { break };
            written += chunk.len() as u64;
            if written > self.max_bytes {
                return Err(self.too_large(url, written));
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(())
    }

    fn too_large(&self, url: &Url, bytes: u64) -> DownloadError {
        DownloadError::new(
            DownloadErrorKind::TooLarge,
            format!(
                "downloading {}: the file is larger than the limit of {} bytes (at least {bytes}; RUNPOD_MAX_DOWNLOAD_BYTES)",
                redact(url),
                self.max_bytes
            ),
        )
    }

    /// A client that connects only to the checked address of `url`'s host.
    async fn pinned_client(&self, url: &Url) -> Result<reqwest::Client, DownloadError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DownloadError::new(
                DownloadErrorKind::InvalidUrl,
                format!(
                    "{}: only http and https URLs can be downloaded",
                    redact(url)
                ),
            ));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
            DownloadError::new(
                DownloadErrorKind::InvalidUrl,
                format!("{}: the URL has no host", redact(url)),
            )
        })?;
        let port = url.port_or_known_default().unwrap_or(80);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        // Resolved once here; the client connects to the address checked below and never
        // resolves the name again, so a DNS answer that changes (rebinding) cannot redirect it.
        let addrs: Vec<SocketAddr> = match (bare.parse::<IpAddr>(), &self.net.lookup) {
            (Ok(ip), _) => vec![SocketAddr::new(ip, port)],
            (Err(_), Some(lookup)) => lookup(bare, port),
            (Err(_), None) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| {
                    DownloadError::new(
                        DownloadErrorKind::Network,
                        format!("downloading {}: could not resolve {bare}: {e}", redact(url)),
                    )
                })?
                .collect(),
        };
        let Some(&first) = addrs.first() else {
            return Err(DownloadError::new(
                DownloadErrorKind::Network,
                format!("downloading {}: {bare} has no address", redact(url)),
            ));
        };
        if !self.allow_private
            && let Some(bad) = addrs.iter().find(|a| !is_global(a.ip()))
        {
            return Err(DownloadError::new(
                DownloadErrorKind::Refused,
                format!(
                    "refusing to download {}: {bare} resolves to {}, which is not a public address \
                     (set RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=1 to allow private, loopback and link-local addresses)",
                    redact(url),
                    bad.ip()
                ),
            ));
        }
        let tls = crate::tls::client_config().map_err(|e| {
            DownloadError::new(
                DownloadErrorKind::Network,
                format!("could not set up TLS: {e}"),
            )
        })?;
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(crate::wire::user_agent())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve(
                bare,
                self.net.dial.as_ref().map_or(first, |dial| dial(first)),
            )
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .build()
            .map_err(|e| {
                DownloadError::new(
                    DownloadErrorKind::Network,
                    format!("could not build an HTTP client: {}", chain(&e)),
                )
            })
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        // `TempDir` removes itself on drop too, but silently; `close` reports a failure.
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close()
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(
                    "could not remove the download directory {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// A new, uniquely named directory in `base` for the downloads of the job `job_id`:
/// `worker-job-<job id, made safe>-<random>`.
fn job_dir(job_id: &str, base: &Path) -> Result<TempDir, DownloadError> {
    let safe: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let prefix = format!("worker-job-{safe}-");
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(base)
        .map_err(|e| {
            DownloadError::new(
                DownloadErrorKind::Io,
                format!(
                    "could not create the download directory {prefix}* in {}: {e}",
                    base.display()
                ),
            )
        })
}

/// The URL without its query (presigned URLs carry credentials there) or user info.
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// A safe file name from the URL's last path segment: letters, digits, `.`, `-`, `_`.
fn file_name(url: &Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let safe: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        "download".into()
    } else {
        safe.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the test DNS calls a public address; connections to it go to the loopback server.
    const PUBLIC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(93, 184, 216, 34));

    /// A loopback server: `/file` is "hello", `/to-private` redirects to its own loopback
    /// address, `/loop` redirects to itself.
    async fn server() -> SocketAddr {
        use axum::response::Redirect;
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/file", get(|| async { "hello" }))
            .route(
                "/to-private",
                get(move || async move { Redirect::temporary(&format!("http://{addr}/file")) }),
            )
            .route("/loop", get(|| async { Redirect::temporary("/loop") }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Downloads whose DNS answers `answer(name, call number)`, dialling the loopback server
    /// for [`PUBLIC`]; and the count of lookups made.
    fn with_dns(
        server: SocketAddr,
        answer: impl Fn(&str, usize) -> Vec<IpAddr> + Send + Sync + 'static,
    ) -> (Downloads, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let downloads = Downloads::new("ssrf-test")
            .unwrap()
            .allow_private(false)
            .with_net(
                move |name, port| {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    answer(name, n)
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect()
                },
                move |addr| if addr.ip() == PUBLIC { server } else { addr },
            );
        (downloads, calls)
    }

    #[tokio::test]
    async fn a_redirect_from_a_public_host_to_a_private_address_is_refused() {
        let server = server().await;
        let (downloads, _) = with_dns(server, |_, _| vec![PUBLIC]);
        let e = downloads
            .fetch(&format!(
                "http://files.example:{}/to-private",
                server.port()
            ))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DownloadErrorKind::Refused, "{e}");
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        // The same host's own file is fine: the refusal is the redirect's.
        let path = downloads
            .fetch(&format!("http://files.example:{}/file", server.port()))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hello");
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_public_and_a_private_address_is_refused() {
        let server = server().await;
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        let (downloads, _) = with_dns(server, move |_, _| vec![PUBLIC, private]);
        let e = downloads
            .fetch(&format!("http://mixed.example:{}/file", server.port()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DownloadErrorKind::Refused, "{e}");
        assert!(e.to_string().contains("10.1.2.3"), "{e}");
    }

    #[tokio::test]
    async fn a_redirect_loop_ends_after_the_limit() {
        let server = server().await;
        let (downloads, calls) = with_dns(server, |_, _| vec![PUBLIC]);
        let e = downloads
            .fetch(&format!("http://files.example:{}/loop", server.port()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DownloadErrorKind::TooManyRedirects, "{e}");
        // Every hop was checked on its own.
        assert_eq!(calls.load(Ordering::SeqCst), MAX_REDIRECTS + 1);
    }

    #[tokio::test]
    async fn dns_rebinding_cannot_move_the_connection_to_a_private_address() {
        let server = server().await;
        // Public on the check, loopback on any later lookup.
        let (downloads, calls) = with_dns(server, |_, n| {
            if n == 0 {
                vec![PUBLIC]
            } else {
                vec!["127.0.0.1".parse().unwrap()]
            }
        });
        let path = downloads
            .fetch(&format!("http://rebind.example:{}/file", server.port()))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hello");
        // One lookup: the connection went to the address that was checked, not to a second
        // answer.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A fresh fetch looks up again, gets the private answer, and is refused.
        let e = downloads
            .fetch(&format!("http://rebind.example:{}/file", server.port()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), DownloadErrorKind::Refused, "{e}");
    }

    #[test]
    fn file_names_are_safe() {
        let name = |u: &str| file_name(&Url::parse(u).unwrap());
        assert_eq!(name("https://h/a/cat.png?x=1"), "cat.png");
        assert_eq!(name("https://h/"), "download");
        assert_eq!(
            name("https://h/..%2F..%2Fetc%2Fpasswd"),
            "_2F.._2Fetc_2Fpasswd"
        );
        assert_eq!(name("https://h/a%20b.jpg"), "a_20b.jpg");
    }

    #[test]
    fn job_directory_is_named_after_the_job_and_removed_on_drop() {
        let downloads = Downloads::new("job/../7 x").unwrap();
        assert!(downloads.dir().is_none(), "no directory before a download");
        let dir = downloads.ensure_dir().unwrap().to_owned();
        assert!(dir.is_dir(), "{}", dir.display());
        assert_eq!(dir.parent(), Some(std::env::temp_dir().as_path()));
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("worker-job-job____7_x-"), "{name}");
        assert_eq!(
            downloads.ensure_dir().unwrap(),
            dir,
            "one directory per job"
        );
        std::fs::write(dir.join("0-file.bin"), b"data").unwrap();
        // Another `Downloads` for the same job id gets a directory of its own.
        let other = Downloads::new("job/../7 x").unwrap();
        assert_ne!(other.ensure_dir().unwrap(), dir);
        drop(downloads);
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }

    #[test]
    fn a_directory_that_cannot_be_made_says_where() {
        let base = std::env::temp_dir().join(format!("worker-no-such-dir-{}", std::process::id()));
        let err = job_dir("job-1", &base).unwrap_err();
        assert_eq!(err.kind(), DownloadErrorKind::Io);
        let text = err.to_string();
        assert!(
            text.contains("could not create the download directory worker-job-job-1-")
                && text.contains(&base.display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn redacts_queries_and_user_info() {
        let url = Url::parse("https://u:p@h/x.png?X-Amz-Signature=secret").unwrap();
        assert_eq!(redact(&url), "https://h/x.png");
    }
}
