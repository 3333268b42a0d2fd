//! The job loop's requests to the platform: HTTP/1.1 on keep-alive connections of our own, each
//! request written and its answer read by the task that sends it.
//!
//! Why not a general client: the platform's worker routes need little of HTTP (a GET, or a POST
//! with a JSON body, out; a status, a few headers and a body framed by Content-Length, chunked or
//! the close, back), and what a general client spends on the rest was most of a job's cost.
//! reqwest's pool re-parsed each URL twice per request and handed every request to a connection
//! task and back; hyper's connection-level client, which replaced it, still fed each request
//! through a per-connection dispatch channel (a 9 KB block before the first request) to a boxed
//! connection future with 8 KB read and write buffers: about 34 KB a connection, and at
//! concurrency 64 a worker holds 65. Here a connection is its socket and one buffer: the request
//! is written from it, the answer read into it and parsed with httparse (hyper's own parser).
//! BENCHMARKS.md ("What changed") has each step's before and after.
//!
//! Used for `http` and `https` platform URLs unless a proxy is configured in the environment
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, any case), which reqwest honours and this does
//! not; then every request goes through reqwest.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, RETRY_AFTER, TRANSFER_ENCODING,
};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use crate::erased::erased;
use crate::wire::Target;

/// How long connecting (TCP, then TLS) may take, as reqwest's `connect_timeout` here.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per origin: more than any concurrency needs at once is waste.
const MAX_IDLE: usize = 256;
/// A connection's buffer to start with: a request, then its answer's head and a small body,
/// each in one system call.
const BUFFER: usize = 4096;
/// A buffer that grew past this (a large answer's head or chunks) is given back after the
/// exchange rather than kept by an idle connection.
const KEEP_BUFFER: usize = 64 * 1024;
/// A request body up to this size goes out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;
/// The most an answer's head (status line and headers) may take, as hyper's default limit.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers an answer may have, as hyper's default.
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line of a chunked body (the size and any extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Reserved at most at once for a body whose length the answer states: a wrong length must
/// not allocate gigabytes before a byte arrives.
const RESERVE_STEP: usize = 1 << 20;

/// A request's answer: what the job loop reads of it. Of its headers only `Retry-After` is
/// read (a 429's); keeping every header in a `HeaderMap` was an allocation or two per header
/// on every answer, for names nobody looks up.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The first `Retry-After` header's value.
    pub(crate) retry_after: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) struct TransportError {
    what: &'static str,
    url: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.what, self.url)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A connection's socket, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One keep-alive connection: its socket, and the buffer its requests are written from and
/// its answers read into.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
}

/// Where a connection goes: what connections are kept by.
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn is(&self, https: bool, host: &str, port: u16) -> bool {
        self.https == https && self.port == port && self.host == host
    }
}

/// The idle connections of every origin the platform's URLs name, and what a request needs.
pub(crate) struct Connections {
    /// A list, not a map: a worker's URLs name one origin, two at most.
    idle: Mutex<Vec<(Origin, Vec<Conn>)>>,
    /// Authorization, User-Agent and Accept, on every request.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Built on the first `https://` connection: a worker whose platform speaks plain HTTP (the
    /// emulator, a local platform) runs none of rustls' set-up, nor maps its code.
    tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

/// Whether the environment names a proxy (reqwest serves every request then).
pub(crate) fn proxy_configured() -> bool {
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
        .iter()
        .any(|name| {
            [name.to_string(), name.to_lowercase()]
                .iter()
                .any(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
        })
}

impl Connections {
    /// Connections that send `headers` on every request.
    pub(crate) fn new(headers: Vec<(HeaderName, HeaderValue)>) -> Connections {
        Connections {
            idle: Mutex::new(Vec::new()),
            headers,
            tls: std::sync::OnceLock::new(),
        }
    }

    /// The TLS configuration, built on first use (`tls::client_config` offers http/1.1 only).
    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls.clone());
        }
        let built = Arc::new(crate::tls::client_config()?);
        Ok(self.tls.get_or_init(|| built).clone())
    }

    /// Send one request on an idle connection to the URL's origin (or a new one) and read the
    /// whole answer, all within `timeout`. The connection goes back to the idle stack when the
    /// answer ended cleanly and the server keeps the connection open.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: &Target,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, TransportError> {
        let failed =
            |what: &'static str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
                TransportError {
                    what,
                    url: url.to_string(),
                    source,
                }
            };
        let Some(host) = url.host() else {
            return Err(failed("the URL has no host", None));
        };
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(failed("the URL is neither http nor https", None)),
        };
        let port = url.port().unwrap_or(if https { 443 } else { 80 });
        let request = Request {
            method: &method,
            url,
            headers: &self.headers,
            extra,
            body: &body,
        };

        let exchange = async {
            // A kept connection the server closed just as it was reused fails before any of
            // the answer arrived: the request goes once more, on a new connection (as hyper's
            // pool does), instead of reporting a failure the platform never saw.
            let mut reused = self.checkout(https, host, port);
            loop {
                let was_reused = reused.is_some();
                let mut conn = match reused.take() {
                    Some(conn) => conn,
                    None => self
                        .connect(host, port, https)
                        .await
                        .map_err(|e| failed("could not connect to the platform", Some(e)))?,
                };
                match exchange_on(&mut conn, &request).await {
                    Ok((answer, reusable)) => {
                        if reusable {
                            self.checkin(https, host, port, conn);
                        }
                        return Ok(answer);
                    }
                    Err(e) if was_reused && !e.answered => continue,
                    Err(e) => return Err(failed(e.what, e.source)),
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(failed("the platform did not answer in time", None)),
        }
    }

    fn checkout(&self, https: bool, host: &str, port: u16) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let (_, stack) = idle.iter_mut().find(|(o, _)| o.is(https, host, port))?;
        while let Some(mut conn) = stack.pop() {
            // A connection the server closed while it sat idle shows it now.
            if still_open(&mut conn.stream) {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, https: bool, host: &str, port: u16, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let at = idle.iter().position(|(o, _)| o.is(https, host, port));
        let at = at.unwrap_or_else(|| {
            let origin = Origin {
                https,
                host: host.to_owned(),
                port,
            };
            idle.push((origin, Vec::new()));
            idle.len() - 1
        });
        let stack = &mut idle[at].1;
        if stack.len() < MAX_IDLE {
            stack.push(conn);
        }
    }

    async fn connect(
        &self,
        host: &str,
        port: u16,
        https: bool,
    ) -> Result<Conn, Box<dyn std::error::Error + Send + Sync>> {
        let connecting = async {
            // `[::1]` in a URL is `::1` to connect to.
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((name, port)).await?;
            tcp.set_nodelay(true)?;
            let stream = if https {
                let server = rustls::pki_types::ServerName::try_from(name.to_owned())?;
                let tls = tokio_rustls::TlsConnector::from(self.tls()?)
                    .connect(server, tcp)
                    .await?;
                Stream::Tls(Box::new(tls))
            } else {
                Stream::Plain(tcp)
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Conn {
                stream,
                buf: Vec::new(),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("connecting took longer than {CONNECT_TIMEOUT:?}"))?
    }
}

/// What goes out: the request line's method and target, and the headers.
struct Request<'a> {
    method: &'a Method,
    url: &'a Target,
    /// On every request; a name in `extra` replaces the same name here.
    headers: &'a [(HeaderName, HeaderValue)],
    extra: &'a [(HeaderName, HeaderValue)],
    body: &'a Bytes,
}

impl Request<'_> {
    /// The request line and headers, as hyper writes them (lower-case names, `host` first, a
    /// `content-length` unless a GET or HEAD has no body).
    fn write_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.url.path_and_query().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.url.host().unwrap_or_default().as_bytes());
        if let Some(port) = self.url.port() {
            let _ = write!(out, ":{port}");
        }
        out.extend_from_slice(b"\r\n");
        let replaced = |name: &HeaderName| self.extra.iter().any(|(n, _)| n == name);
        let common = self.headers.iter().filter(|(name, _)| !replaced(name));
        for (name, value) in common.chain(self.extra) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let bodiless = matches!(*self.method, Method::GET | Method::HEAD);
        if !self.body.is_empty() || !bodiless {
            let _ = write!(out, "content-length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Why an exchange failed, and whether any of the answer had arrived (a request that got no
/// byte back on a reused connection can go again on a new one).
struct ExchangeError {
    what: &'static str,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    answered: bool,
}

impl ExchangeError {
    fn io(answered: bool) -> impl FnOnce(std::io::Error) -> ExchangeError {
        move |e| ExchangeError {
            what: "the platform's connection failed",
            source: Some(Box::new(e)),
            answered,
        }
    }

    /// The answer arrived but is not HTTP/1.1 as it must be.
    fn malformed(what: &'static str) -> ExchangeError {
        ExchangeError {
            what,
            source: None,
            answered: true,
        }
    }

    fn cut_off() -> ExchangeError {
        ExchangeError::malformed("the platform closed the connection in the middle of its answer")
    }
}

/// One request on `conn` and its whole answer: the answer, and whether the connection can
/// carry another request.
async fn exchange_on(
    conn: &mut Conn,
    request: &Request<'_>,
) -> Result<(Answer, bool), ExchangeError> {
    let Conn { stream, buf } = conn;
    buf.clear();
    if buf.capacity() < BUFFER {
        buf.reserve(BUFFER);
    }
    request.write_head(buf);
    let inline = request.body.len() <= INLINE_BODY;
    if inline {
        buf.extend_from_slice(request.body);
    }
    stream
        .write_all(buf)
        .await
        .map_err(ExchangeError::io(false))?;
    if !inline {
        stream
            .write_all(request.body)
            .await
            .map_err(ExchangeError::io(false))?;
    }
    // TLS holds written records until flushed; a plain socket's flush does nothing.
    stream.flush().await.map_err(ExchangeError::io(false))?;
    buf.clear();
    let answer = read_answer(stream, buf, *request.method == Method::HEAD).await;
    if buf.capacity() > KEEP_BUFFER {
        *buf = Vec::new();
    }
    answer
}

/// How an answer's body ends (RFC 9112, section 6.3).
enum Framing {
    /// No body: an answer to HEAD, a 204 or a 304.
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// An answer's status line and headers, parsed.
struct Head {
    /// Its length in the buffer: the body starts here.
    len: usize,
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    framing: Framing,
    /// The server keeps the connection open after this answer.
    keep_alive: bool,
}

/// Read one answer (after any 1xx) from `stream` into `buf`: the answer, and whether the
/// connection ended it cleanly and stays open.
async fn read_answer<S: AsyncRead + Unpin + Send>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Result<(Answer, bool), ExchangeError> {
    let mut answered = false;
    let head = loop {
        if let Some(head) = parse_head(buf, head_request)? {
            if head.status.is_informational() {
                // 100 Continue, 103 Early Hints: the answer follows.
                buf.drain(..head.len);
                continue;
            }
            break head;
        }
        if fill(stream, buf)
            .await
            .map_err(ExchangeError::io(answered))?
            == 0
        {
            return Err(if answered {
                ExchangeError::cut_off()
            } else {
                ExchangeError {
                    what: "the platform closed the connection without answering",
                    source: None,
                    answered: false,
                }
            });
        }
        answered = true;
    };
    let (body, clean) = match head.framing {
        Framing::Empty => (Bytes::new(), buf.len() == head.len),
        Framing::Length(n) => read_length(stream, buf, head.len, n).await?,
        // Rare from the platform (its answers carry a Content-Length): kept out of line.
        Framing::Chunked => erased(read_chunked(stream, buf, head.len)).await?,
        Framing::UntilClose => (erased(read_to_close(stream, buf, head.len)).await?, false),
    };
    let answer = Answer {
        status: head.status,
        retry_after: head.retry_after,
        body,
    };
    Ok((answer, clean && head.keep_alive))
}

/// Read more of the answer into `buf`'s spare room (made if there is little): bytes read, 0 at
/// the end of the stream.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(buf.len().max(BUFFER));
    }
    stream.read_buf(buf).await
}

/// The answer's head at the start of `buf`, if all of it is there.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, ExchangeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Slots left uninitialised: httparse writes the ones it fills (100 empty headers were
    // 3 KB of stores on every answer).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ExchangeError::malformed(
                "the platform's answer has a head (status line and headers) over 64 KiB",
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::malformed(
                "the platform's answer has more than 100 headers",
            ));
        }
        Err(e) => {
            return Err(ExchangeError {
                what: "the platform's answer is not HTTP/1.1",
                source: Some(Box::new(e)),
                answered: true,
            });
        }
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ExchangeError::malformed(
            "the platform's answer has an invalid status code",
        ))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(ExchangeError::malformed(
            "the platform switched protocols, which the worker never asks for",
        ));
    }
    let http11 = response.version == Some(1);
    let mut close = !http11;
    let mut length = None;
    let mut transfer_encoded = false;
    let mut chunked = false;
    let mut retry_after = None;
    for header in response.headers.iter() {
        let is = |known: &HeaderName| header.name.eq_ignore_ascii_case(known.as_str());
        if is(&CONTENT_LENGTH) {
            let n = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim_ascii().parse::<u64>().ok())
                .ok_or(ExchangeError::malformed(
                    "the platform's answer has an invalid Content-Length",
                ))?;
            if length.is_some_and(|l| l != n) {
                return Err(ExchangeError::malformed(
                    "the platform's answer has two different Content-Lengths",
                ));
            }
            length = Some(n);
        } else if is(&TRANSFER_ENCODING) {
            // The body is chunked when chunked is the last coding applied.
            transfer_encoded = true;
            chunked = tokens(header.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if is(&CONNECTION) {
            for token in tokens(header.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    close = false;
                }
            }
        } else if is(&RETRY_AFTER) && retry_after.is_none() {
            let value = HeaderValue::from_bytes(header.value).map_err(|_| {
                ExchangeError::malformed("the platform's answer has an invalid header value")
            })?;
            retry_after = Some(value);
        }
    }
    let framing = if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if transfer_encoded {
        // Transfer-Encoding overrides Content-Length; without chunked last, the close ends it.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        len,
        status,
        retry_after,
        framing,
        keep_alive: !close,
    }))
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// A body of `n` bytes starting at `start` in `buf`: the body, and whether nothing followed it.
async fn read_length<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &[u8],
    start: usize,
    n: u64,
) -> Result<(Bytes, bool), ExchangeError> {
    let buffered = &buf[start..];
    if buffered.len() as u64 >= n {
        let n = n as usize;
        return Ok((Bytes::copy_from_slice(&buffered[..n]), buffered.len() == n));
    }
    let n = usize::try_from(n).map_err(|_| {
        ExchangeError::malformed("the platform's answer has a body too large to hold")
    })?;
    let mut body = Vec::with_capacity(n.min(RESERVE_STEP).max(buffered.len()));
    body.extend_from_slice(buffered);
    read_exactly(stream, &mut body, n - buffered.len()).await?;
    Ok((Bytes::from(body), true))
}

/// Read exactly `more` bytes onto the end of `body`, never past them.
async fn read_exactly<S: AsyncRead + Unpin>(
    stream: &mut S,
    body: &mut Vec<u8>,
    mut more: usize,
) -> Result<(), ExchangeError> {
    while more > 0 {
        body.reserve(more.min(RESERVE_STEP));
        let read = (&mut *stream)
            .take(more as u64)
            .read_buf(body)
            .await
            .map_err(ExchangeError::io(true))?;
        if read == 0 {
            return Err(ExchangeError::cut_off());
        }
        more -= read;
    }
    Ok(())
}

/// A chunked body starting at `start` in `buf`: the body, and whether nothing followed it.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    start: usize,
) -> Result<(Bytes, bool), ExchangeError> {
    let bad = || ExchangeError::malformed("the platform's answer has an invalid chunked body");
    let mut pos = start;
    let mut body = Vec::new();
    loop {
        let end = line_end(stream, buf, &mut pos).await?;
        let line = &buf[pos..end];
        let digits = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.len() <= 15)
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or_else(bad)?;
        pos = end + 2;
        if size == 0 {
            // Trailers (ignored), up to an empty line.
            loop {
                let end = line_end(stream, buf, &mut pos).await?;
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok((Bytes::from(body), buf.len() == pos));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| bad())?;
        let buffered = (buf.len() - pos).min(size);
        body.extend_from_slice(&buf[pos..pos + buffered]);
        pos += buffered;
        if buffered < size {
            // The buffer is used up: the rest of the chunk goes straight into the body.
            buf.clear();
            pos = 0;
            read_exactly(stream, &mut body, size - buffered).await?;
        }
        while buf.len() - pos < 2 {
            if fill(stream, buf).await.map_err(ExchangeError::io(true))? == 0 {
                return Err(ExchangeError::cut_off());
            }
        }
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(bad());
        }
        pos += 2;
    }
}

/// Where the line starting at `pos` in `buf` ends (its CRLF), reading more as needed; what was
/// already read before `pos` may be dropped from `buf` to make room (`pos` moves with it).
async fn line_end<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    pos: &mut usize,
) -> Result<usize, ExchangeError> {
    loop {
        if let Some(i) = buf[*pos..].windows(2).position(|w| w == b"\r\n") {
            return Ok(*pos + i);
        }
        if buf.len() - *pos > MAX_CHUNK_LINE {
            return Err(ExchangeError::malformed(
                "the platform's answer has a chunk-size line over 4 KiB",
            ));
        }
        if *pos > 0 {
            buf.drain(..*pos);
            *pos = 0;
        }
        if fill(stream, buf).await.map_err(ExchangeError::io(true))? == 0 {
            return Err(ExchangeError::cut_off());
        }
    }
}

/// A body that ends when the server closes the connection, starting at `start` in `buf`.
async fn read_to_close<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &[u8],
    start: usize,
) -> Result<Bytes, ExchangeError> {
    let mut body = buf[start..].to_vec();
    loop {
        body.reserve(BUFFER);
        if stream
            .read_buf(&mut body)
            .await
            .map_err(ExchangeError::io(true))?
            == 0
        {
            return Ok(Bytes::from(body));
        }
    }
}

/// Poll the socket once without waiting: false when it has ended (the server closed it, it
/// failed, or it has bytes no request asked for).
fn still_open(stream: &mut Stream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut unread = ReadBuf::new(&mut byte);
    matches!(
        Pin::new(stream).poll_read(&mut cx, &mut unread),
        Poll::Pending
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
    use reqwest::{Method, StatusCode};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::{Answer, Connections, TransportError, parse_head};
    use crate::wire::Target;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";

    /// What the test server does with each connection.
    #[derive(Clone, Copy, PartialEq)]
    enum Serve {
        /// Answer every request with these bytes, keep the connection open.
        KeepOpen(&'static [u8]),
        /// Close the connection after its first answer (and say so on `closed`).
        CloseAfterAnswer(&'static [u8]),
        /// Answer the first request, then read the second and close without answering: a
        /// kept connection the server dropped just as it was reused.
        DropTheSecond,
    }

    /// A request as the server read it: its head (lower-cased) and its body.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// The test server on loopback.
    struct Server {
        url: Target,
        accepted: Arc<AtomicUsize>,
        /// A message per connection closed after an answer.
        closed: mpsc::UnboundedReceiver<()>,
        received: Received,
    }

    /// A server answering as `serve` says.
    async fn server(serve: Serve) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = target(&format!(
            "http://{}/job-done/w/j?x=1",
            listener.local_addr().unwrap()
        ));
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Received::default();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let (count, log) = (accepted.clone(), received.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (closed_tx, log) = (closed_tx.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut requests = 0;
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // One request: its head, then as many body bytes as it says.
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if buf.len() < end + 4 + length {
                            continue;
                        }
                        let body = buf[end + 4..end + 4 + length].to_vec();
                        log.lock().unwrap().push((head, body));
                        buf.drain(..end + 4 + length);
                        requests += 1;
                        let answer = match serve {
                            Serve::DropTheSecond if requests == 2 => return,
                            Serve::DropTheSecond => OK,
                            Serve::KeepOpen(answer) | Serve::CloseAfterAnswer(answer) => answer,
                        };
                        socket.write_all(answer).await.unwrap();
                        if matches!(serve, Serve::CloseAfterAnswer(_)) {
                            drop(socket);
                            let _ = closed_tx.send(());
                            return;
                        }
                    }
                });
            }
        });
        Server {
            url,
            accepted,
            closed,
            received,
        }
    }

    fn connections() -> Connections {
        let headers = vec![(AUTHORIZATION, HeaderValue::from_static("key"))];
        Connections::new(headers)
    }

    fn target(url: &str) -> Target {
        Target::new(&reqwest::Url::parse(url).unwrap())
    }

    async fn get(conns: &Connections, url: &Target) -> Result<Answer, TransportError> {
        conns
            .request(Method::GET, url, &[], Bytes::new(), Duration::from_secs(5))
            .await
    }

    /// POST `n` to `url` and check the server's `{}` came back.
    async fn post_answered(conns: &Connections, url: &Target, n: usize) {
        let answer = conns
            .request(
                Method::POST,
                url,
                &[],
                Bytes::from(format!("{n}")),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|e| panic!("request {n}: {}", crate::error::chain(&e)));
        assert_eq!(
            (answer.status, &answer.body[..]),
            (StatusCode::OK, &b"{}"[..])
        );
    }

    /// `requests` POSTs in a row to a server serving as `serve`, each answered: how many
    /// connections they took.
    async fn connections_taken(serve: Serve, requests: usize) -> usize {
        let server = server(serve).await;
        let conns = connections();
        for n in 0..requests {
            post_answered(&conns, &server.url, n).await;
        }
        server.accepted.load(Ordering::SeqCst)
    }

    /// Two GETs to a server answering `answer` on a kept connection: the first's answer, and
    /// how many connections the two took.
    async fn get_twice(answer: &'static [u8]) -> (Answer, usize) {
        let server = server(Serve::KeepOpen(answer)).await;
        let conns = connections();
        let first = get(&conns, &server.url).await.unwrap();
        get(&conns, &server.url).await.unwrap();
        (first, server.accepted.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn one_connection_serves_request_after_request() {
        assert_eq!(connections_taken(Serve::KeepOpen(OK), 20).await, 1);
    }

    #[tokio::test]
    async fn a_request_is_its_line_host_headers_and_length() {
        let server = server(Serve::KeepOpen(OK)).await;
        let conns = connections();
        let extra = [(
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("j"),
        )];
        let big = Bytes::from(vec![b'x'; 100_000]);
        for body in [Bytes::from_static(b"{\"a\":1}"), big.clone()] {
            conns
                .request(
                    Method::POST,
                    &server.url,
                    &extra,
                    body,
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
        get(&conns, &server.url).await.unwrap();
        let port = server.url.port().unwrap();
        let received = server.received.lock().unwrap().clone();
        let heads: Vec<&str> = received.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            heads,
            [
                format!(
                    "post /job-done/w/j?x=1 http/1.1\r\nhost: 127.0.0.1:{port}\r\n\
                     authorization: key\r\nx-request-id: j\r\ncontent-length: 7"
                ),
                format!(
                    "post /job-done/w/j?x=1 http/1.1\r\nhost: 127.0.0.1:{port}\r\n\
                     authorization: key\r\nx-request-id: j\r\ncontent-length: 100000"
                ),
                format!(
                    "get /job-done/w/j?x=1 http/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: key"
                ),
            ]
        );
        assert_eq!(received[0].1, b"{\"a\":1}");
        assert_eq!(received[1].1, big);
    }

    /// Of two `Retry-After` headers the first is read, as `HeaderMap::get` reads it.
    #[test]
    fn the_first_retry_after_is_the_one_kept() {
        let raw = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nx-a: b\r\n\
                    retry-after: 9\r\ncontent-length: 0\r\n\r\n";
        let head = parse_head(raw, false).ok().flatten().expect("a whole head");
        assert_eq!(head.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(head.retry_after.unwrap(), "3");
    }

    /// Header names and their tokens in any case, as proxies and CDNs write them.
    #[tokio::test]
    async fn a_chunked_answer_is_read_whole_and_its_connection_kept() {
        let (answer, connections) = get_twice(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nX-A: b\r\n\r\n\
              4;ext=1\r\n{\"jo\r\n6\r\nbs\":[]\r\n1\r\n}\r\n0\r\ntrailer: t\r\n\r\n",
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"{\"jobs\":[]}");
        assert_eq!(answer.retry_after, None);
        assert_eq!(connections, 1);
    }

    #[tokio::test]
    async fn a_large_answer_arrives_whole() {
        // Larger than the connection's buffer: read across many system calls.
        static LARGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let raw = LARGE.get_or_init(|| {
            let body = "y".repeat(3_000_000);
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into()
        });
        let (answer, connections) = get_twice(raw).await;
        assert_eq!(answer.body.len(), 3_000_000);
        assert!(answer.body.iter().all(|&b| b == b'y'));
        assert_eq!(connections, 1);
    }

    #[tokio::test]
    async fn an_answer_after_100_continue_is_the_one_read() {
        let (answer, connections) = get_twice(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nretry-after: 3\r\n\r\n",
        )
        .await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        assert_eq!(answer.retry_after.unwrap(), "3");
        assert_eq!(connections, 1);
    }

    #[tokio::test]
    async fn connection_close_in_the_answer_is_honoured() {
        let (_, connections) =
            get_twice(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\n{}").await;
        assert_eq!(connections, 2);
        // HTTP/1.0 closes unless it says keep-alive.
        let (_, connections) = get_twice(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        assert_eq!(connections, 2);
        let (_, connections) =
            get_twice(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        assert_eq!(connections, 1);
    }

    #[tokio::test]
    async fn a_body_without_a_length_ends_with_the_close() {
        let server = server(Serve::CloseAfterAnswer(
            b"HTTP/1.1 200 OK\r\n\r\n{\"id\":1}",
        ))
        .await;
        let answer = get(&connections(), &server.url).await.unwrap();
        assert_eq!(&answer.body[..], b"{\"id\":1}");
    }

    /// An answer the worker cannot read: the error says what was wrong with it.
    async fn unreadable(answer: &'static [u8]) -> String {
        let server = server(Serve::CloseAfterAnswer(answer)).await;
        let err = get(&connections(), &server.url).await.unwrap_err();
        crate::error::chain(&err)
    }

    #[tokio::test]
    async fn an_unreadable_answer_is_an_error_saying_why() {
        let cases: [(&[u8], &str); 6] = [
            (
                b"SMTP ready\r\n\r\n",
                "the platform's answer is not HTTP/1.1",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}",
                "the platform closed the connection in the middle of its answer",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n{}",
                "the platform's answer has an invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
                "the platform's answer has two different Content-Lengths",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "the platform's answer has an invalid chunked body",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
                "the platform's answer has an invalid chunked body",
            ),
        ];
        for (answer, why) in cases {
            let text = unreadable(answer).await;
            assert!(
                text.starts_with(&format!("{why} (http://127.0.0.1:")),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        let mut server = server(Serve::CloseAfterAnswer(OK)).await;
        let conns = connections();
        for _ in 0..3 {
            let answer = get(&conns, &server.url).await.unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            // The server has closed this one before the next request goes out.
            tokio::time::timeout(Duration::from_secs(5), server.closed.recv())
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
    }

    /// The server closes each connection right after answering, as the next request is about
    /// to go out: every request is still answered (the close found at check-out, or the
    /// request sent again on a new connection when the close came first).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_racing_the_next_request_is_not_an_error() {
        assert_eq!(connections_taken(Serve::CloseAfterAnswer(OK), 50).await, 50);
    }

    /// The request went out on a kept connection and the server closed it unanswered: it is
    /// sent again, once, on a new connection, and its answer is the one returned.
    #[tokio::test]
    async fn a_request_the_kept_connection_dropped_goes_again_on_a_new_one() {
        // The second request was dropped on the first connection and answered on a second.
        assert_eq!(connections_taken(Serve::DropTheSecond, 2).await, 2);
    }

    /// A listener on loopback and a job-take URL to it.
    async fn listener() -> (TcpListener, Target) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/job-take/w", listener.local_addr().unwrap());
        (listener, target(&url))
    }

    /// A new connection that closes unanswered is a failure, not sent again: the platform
    /// may have seen the request.
    #[tokio::test]
    async fn a_new_connection_closed_unanswered_is_an_error() {
        let (listener, url) = listener().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut chunk = [0u8; 4096];
                let _ = socket.read(&mut chunk).await;
            }
        });
        let err = get(&connections(), &url).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the platform closed the connection without answering"),
            "{err}"
        );
        // A resend would have connected again before the error came back.
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_server_is_a_transport_error_naming_the_url() {
        let (listener, url) = listener().await;
        drop(listener);
        let err = get(&connections(), &url).await.unwrap_err();
        let text = crate::error::chain(&err);
        assert!(
            text.starts_with("could not connect to the platform (http://127.0.0.1:"),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let (listener, url) = listener().await;
        let _held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let err = connections()
            .request(
                Method::GET,
                &url,
                &[],
                Bytes::new(),
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the platform did not answer in time"),
            "{err}"
        );
    }

    /// An answer read from bytes that arrive in the given pieces, then the end of the stream.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        next: usize,
    }

    impl tokio::io::AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let size = self.sizes[self.next % self.sizes.len()];
            self.next += 1;
            let n = size.min(buf.remaining()).min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn read(data: Vec<u8>, sizes: Vec<usize>) -> Result<(Answer, bool), super::ExchangeError> {
        let mut pieces = Pieces {
            data,
            at: 0,
            sizes,
            next: 0,
        };
        let mut buf = Vec::new();
        let reading = super::read_answer(&mut pieces, &mut buf, false);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(reading)
    }

    /// How a generated answer frames its body.
    #[derive(Clone, Debug)]
    enum Framed {
        Length,
        /// Chunk sizes (cycled), with an extension on each and a trailer when true.
        Chunked(Vec<usize>, bool),
        UntilClose,
    }

    fn framed() -> impl Strategy<Value = Framed> {
        prop_oneof![
            Just(Framed::Length),
            (prop::collection::vec(1usize..3000, 1..6), any::<bool>())
                .prop_map(|(sizes, trailer)| Framed::Chunked(sizes, trailer)),
            Just(Framed::UntilClose),
        ]
    }

    fn encode(body: &[u8], framed: &Framed, informational: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if informational {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
        match framed {
            Framed::Length => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            Framed::Chunked(sizes, trailer) => {
                out.extend_from_slice(b"transfer-encoding: gzip, chunked\r\n\r\n");
                let mut rest = body;
                for size in sizes.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, after) = rest.split_at((*size).min(rest.len()));
                    out.extend_from_slice(format!("{:X};n=v\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                    rest = after;
                }
                out.extend_from_slice(b"0\r\n");
                if *trailer {
                    out.extend_from_slice(b"x-trailer: 1\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
            Framed::UntilClose => {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(body);
            }
        }
        out
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Any body, framed any way the platform may frame it, arriving in any pieces, reads
        /// back whole; the connection stays usable unless the close ended the body.
        #[test]
        fn an_answer_reads_back_whole_however_it_arrives(
            body in prop::collection::vec(any::<u8>(), 0..12_000),
            framed in framed(),
            informational in any::<bool>(),
            sizes in prop::collection::vec(1usize..5000, 1..8),
        ) {
            let (answer, reusable) = read(encode(&body, &framed, informational), sizes)
                .map_err(|e| TestCaseError::fail(e.what))?;
            prop_assert_eq!(answer.status, StatusCode::OK);
            prop_assert_eq!(&answer.body[..], &body[..]);
            prop_assert_eq!(reusable, !matches!(framed, Framed::UntilClose));
        }

        /// Whatever arrives, reading it ends (in an answer or an error) without a panic.
        #[test]
        fn any_bytes_end_in_an_answer_or_an_error(
            data in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600),
                prop::collection::vec(any::<u8>(), 0..300).prop_map(|tail| {
                    let mut data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                    data.extend(tail);
                    data
                }),
            ],
            sizes in prop::collection::vec(1usize..64, 1..4),
        ) {
            let _ = read(data, sizes);
        }
    }
}
