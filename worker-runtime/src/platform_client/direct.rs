//! The job loop's requests to the platform on keep-alive HTTP/1.1 connections that the
//! requesting task drives itself (hyper's connection-level client), instead of reqwest's pool.
//!
//! Why: a job is one job-take and one job-done. Through reqwest each request crosses to the
//! pool's connection task and back (on the multi-thread runtime each crossing can wake another
//! worker thread), re-parses its URL into a `Uri` and, for the response, back into a `Url`
//! (tower-http's redirect layer), and checks a connection out of a keyed pool. Here a
//! connection is checked out of a plain stack per origin and polled by the task that sends on
//! it, for the whole exchange: no hand-off, no URL parsing, no pool bookkeeping. BENCHMARKS.md
//! has the before and after.
//!
//! Used for `http` and `https` platform URLs unless a proxy is configured in the environment
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, any case), which reqwest honours and this does
//! not; then every request goes through reqwest as before.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;

/// How long connecting (TCP, then TLS) may take, as reqwest's `connect_timeout` here.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per origin: more than any concurrency needs at once is waste.
const MAX_IDLE: usize = 256;

/// A request's answer: what the job loop reads of it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
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

type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One keep-alive connection: the sending half and the future that runs it.
struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
}

/// The idle connections of every origin the platform's URLs name, and what a request needs.
pub(crate) struct Connections {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
    /// Authorization and User-Agent, on every request.
    headers: HeaderMap,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

impl Connections {
    /// `None` when a proxy is configured: reqwest serves every request then.
    pub(crate) fn new(headers: HeaderMap, tls: rustls::ClientConfig) -> Option<Connections> {
        let proxied = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
            .iter()
            .any(|name| {
                [name.to_string(), name.to_lowercase()]
                    .iter()
                    .any(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty()))
            });
        if proxied {
            return None;
        }
        let mut tls = tls;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Connections {
            idle: Mutex::new(HashMap::new()),
            headers,
            tls: Arc::new(tls),
        })
    }

    /// Send one request on an idle connection to the URL's origin (or a new one) and read the
    /// whole answer, all within `timeout`. The connection goes back to the idle stack when the
    /// exchange ended cleanly and the server keeps it open.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: &Url,
        extra: &[(hyper::header::HeaderName, HeaderValue)],
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
        let Some(host) = url.host_str() else {
            return Err(failed("the URL has no host", None));
        };
        let https = url.scheme() == "https";
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        let origin = format!("{}://{host}:{port}", url.scheme());
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };

        let host_header = HeaderValue::from_str(&authority)
            .map_err(|e| failed("the URL's host is not a header value", Some(Box::new(e))))?;
        let build = || {
            let mut request = Request::builder()
                .method(method.clone())
                .uri(target.as_str())
                .body(Full::new(body.clone()))
                .map_err(|e| failed("could not build the request", Some(Box::new(e))))?;
            let headers = request.headers_mut();
            headers.insert(HOST, host_header.clone());
            for (name, value) in &self.headers {
                headers.insert(name.clone(), value.clone());
            }
            for (name, value) in extra {
                headers.insert(name.clone(), value.clone());
            }
            Ok::<_, TransportError>(request)
        };

        let exchange = async {
            // A kept connection the server closed just as it was reused fails before anything
            // was answered: the request goes once more, on a new connection (as hyper's pool
            // does), instead of reporting a failure the platform never saw.
            let mut reused = self.checkout(&origin);
            loop {
                let was_reused = reused.is_some();
                let mut conn = match reused.take() {
                    Some(conn) => conn,
                    None => self
                        .connect(host, port, https)
                        .await
                        .map_err(|e| failed("could not connect to the platform", Some(e)))?,
                };
                match exchange_on(&mut conn, build()?).await {
                    Ok((answer, open)) => {
                        if open && still_open(&mut conn.driver) && !conn.send.is_closed() {
                            self.checkin(origin.clone(), conn);
                        }
                        return Ok(answer);
                    }
                    Err(e)
                        if was_reused
                            && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        return Err(failed(
                            "the platform's connection failed",
                            Some(Box::new(e)),
                        ));
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(failed("the platform did not answer in time", None)),
        }
    }

    fn checkout(&self, origin: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let stack = idle.get_mut(origin)?;
        while let Some(mut conn) = stack.pop() {
            // A connection the server closed while it sat idle shows it now.
            if still_open(&mut conn.driver) && !conn.send.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, origin: String, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let stack = idle.entry(origin).or_default();
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
            let conn = if https {
                let server = rustls::pki_types::ServerName::try_from(name.to_owned())?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(server, tcp)
                    .await?;
                handshake(tls).await?
            } else {
                handshake(tcp).await?
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(conn)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("connecting took longer than {CONNECT_TIMEOUT:?}"))?
    }
}

/// One request on `conn`, the connection polled by this task meanwhile: the answer, and
/// whether the connection is still open.
async fn exchange_on(
    conn: &mut Conn,
    request: Request<Full<Bytes>>,
) -> hyper::Result<(Answer, bool)> {
    let Conn { send, driver } = conn;
    let answer = async {
        std::future::poll_fn(|cx| send.poll_ready(cx)).await?;
        let response = send.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    let answer = pin!(answer);
    let (answer, open) = Exchange::new(answer, driver.as_mut()).await;
    Ok((answer?, open))
}

async fn handshake<IO>(io: IO) -> hyper::Result<Conn>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
    Ok(Conn {
        send,
        driver: Box::pin(connection),
    })
}

/// The request's future and its connection's, polled together by the requesting task.
///
/// The two wake each other (the request queued for the connection to write, the answer read
/// for the request), and a task woken while it runs is scheduled again, which on the
/// multi-thread runtime can wake another worker thread for it. So a wake that comes while this
/// future is being polled only marks "poll again", and it polls again before returning;
/// a wake from outside (the socket readable) reaches the task as usual.
struct Exchange<'a, A> {
    answer: Pin<&'a mut A>,
    driver: Pin<&'a mut (dyn Future<Output = hyper::Result<()>> + Send)>,
    /// The connection ended before the answer was complete.
    ended: bool,
    waker: Arc<LocalWake>,
}

/// A waker that defers to the task's own unless the wake comes while the exchange is polled.
#[derive(Default)]
struct LocalWake {
    task: Mutex<Option<std::task::Waker>>,
    polling: std::sync::atomic::AtomicBool,
    again: std::sync::atomic::AtomicBool,
}

impl std::task::Wake for LocalWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.polling.load(SeqCst) {
            self.again.store(true, SeqCst);
            // Woken from another thread while this one polls: make sure the task runs again
            // if the poll below misses it.
            if self.polling.load(SeqCst) {
                return;
            }
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<'a, A> Exchange<'a, A> {
    fn new(
        answer: Pin<&'a mut A>,
        driver: Pin<&'a mut (dyn Future<Output = hyper::Result<()>> + Send)>,
    ) -> Self {
        Exchange {
            answer,
            driver,
            ended: false,
            waker: Arc::new(LocalWake::default()),
        }
    }
}

impl<A, T> Future for Exchange<'_, A>
where
    A: Future<Output = T>,
{
    /// The answer, and whether the connection is still open.
    type Output = (T, bool);

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<(T, bool)> {
        use std::sync::atomic::Ordering::SeqCst;
        {
            let mut task = self.waker.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let local = std::task::Waker::from(self.waker.clone());
        let mut inner = std::task::Context::from_waker(&local);
        let this = &mut *self;
        // Enough rounds for a request to be written and its whole answer read when the socket
        // has it all; past that, yield as any future would.
        for _ in 0..16 {
            this.waker.polling.store(true, SeqCst);
            this.waker.again.store(false, SeqCst);
            let answer = this.answer.as_mut().poll(&mut inner);
            if let Poll::Ready(answer) = answer {
                this.waker.polling.store(false, SeqCst);
                return Poll::Ready((answer, !this.ended));
            }
            if !this.ended && this.driver.as_mut().poll(&mut inner).is_ready() {
                this.ended = true;
            }
            this.waker.polling.store(false, SeqCst);
            if !this.waker.again.load(SeqCst) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Poll the connection once without waiting: false when it has ended (the server closed it,
/// or it failed).
fn still_open(driver: &mut Driver) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    matches!(driver.as_mut().poll(&mut cx), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use hyper::header::HeaderMap;
    use hyper::{Method, StatusCode};
    use reqwest::Url;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::Connections;

    /// What the test server does with each connection.
    #[derive(Clone, Copy, PartialEq)]
    enum Serve {
        /// Answer every request, keep the connection open.
        KeepOpen,
        /// Close the connection after its first answer (and say so on `closed`).
        CloseAfterAnswer,
        /// Answer the first request, then read the second and close without answering: a
        /// kept connection the server dropped just as it was reused.
        DropTheSecond,
    }

    /// A server on loopback answering requests `{}` as `serve` says. Returns its URL, its
    /// accept count and, on `closed`, a message per connection closed after an answer.
    async fn server(serve: Serve) -> (Url, Arc<AtomicUsize>, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/job-done/w/j?x=1",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let closed_tx = closed_tx.clone();
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
                        assert!(head.contains("host: 127.0.0.1:"), "{head}");
                        assert!(head.contains("/job-done/w/j?x=1 http/1.1"), "{head}");
                        buf.drain(..end + 4 + length);
                        requests += 1;
                        if serve == Serve::DropTheSecond && requests == 2 {
                            return;
                        }
                        socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                            .await
                            .unwrap();
                        if serve == Serve::CloseAfterAnswer {
                            drop(socket);
                            let _ = closed_tx.send(());
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted, closed)
    }

    fn connections() -> Connections {
        let tls = crate::tls::client_config().unwrap();
        Connections::new(HeaderMap::new(), tls).expect("no proxy in the test environment")
    }

    /// POST `n` to `url` and check the server's `{}` came back.
    async fn post_answered(conns: &Connections, url: &Url, n: usize) {
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
        let (url, accepted, _closed) = server(serve).await;
        let conns = connections();
        for n in 0..requests {
            post_answered(&conns, &url, n).await;
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn one_connection_serves_request_after_request() {
        assert_eq!(connections_taken(Serve::KeepOpen, 20).await, 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        let (url, accepted, mut closed) = server(Serve::CloseAfterAnswer).await;
        let conns = connections();
        for _ in 0..3 {
            let answer = conns
                .request(Method::GET, &url, &[], Bytes::new(), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            // The server has closed this one before the next request goes out.
            tokio::time::timeout(Duration::from_secs(5), closed.recv())
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// The server closes each connection right after answering, as the next request is about
    /// to go out: every request is still answered (the close found at check-out, or the
    /// request sent again on a new connection when the close came first).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_racing_the_next_request_is_not_an_error() {
        assert_eq!(connections_taken(Serve::CloseAfterAnswer, 50).await, 50);
    }

    /// The request went out on a kept connection and the server closed it unanswered: it is
    /// sent again, once, on a new connection, and its answer is the one returned.
    #[tokio::test]
    async fn a_request_the_kept_connection_dropped_goes_again_on_a_new_one() {
        // The second request was dropped on the first connection and answered on a second.
        assert_eq!(connections_taken(Serve::DropTheSecond, 2).await, 2);
    }

    #[tokio::test]
    async fn no_server_is_a_transport_error_naming_the_url() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/job-take/w",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        drop(listener);
        let err = connections()
            .request(Method::GET, &url, &[], Bytes::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = crate::error::chain(&err);
        assert!(
            text.starts_with("could not connect to the platform (http://127.0.0.1:"),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/job-take/w",
            listener.local_addr().unwrap()
        ))
        .unwrap();
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
}
