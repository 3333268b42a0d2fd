//! The ceiling: the least a worker can do, job-take then job-done in a loop, one blocking
//! thread and keep-alive connection per slot, hand-written HTTP/1.1 over `std::net`. Nothing
//! is logged, nothing retried, no heartbeat: the best any worker could reach against the same
//! emulator. Slots from `BENCH_CONCURRENCY` (default 1); `input.sleep_ms` is honoured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// `http://host:port/path?query` → (`host:port`, `/path?query`).
fn split(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let slash = rest.find('/').unwrap_or(rest.len());
    (rest[..slash].to_owned(), rest[slash..].to_owned())
}

struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
    key: String,
}

impl Conn {
    /// Send one request, read the status and body.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.key,
            body.len()
        );
        let stream = self.reader.get_mut();
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        stream.write_all(&out).expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, body)
    }
}

fn slot(host: String, take: String, done: String, key: String) {
    let stream = TcpStream::connect(&host).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut conn = Conn {
        reader: BufReader::new(stream),
        host,
        key,
    };
    let take = format!("{take}&job_in_progress=0");
    loop {
        let (status, body) = conn.request("GET", &take, b"");
        if status != 200 {
            continue;
        }
        let job: Value = serde_json::from_slice(&body).expect("a job");
        let id = job["id"].as_str().expect("an id");
        let input = &job["input"];
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let result = serde_json::to_vec(&serde_json::json!({ "output": input })).expect("json");
        let path = format!("{}&isStream=false", done.replace("$ID", id));
        conn.request("POST", &path, &result);
    }
}

fn main() {
    let slots: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let pod = env("RUNPOD_POD_ID");
    let (host, take) = split(&env("RUNPOD_WEBHOOK_GET_JOB").replace("$ID", &pod));
    let (_, done) = split(&env("RUNPOD_WEBHOOK_POST_OUTPUT").replace("$RUNPOD_POD_ID", &pod));
    let key = env("RUNPOD_AI_API_KEY");
    let threads: Vec<_> = (0..slots)
        .map(|_| {
            let (host, take, done, key) = (host.clone(), take.clone(), done.clone(), key.clone());
            std::thread::spawn(move || slot(host, take, done, key))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
