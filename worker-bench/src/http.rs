//! `--http`: a load-balancing worker against what RunPod's load-balancing template deploys
//! (FastAPI on uvicorn, `peers/fastapi_echo.py`), the same echo handler on both, in one run.
//! The load generator is this process (reqwest, one connection per client, HTTP/1.1 keep-alive),
//! the same for both: each of `c` clients posts `{"input": …}` to `/runsync` back to back for a
//! fixed time; requests/s, p50 and p99 latency per concurrency, idle RSS after start, and spawn →
//! first health 200 (neither worker has an init function, so this is start-up itself).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

use crate::peers::Paths;

const FASTAPI: &str = "0.115.6";
const UVICORN: &str = "0.34.0";
const BEGIN: &str = "<!-- http:begin -->";
const END: &str = "<!-- http:end -->";

/// One worker measured: (concurrency, requests/s, p50 ms, p99 ms) rows, idle RSS, ready time.
#[derive(Debug)]
struct Measured {
    rows: Vec<(usize, f64, f64, f64, usize)>,
    idle_rss_mb: f64,
    ready_ms: f64,
}

pub(crate) async fn run_all(paths: &Paths, quick: bool, write: bool) {
    let seconds = if quick { 2 } else { 6 };
    let concurrencies = [1usize, 8, 32];
    let ours = paths.release.join("bench-echo");
    let python = setup_venv(&paths.bench);
    let load_before = crate::report::load_average();
    let started = Instant::now();
    let mut results = Vec::new();
    let ours_measured = measure(
        "ours",
        |port| {
            let mut cmd = Command::new(&ours);
            cmd.env("WORKER_MODE", "load-balancing")
                .env("PORT", port.to_string())
                .env("BENCH_CONCURRENCY", "64");
            cmd
        },
        &concurrencies,
        seconds,
    )
    .await;
    results.push(("ours (`--load-balancing`, the echo handler)", ours_measured));
    match &python {
        Ok(python) => {
            let script = paths.root.join("worker-bench/peers/fastapi_echo.py");
            let measured = measure(
                "fastapi",
                |port| {
                    let mut cmd = Command::new(python);
                    cmd.arg(&script).env("PORT", port.to_string());
                    cmd
                },
                &concurrencies,
                seconds,
            )
            .await;
            results.push((
                "FastAPI + uvicorn (RunPod's load-balancing template)",
                measured,
            ));
        }
        Err(e) => eprintln!("FastAPI + uvicorn not measured: {e}"),
    }
    let out = render(&results, &load_before, started.elapsed(), seconds);
    println!("{out}");
    if write {
        crate::report::write_between(&paths.root.join("BENCHMARKS.md"), &out, (BEGIN, END));
    }
}

fn setup_venv(bench: &Path) -> Result<PathBuf, String> {
    crate::peers::venv(
        bench,
        &format!("venv-fastapi-{FASTAPI}"),
        &[format!("fastapi=={FASTAPI}"), format!("uvicorn=={UVICORN}")],
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Kills the worker when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn measure(
    name: &str,
    command: impl Fn(u16) -> Command,
    concurrencies: &[usize],
    seconds: u64,
) -> Measured {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let spawned = Instant::now();
    let worker = Worker(
        command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so RSS is read over every process it starts.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} could not start: {e}")),
    );
    let http = reqwest::Client::new();
    let ready_ms = loop {
        let ok = http
            .get(format!("{base}/ping"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200);
        if ok {
            break spawned.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(60),
            "{name} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_mb = crate::sampling::rss(worker.0.id()).0;
    // Warm-up: connections open, code paths touched.
    let _ = load(&base, 8, Duration::from_secs(1)).await;
    let mut rows = Vec::new();
    for &c in concurrencies {
        let (count, mut latencies, refused) = load(&base, c, Duration::from_secs(seconds)).await;
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let rps = count as f64 / seconds as f64;
        eprintln!(
            "{name} c={c}: {rps:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            at(0.5),
            at(0.99)
        );
        rows.push((c, rps, at(0.5), at(0.99), refused));
    }
    Measured {
        rows,
        idle_rss_mb,
        ready_ms,
    }
}

/// `c` clients posting back to back for `time`: completed requests, their latencies, and how
/// many were answered with anything but 200.
async fn load(base: &str, c: usize, time: Duration) -> (usize, Vec<Duration>, usize) {
    let url = format!("{base}/runsync");
    let until = Instant::now() + time;
    let clients: Vec<_> = (0..c)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                // One connection per client, as a load balancer keeps them.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("a client");
                let mut latencies = Vec::new();
                let mut refused = 0;
                while Instant::now() < until {
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"input": {"prompt": "hello", "n": 1}}"#)
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().as_u16() == 200 => {
                            let _ = r.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        _ => refused += 1,
                    }
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut refused = 0;
    for client in clients {
        if let Ok((latencies, r)) = client.await {
            all.extend(latencies);
            refused += r;
        }
    }
    (all.len(), all, refused)
}

fn render(
    results: &[(&str, Measured)],
    load_before: &str,
    elapsed: Duration,
    seconds: u64,
) -> String {
    let mut out = format!(
        "{BEGIN}\nMade by `cargo run --release -p worker-bench -- --http`; {}; load average \
         before: {load_before}; took {:.0} s. Each concurrency: {seconds} s of back-to-back \
         `/runsync` requests per client, over loopback, from one load generator (this process, \
         reqwest, a keep-alive connection per client).\n\n",
        crate::report::machine(),
        elapsed.as_secs_f64()
    );
    out.push_str(
        "| worker | concurrency | requests/s | p50 / p99 (ms) | non-200 |\n|---|---|---|---|---|\n",
    );
    for (name, m) in results {
        for (c, rps, p50, p99, refused) in &m.rows {
            out.push_str(&format!(
                "| {name} | {c} | {rps:.0} | {p50:.2} / {p99:.2} | {refused} |\n"
            ));
        }
    }
    out.push_str("\n| worker | idle RSS (MB) | spawn → health 200 (ms) |\n|---|---|---|\n");
    for (name, m) in results {
        out.push_str(&format!(
            "| {name} | {:.1} | {:.0} |\n",
            m.idle_rss_mb, m.ready_ms
        ));
    }
    if let [(_, ours), (_, py)] = results {
        out.push('\n');
        for ((c, ours_rps, _, ours_p99, _), (_, py_rps, _, py_p99, _)) in
            ours.rows.iter().zip(&py.rows)
        {
            out.push_str(&format!(
                "At concurrency {c}: **{:.1}×** uvicorn's requests/s (target ≥ 3×); p99 {ours_p99:.2} ms against {py_p99:.2} ms ({}).\n",
                ours_rps / py_rps,
                if ours_p99 < py_p99 { "lower, as targeted" } else { "NOT lower: target missed" }
            ));
        }
        out.push_str(&format!(
            "Idle RSS: **{:.2}** of uvicorn's (target ≤ 0.1).\n",
            ours.idle_rss_mb / py.idle_rss_mb
        ));
    }
    out.push_str(END);
    out
}
