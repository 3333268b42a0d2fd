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
//! Unlike the Python SDK, a failed download is an error the handler sees (and can `?`), not a
//! `None` in a list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::{Url, header};
use tokio::io::AsyncWriteExt as _;

use crate::error::chain;

/// The default size cap: 5 GiB, as the Python SDK.
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The most redirects followed.
pub const MAX_REDIRECTS: usize = 5;

/// Why a download failed.
#[derive(Debug, Clone)]
pub struct DownloadError {
    kind: DownloadErrorKind,
    message: String,
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
    dir: OnceLock<PathBuf>,
    created: Mutex<()>,
    count: AtomicUsize,
    max_bytes: u64,
    allow_private: bool,
    connect_timeout: Duration,
    read_timeout: Duration,
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
        })
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
        self.dir.get().map(PathBuf::as_path)
    }

    fn ensure_dir(&self) -> Result<&Path, DownloadError> {
        let _guard = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.dir.get() {
            return Ok(dir);
        }
        let safe: String = self
            .job_id
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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "worker-job-{safe}-{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            DownloadError::new(
                DownloadErrorKind::Io,
                format!(
                    "could not create the download directory {}: {e}",
                    dir.display()
                ),
            )
        })?;
        Ok(self.dir.get_or_init(|| dir))
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
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
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
            .user_agent(crate::client::user_agent())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve(bare, first)
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
        if let Some(dir) = self.dir.get()
            && let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "could not remove the download directory {}: {e}",
                dir.display()
            );
        }
    }
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

/// Whether an address is globally routable: what the SSRF rules let through.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_global_v4(ip),
        IpAddr::V6(ip) => is_global_v6(ip),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                    // "this network", unspecified
        || a == 10                              // private
        || a == 127                             // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 169 && b == 254)               // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))  // private
        || (a == 192 && b == 0 && c == 0)       // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)       // documentation
        || (a == 192 && b == 168)               // private
        || (a == 198 && (b == 18 || b == 19))   // benchmarking
        || (a == 198 && b == 51 && c == 100)    // documentation
        || (a == 203 && b == 0 && c == 113)     // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00              // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80              // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0              // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00              // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)     // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard 100::/64
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]
            && !is_global_v4(Ipv4Addr::new(
                (s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)))
        || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_addresses() {
        for ok in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "100.63.0.1",
            "172.32.0.1",
        ] {
            assert!(is_global(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_global(bad.parse().unwrap()), "{bad}");
        }
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
    fn redacts_queries_and_user_info() {
        let url = Url::parse("https://u:p@h/x.png?X-Amz-Signature=secret").unwrap();
        assert_eq!(redact(&url), "https://h/x.png");
    }
}
