//! The lean platform: the worker routes of RunPod's protocol and nothing else, so that the
//! benchmark's ceiling is bounded by loopback and the client, not by the platform.
//!
//! The emulator is a whole RunPod (job state machine, client API, webhooks, fault rules, an
//! observer); per worker request it costs several times what a worker spends (BENCHMARKS.md
//! gives both figures). Here one thread runs a single-threaded tokio runtime serving
//! hand-written HTTP/1.1 on keep-alive connections: job-take and job-take-batch hand out jobs
//! whose bodies were encoded when they were queued, job-done reads only the body's `status`,
//! job-stream and ping answer `{}`, job-stop holds its long-poll and answers 204. The
//! [`Recorder`] is told of every take, hand-out and final result, as the emulator's observer
//! tells it, so every worker is timed the same way on either platform.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use runpod_emulator::Observer as _;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::recorder::Recorder;

/// The largest request head or body read (the benchmark's jobs are small).
const MAX_REQUEST: usize = 1 << 20;

/// A running lean platform; stopped when dropped.
pub(crate) struct Lean {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The serving thread's id, for its CPU time in `/proc/self/task/<tid>/stat`.
    tid: u32,
}

struct Shared {
    state: Mutex<State>,
    /// Woken when a job is queued (long-polling takes wait on it).
    queued: Notify,
    recorder: Arc<Recorder>,
    take_timeout: Duration,
    /// Requests answered, of every route.
    requests: AtomicU64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Queued jobs: (id, the job-take body `{"id", "input"}`).
    queue: VecDeque<(String, Vec<u8>)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lean {
    /// Serve on a loopback port of its own, on a thread of its own.
    pub(crate) fn start(recorder: Arc<Recorder>, take_timeout: Duration) -> Lean {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            recorder,
            take_timeout,
            requests: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lean-platform".into())
            .spawn(move || {
                let tid = thread_id();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("an address");
                    let _ = ready_tx.send((addr, tid));
                    serve(listener, serving, stopped).await;
                });
            })
            .expect("the platform's thread");
        let (addr, tid) = ready_rx.recv().expect("the platform starts");
        Lean {
            addr,
            shared,
            stop,
            thread: Some(thread),
            tid,
        }
    }

    /// The variables that point a worker here, as the emulator's `worker_env` names them.
    pub(crate) fn worker_env(&self, worker_id: &str) -> Vec<(String, String)> {
        let base = format!("http://{}/v2/lean", self.addr);
        runpod_emulator::worker_env(&base, "local", worker_id, Duration::from_secs(10))
    }

    /// Queue a job with this input; returns its id.
    pub(crate) fn submit(&self, input: &Value) -> String {
        let mut state = self.shared.lock();
        state.next_id += 1;
        let id = format!("job-{}", state.next_id);
        let body = serde_json::to_vec(&serde_json::json!({ "id": id, "input": input }))
            .expect("a job body");
        state.queue.push_back((id.clone(), body));
        drop(state);
        self.shared.queued.notify_waiters();
        id
    }

    /// Drop every queued job.
    pub(crate) fn purge(&self) {
        self.shared.lock().queue.clear();
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// CPU time (user + system) of the serving thread so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        crate::sampling::thread_cpu_seconds(self.tid)
    }
}

impl Drop for Lean {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This thread's id (`/proc/thread-self` is `<pid>/task/<tid>`).
fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    let mut stopping = stopped.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, shared.clone(), stopped.clone()));
            }
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// One request's head: what the routes need of it.
struct Request {
    method: Method,
    /// The path without the query.
    path: String,
    query: String,
    body: Vec<u8>,
}

#[derive(PartialEq)]
enum Method {
    Get,
    Post,
    Other,
}

/// Serve one keep-alive connection until the peer closes it or the platform stops.
async fn connection(
    mut stream: TcpStream,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    loop {
        let request = tokio::select! {
            r = read_request(&mut stream, &mut buf) => r,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let Some(request) = request else { return };
        let (status, body) = tokio::select! {
            a = route(&shared, &request) => a,
            _ = stopped.wait_for(|s| *s) => (204, Vec::new()),
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        out.clear();
        let reason = match status {
            200 => "OK",
            204 => "No Content",
            404 => "Not Found",
            _ => "Bad Request",
        };
        out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
        if status != 204 {
            out.extend_from_slice(
                format!(
                    "content-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Read one request (head and `Content-Length` or chunked body) from `stream`; `buf` keeps
/// what was read past it. `None` when the peer closed the connection or sent something else.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_REQUEST || !fill(stream, buf).await {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let method = match start.next()? {
        "GET" => Method::Get,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = start.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let (mut length, mut chunked) = (0usize, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    buf.drain(..head_end);
    let body = if chunked {
        read_chunked(stream, buf).await?
    } else {
        if length > MAX_REQUEST {
            return None;
        }
        while buf.len() < length {
            if !fill(stream, buf).await {
                return None;
            }
        }
        buf.drain(..length).collect()
    };
    Some(Request {
        method,
        path,
        query,
        body,
    })
}

/// A chunked body (aiohttp sends some bodies so): `size\r\n data\r\n` … `0\r\n\r\n`.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = find(buf, b"\r\n") {
                break at;
            }
            if !fill(stream, buf).await {
                return None;
            }
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        if body.len() + size > MAX_REQUEST {
            return None;
        }
        // The chunk, its CRLF (and for the last, empty chunk: the CRLF that ends the body).
        let need = line_end + 2 + size + 2;
        while buf.len() < need {
            if !fill(stream, buf).await {
                return None;
            }
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..need);
        if size == 0 {
            return Some(body);
        }
    }
}

/// Read more of the stream into `buf`; false at its end.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The routes, by the path's segment after `/v2/lean/`.
async fn route(shared: &Shared, request: &Request) -> (u16, Vec<u8>) {
    let mut segments = request
        .path
        .strip_prefix("/v2/lean/")
        .unwrap_or_default()
        .splitn(3, '/');
    let route = segments.next().unwrap_or_default();
    let worker = segments.next().unwrap_or_default();
    match (&request.method, route) {
        (Method::Get, "job-take") => take(shared, worker, None).await,
        (Method::Get, "job-take-batch") => {
            let size = query_value(&request.query, "batch_size")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .clamp(1, 100);
            take(shared, worker, Some(size)).await
        }
        (Method::Post, "job-done") => {
            let id = segments.next().unwrap_or_default();
            done(shared, id, &request.body)
        }
        (Method::Post, "job-stream") | (Method::Get, "ping") => (200, b"{}".to_vec()),
        (Method::Get, "job-stop") => {
            // Nothing is ever stopped here: hold the long-poll, then "nothing to stop".
            tokio::time::sleep(shared.take_timeout).await;
            (204, Vec::new())
        }
        _ => (404, b"{\"error\":\"not a worker route\"}".to_vec()),
    }
}

fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Hand out up to one job (or `batch` jobs, as an array), holding the request until one is
/// queued or the take timeout passes (204).
async fn take(shared: &Shared, worker: &str, batch: Option<usize>) -> (u16, Vec<u8>) {
    shared.recorder.take_requested(worker);
    let deadline = tokio::time::Instant::now() + shared.take_timeout;
    loop {
        let mut queued = pin!(shared.queued.notified());
        queued.as_mut().enable();
        let jobs: Vec<(String, Vec<u8>)> = {
            let mut state = shared.lock();
            let n = batch.unwrap_or(1).min(state.queue.len());
            state.queue.drain(..n).collect()
        };
        if !jobs.is_empty() {
            for (id, _) in &jobs {
                shared.recorder.job_handed(id);
            }
            let body = match batch {
                None => jobs.into_iter().next().map(|(_, b)| b).unwrap_or_default(),
                Some(_) => {
                    let mut body = vec![b'['];
                    for (i, (_, job)) in jobs.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(job);
                    }
                    body.push(b']');
                    body
                }
            };
            return (200, body);
        }
        tokio::select! {
            () = queued => {}
            () = tokio::time::sleep_until(deadline) => return (204, Vec::new()),
        }
    }
}

/// The part of a job-done body the platform reads: a progress update says `IN_PROGRESS`.
#[derive(Deserialize)]
struct DoneBody<'a> {
    #[serde(borrow, default)]
    status: Option<&'a str>,
}

fn done(shared: &Shared, id: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let Ok(parsed) = serde_json::from_slice::<DoneBody<'_>>(body) else {
        return (
            400,
            b"{\"error\":\"a job-done body must be a JSON object\"}".to_vec(),
        );
    };
    if parsed.status == Some("IN_PROGRESS") {
        return (200, b"{}".to_vec());
    }
    // The recorder counts a job finished once, and only one it saw handed out.
    shared.recorder.job_finished(id);
    (200, b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Lean;
    use crate::recorder::Recorder;

    /// A worker's round trip over real HTTP: take (single and batch), done, ping, 204.
    #[tokio::test]
    async fn serves_the_worker_routes() {
        let _ = crate::rustls_provider();
        let recorder = std::sync::Arc::new(Recorder::default());
        let lean = Lean::start(recorder.clone(), Duration::from_millis(100));
        let env: std::collections::HashMap<_, _> = lean.worker_env("w").into_iter().collect();
        let take = env["RUNPOD_WEBHOOK_GET_JOB"].replace("$ID", "w");
        let done = env["RUNPOD_WEBHOOK_POST_OUTPUT"].replace("$RUNPOD_POD_ID", "w");
        let http = reqwest::Client::new();

        let empty = http.get(&take).send().await.expect("take");
        assert_eq!(empty.status(), 204);
        let a = lean.submit(&serde_json::json!({"n": 1}));
        let b = lean.submit(&serde_json::json!({"n": 2}));
        let c = lean.submit(&serde_json::json!({"n": 3}));
        let job: serde_json::Value = http
            .get(&take)
            .send()
            .await
            .expect("take")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("json"))
            .expect("a body");
        assert_eq!(job, serde_json::json!({"id": a, "input": {"n": 1}}));
        let batch_url = take.replace("/job-take/", "/job-take-batch/") + "&batch_size=5";
        let jobs: serde_json::Value = http
            .get(&batch_url)
            .send()
            .await
            .expect("batch")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("json"))
            .expect("a body");
        assert_eq!(jobs[0]["id"], b.as_str());
        assert_eq!(jobs[1]["input"]["n"], 3);
        assert_eq!(recorder.lock().held_max, 3);

        let progress = http
            .post(done.replace("$ID", &a))
            .body(r#"{"status":"IN_PROGRESS","output":"half"}"#)
            .send()
            .await
            .expect("progress");
        assert_eq!(progress.status(), 200);
        assert!(!recorder.lock().finished.contains_key(&a));
        for id in [&a, &b, &c] {
            let r = http
                .post(done.replace("$ID", id))
                .body(r#"{"output":{"n":1}}"#)
                .send()
                .await
                .expect("done");
            assert_eq!(r.status(), 200);
        }
        {
            let events = recorder.lock();
            assert!(events.finished.contains_key(&c) && events.held == 0);
        }
        let ping = env["RUNPOD_WEBHOOK_PING"].replace("$RUNPOD_POD_ID", "w");
        assert_eq!(http.get(&ping).send().await.expect("ping").status(), 200);
        assert!(lean.requests() >= 8);
    }
}
