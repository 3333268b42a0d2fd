//! `worker-bench --embed`: serving a real model, side by side. The embed example's model
//! (all-MiniLM-L6-v2 on candle, `bench-embed`) unbatched at concurrency 1 and 8 and batched
//! (`batch = 32`), against the Python worker a Python user deploys (runpod 1.12.0 +
//! sentence-transformers, `peers/python_embed.py`) at concurrency 8 and 32, each a fresh process
//! on a fresh emulator, timed from the platform side. The table goes into BENCHMARKS.md between
//! the `embed:begin`/`embed:end` markers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runpod_emulator::Emulator;
use serde_json::{Value, json};

use crate::recorder::Recorder;
use crate::sampling::rss;

const BEGIN: &str = "<!-- embed:begin -->";
const END: &str = "<!-- embed:end -->";
/// sentence-transformers and torch as the reference fixture was made with.
const SENTENCE_TRANSFORMERS: &str = "6.2.0";

/// One configuration under test.
#[derive(Debug, Clone, Copy)]
struct Config {
    name: &'static str,
    python: bool,
    /// Calls (or batches) at once; 0: one per core.
    concurrency: usize,
    /// Jobs per model call (0: one job per call).
    batch: usize,
}

const CONFIGS: [Config; 5] = [
    Config {
        name: "Python SDK + sentence-transformers, concurrency 8",
        python: true,
        concurrency: 8,
        batch: 0,
    },
    Config {
        name: "Python SDK + sentence-transformers, concurrency 32",
        python: true,
        concurrency: 32,
        batch: 0,
    },
    Config {
        name: "ours, unbatched, concurrency 1",
        python: false,
        concurrency: 1,
        batch: 0,
    },
    Config {
        name: "ours, unbatched, concurrency 8",
        python: false,
        concurrency: 8,
        batch: 0,
    },
    Config {
        name: "ours, `batch = 32`, a batch per core (the example)",
        python: false,
        concurrency: 0,
        batch: 32,
    },
];

/// What one configuration measured.
#[derive(Debug, Default)]
struct Figures {
    /// Spawn → first job-take, and spawn → the first job's result (model load included), ms.
    first_take_ms: Option<f64>,
    first_result_ms: Option<f64>,
    idle_rss_mb: Option<f64>,
    peak_rss_mb: Option<f64>,
    /// One-text jobs queued at once: how many finished, jobs/s, and queue → result p50/p99 ms.
    burst_done: usize,
    burst_jobs: usize,
    jobs_per_s: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Texts/s inside one job of 1, 8 and 32 texts (measured unbatched at concurrency 1 for ours,
    /// at the lower concurrency for Python: one job at a time either way).
    texts_per_s: [Option<f64>; 3],
}

/// Options of the embedding run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbedOptions {
    pub(crate) quick: bool,
    pub(crate) skip_python: bool,
    pub(crate) write: bool,
}

/// Where the model is (fetched by `scripts/fetch-model.sh` when missing).
fn model_dir(root: &Path, target: &Path) -> Result<PathBuf, String> {
    let dir = std::env::var_os("MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("models/all-MiniLM-L6-v2"));
    if !dir.join("model.safetensors").exists() {
        eprintln!("fetching the model with scripts/fetch-model.sh");
        let status = Command::new("bash")
            .arg(root.join("scripts/fetch-model.sh"))
            .status()
            .map_err(|e| format!("scripts/fetch-model.sh: {e}"))?;
        if !status.success() {
            return Err("scripts/fetch-model.sh failed".into());
        }
    }
    Ok(dir)
}

/// The Python worker's venv: runpod 1.12.0 and sentence-transformers, under
/// `target/venvs/sentence-transformers` (the one the reference fixture's script uses), installed
/// once. Returns its interpreter and what the install cost, if it ran now.
fn python_venv(target: &Path) -> Result<(PathBuf, Option<Duration>), String> {
    let venv = target.join("venvs/sentence-transformers");
    let python = venv.join("bin/python");
    let marker = venv.join(format!(
        ".bench-installed-runpod-{}",
        crate::peers::RUNPOD_PY
    ));
    if marker.exists() {
        return Ok((python, None));
    }
    let started = Instant::now();
    if !python.exists() {
        eprintln!(
            "creating {} (torch from PyPI pulls the CUDA wheels: ~6 GB, ~15 min)",
            venv.display()
        );
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    eprintln!(
        "installing runpod=={} and sentence-transformers=={SENTENCE_TRANSFORMERS}",
        crate::peers::RUNPOD_PY
    );
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("runpod=={}", crate::peers::RUNPOD_PY),
        &format!("sentence-transformers=={SENTENCE_TRANSFORMERS}"),
    ]))?;
    std::fs::write(&marker, "").map_err(|e| e.to_string())?;
    Ok((python, Some(started.elapsed())))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// The runtime image's root filesystem without the worker: Debian bookworm minbase with
/// `ca-certificates`, slimmed (`scripts/rootfs-test.sh`; README, "Image size").
const DEBIAN_SLIM_BASE_MB: f64 = 83.8;
/// The Python SDK image's without its venv: Debian with python3 and venv
/// (`scripts/python-image-size.sh`: 326.3 MB, 198.8 MB of it the venv; README, "Image size").
const PYTHON_BASE_MB: f64 = 127.5;

/// Deterministic sentences of 8–20 words, different for every `i`.
fn text(i: usize) -> String {
    const WORDS: [&str; 24] = [
        "worker", "model", "queue", "vector", "cat", "river", "quickly", "under", "bright",
        "server", "sentence", "rust", "python", "cloud", "small", "green", "jumps", "over",
        "night", "token", "batch", "reads", "writes", "stone",
    ];
    let mut state = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let len = 8 + (next() % 13) as usize;
    (0..len)
        .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run the embedding benchmark and print (and write) its table.
pub(crate) async fn run_all(root: &Path, target: &Path, options: EmbedOptions) {
    eprintln!("building bench-embed (release, candle)");
    let built = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "worker-bench",
            "--features",
            "embed",
            "--bin",
            "bench-embed",
        ])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("cargo build --features embed --bin bench-embed failed");
        std::process::exit(1);
    }
    let model = match model_dir(root, target) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let python = if options.skip_python {
        Err("skipped (--skip-python)".to_owned())
    } else {
        python_venv(target)
    };
    let ours = target.join("release/bench-embed");
    let load_before = crate::report::load_average();
    let started = Instant::now();
    let mut results = Vec::new();
    for config in CONFIGS {
        let binary = match (config.python, &python) {
            (false, _) => Worker::Ours(ours.clone()),
            (true, Ok((python, _))) => Worker::Python(
                python.clone(),
                root.join("worker-bench/peers/python_embed.py"),
            ),
            (true, Err(_)) => continue,
        };
        eprintln!("embed: {}", config.name);
        let figures = measure(config, &binary, &model, options.quick).await;
        eprintln!("  {figures:?}");
        results.push((config, figures));
    }
    let out = render(
        &results,
        &python,
        &model,
        &ours,
        options.quick,
        &load_before,
        started.elapsed(),
    );
    println!("{out}");
    if options.write {
        crate::report::write_between(&root.join("BENCHMARKS.md"), &out, (BEGIN, END));
    }
}

enum Worker {
    Ours(PathBuf),
    Python(PathBuf, PathBuf),
}

/// Start one configuration on a fresh emulator and measure it.
async fn measure(mut config: Config, worker: &Worker, model: &Path, quick: bool) -> Figures {
    if config.concurrency == 0 {
        config.concurrency = std::thread::available_parallelism().map_or(1, |n| n.get());
    }
    let recorder = Arc::new(Recorder::default());
    let emulator = Emulator::builder()
        .bind("127.0.0.1:0")
        .take_timeout(Duration::from_secs(1))
        .ping_interval(Duration::from_secs(10))
        .worker_timeout(Duration::from_secs(120))
        .observer(recorder.clone())
        .build()
        .await
        .expect("the emulator starts");
    let mut figures = Figures::default();
    // The first job is queued before the worker starts: spawn → its result includes the load.
    let first = emulator
        .submit(json!({"input": {"text": "the first job"}}))
        .expect("submit");
    let mut cmd = match worker {
        Worker::Ours(binary) => Command::new(binary),
        Worker::Python(python, script) => {
            let mut cmd = Command::new(python);
            cmd.arg(script);
            cmd
        }
    };
    let log = std::fs::File::create(std::env::temp_dir().join(format!(
        "bench-embed-{}.log",
        config.name.replace([' ', ',', '`', '='], "")
    )))
    .expect("a log file");
    let spawned = Instant::now();
    let mut child = {
        use std::os::unix::process::CommandExt as _;
        cmd.envs(emulator.worker_env("bench"))
            .env("MODEL_DIR", model)
            .env("BENCH_CONCURRENCY", config.concurrency.to_string())
            .env("BENCH_BATCH", config.batch.to_string())
            .env("RUNPOD_LOG_LEVEL", "INFO")
            .env("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
            .env("RUNPOD_SKIP_GPU_CHECK", "true")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the worker starts")
    };
    let pgid = child.id();
    let deadline = spawned + Duration::from_secs(120);
    while !recorder.lock().finished.contains_key(&first) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    {
        let events = recorder.lock();
        figures.first_take_ms = events
            .first_take
            .map(|t| t.duration_since(spawned).as_secs_f64() * 1e3);
        figures.first_result_ms = events
            .finished
            .get(&first)
            .map(|t| t.duration_since(spawned).as_secs_f64() * 1e3);
    }
    if figures.first_result_ms.is_none() {
        eprintln!("  {} never finished its first job", config.name);
    } else {
        // Warm-up, then idle memory.
        let warm: Vec<String> = (0..2 * config.concurrency.max(config.batch))
            .map(|i| submit(&emulator, json!({"text": text(1_000_000 + i)})))
            .collect();
        wait_all(&recorder, &warm, Instant::now() + Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        figures.idle_rss_mb = Some(rss(pgid).0);

        // Model throughput alone: one job at a time with 1, 8 and 32 texts (the lower
        // concurrency of each worker, unbatched).
        if config.batch == 0
            && (config.concurrency == 1 || config.python && config.concurrency == 8)
        {
            for (slot, k) in [1usize, 8, 32].into_iter().enumerate() {
                let jobs = if quick { 3 } else { 8 };
                let mut seconds = 0.0;
                for j in 0..jobs {
                    let texts: Vec<String> =
                        (0..k).map(|t| text(2_000_000 + j * 100 + t)).collect();
                    let id = submit(&emulator, json!({ "texts": texts }));
                    wait_all(
                        &recorder,
                        std::slice::from_ref(&id),
                        Instant::now() + Duration::from_secs(60),
                    )
                    .await;
                    let events = recorder.lock();
                    if let (Some(h), Some(f)) = (events.handed.get(&id), events.finished.get(&id)) {
                        seconds += f.duration_since(*h).as_secs_f64();
                    }
                }
                if seconds > 0.0 {
                    figures.texts_per_s[slot] = Some((jobs * k) as f64 / seconds);
                }
            }
        }

        // One-text jobs, queued at once.
        let n = if quick { 300 } else { 2000 };
        let cap = Duration::from_secs(if quick { 20 } else { 90 });
        let queued = Instant::now();
        let ids: Vec<String> = (0..n)
            .map(|i| submit(&emulator, json!({"text": text(i)})))
            .collect();
        let submitted: HashMap<&str, Instant> =
            ids.iter().map(|id| (id.as_str(), queued)).collect();
        wait_all(&recorder, &ids, queued + cap).await;
        let events = recorder.lock();
        let mut latencies: Vec<f64> = ids
            .iter()
            .filter_map(|id| {
                let f = events.finished.get(id)?;
                Some(f.duration_since(submitted[id.as_str()]).as_secs_f64() * 1e3)
            })
            .collect();
        let first_handed = ids
            .iter()
            .filter_map(|id| events.handed.get(id))
            .min()
            .copied();
        let last_finished = ids
            .iter()
            .filter_map(|id| events.finished.get(id))
            .max()
            .copied();
        drop(events);
        figures.burst_jobs = n;
        figures.burst_done = latencies.len();
        if let (Some(a), Some(b)) = (first_handed, last_finished) {
            let secs = b.duration_since(a).as_secs_f64();
            if secs > 0.0 {
                figures.jobs_per_s = Some(latencies.len() as f64 / secs);
            }
        }
        if latencies.len() == n {
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| latencies[((n - 1) as f64 * q).round() as usize];
            figures.p50_ms = Some(at(0.5));
            figures.p99_ms = Some(at(0.99));
        }
        figures.peak_rss_mb = Some(rss(pgid).1);
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
    emulator.shutdown().await;
    figures
}

fn submit(emulator: &runpod_emulator::EmulatorHandle, input: Value) -> String {
    emulator.submit(json!({ "input": input })).expect("submit")
}

async fn wait_all(recorder: &Recorder, ids: &[String], deadline: Instant) {
    loop {
        let notified = recorder.finished.notified();
        let done = {
            let events = recorder.lock();
            ids.iter().all(|id| events.finished.contains_key(id))
        };
        if done || Instant::now() >= deadline {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The best of one side's figure (`pick`: `f64::max` or `f64::min`).
fn best(
    results: &[(Config, Figures)],
    python: bool,
    figure: impl Fn(&Figures) -> Option<f64>,
    pick: fn(f64, f64) -> f64,
) -> Option<f64> {
    results
        .iter()
        .filter(|(c, _)| c.python == python)
        .filter_map(|(_, f)| figure(f))
        .reduce(pick)
}

fn dir_mb(path: &Path) -> Option<f64> {
    let out = Command::new("du").arg("-sb").arg(path).output().ok()?;
    let bytes: f64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(bytes / 1e6)
}

fn render(
    results: &[(Config, Figures)],
    python: &Result<(PathBuf, Option<Duration>), String>,
    model: &Path,
    ours: &Path,
    quick: bool,
    load_before: &str,
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    out.push_str(BEGIN);
    out.push('\n');
    out.push_str(&format!(
        "Made by `cargo run --release -p worker-bench -- --embed{}`; {}; load average before: \
         {load_before}; took {:.0} s.\n\n",
        if quick { " --quick" } else { "" },
        crate::report::machine(),
        elapsed.as_secs_f64()
    ));
    out.push_str(
        "| worker | one-text jobs/s | p50 / p99 queue → result (ms) | texts/s at 1 / 8 / 32 texts per job | spawn → first take (ms) | spawn → first result (ms) | idle / peak RSS (MB) |\n|---|---|---|---|---|---|---|\n",
    );
    for (config, f) in results {
        let burst = if f.burst_done == f.burst_jobs {
            num(f.jobs_per_s)
        } else {
            format!(
                "{} ({} of {} done in the time cap)",
                num(f.jobs_per_s),
                f.burst_done,
                f.burst_jobs
            )
        };
        let texts = if f.texts_per_s.iter().any(Option::is_some) {
            f.texts_per_s
                .iter()
                .map(|v| num(*v))
                .collect::<Vec<_>>()
                .join(" / ")
        } else {
            "(see the row above)".into()
        };
        out.push_str(&format!(
            "| {} | {} | {} / {} | {} | {} | {} | {} / {} |\n",
            config.name,
            burst,
            num(f.p50_ms),
            num(f.p99_ms),
            texts,
            num(f.first_take_ms),
            num(f.first_result_ms),
            num(f.idle_rss_mb),
            num(f.peak_rss_mb),
        ));
    }
    let best_python = best(results, true, |f| f.jobs_per_s, f64::max);
    let batched = results
        .iter()
        .find(|(c, _)| c.batch > 0)
        .and_then(|(_, f)| f.jobs_per_s);
    out.push('\n');
    if let (Some(py), Some(ours)) = (best_python, batched) {
        out.push_str(&format!(
            "Batched one-text jobs/s against the Python worker's best configuration: **{:.1}×** \
             (target ≥ 4×).\n",
            ours / py
        ));
    }
    if let (Some(py), Some(ours)) = (
        best(results, true, |f| f.first_result_ms, f64::min),
        best(results, false, |f| f.first_result_ms, f64::min),
    ) {
        out.push_str(&format!(
            "Spawn → first result, model load included: ours {:.0} ms, Python {:.0} ms: **{:.2}** \
             of Python's (target ≤ 0.1).\n",
            ours,
            py,
            ours / py
        ));
    }
    if let (Some(py), Some(ours)) = (
        best(results, true, |f| f.peak_rss_mb, f64::max),
        best(results, false, |f| f.peak_rss_mb, f64::max),
    ) {
        out.push_str(&format!(
            "Peak RSS: ours at most {ours:.0} MB, Python at most {py:.0} MB: **{:.2}** of \
             Python's (target ≤ 0.25).\n",
            ours / py
        ));
    }
    let texts32 = |python: bool| {
        results
            .iter()
            .filter(|(c, _)| c.python == python)
            .find_map(|(_, f)| f.texts_per_s[2])
    };
    if let (Some(py), Some(ours)) = (texts32(true), texts32(false)) {
        out.push_str(&format!(
            "Texts/s in one model call of 32 texts: ours {ours:.0}, sentence-transformers \
             {py:.0}: **{:.2}×** (target ≥ 1×).\n",
            ours / py
        ));
    }
    let binary = ours
        .parent()
        .and_then(|release| crate::peers::stripped_mb(ours, release));
    let model_mb = dir_mb(model);
    out.push_str(&format!(
        "\nOn disk: our worker is a {} MB stripped binary plus the {} MB model directory; ",
        num(binary),
        num(model_mb)
    ));
    let image =
        |base: f64, parts: [Option<f64>; 2]| -> Option<f64> { Some(base + parts[0]? + parts[1]?) };
    let ours_image = image(DEBIAN_SLIM_BASE_MB, [binary, model_mb]);
    let mut python_image = None;
    match python {
        Ok((python, installed)) => {
            let venv = python.parent().and_then(Path::parent).and_then(dir_mb);
            python_image = image(PYTHON_BASE_MB, [venv, model_mb]);
            out.push_str(&format!(
                "the Python worker's venv (runpod {}, sentence-transformers {SENTENCE_TRANSFORMERS}, \
                 torch with its CUDA wheels from PyPI) is {} MB{}, plus the same model.\n",
                crate::peers::RUNPOD_PY,
                num(venv),
                match installed {
                    Some(took) => format!(", installed in {:.0} min this run", took.as_secs_f64() / 60.0),
                    None => String::new(),
                }
            ));
        }
        Err(why) => out.push_str(&format!("the Python worker was not measured: {why}.\n")),
    }
    out.push_str(&format!(
        "Image size, uncompressed (the base root filesystems as `scripts/rootfs-test.sh` and \
         `scripts/python-image-size.sh` measure them, {DEBIAN_SLIM_BASE_MB} MB Debian slim and \
         {PYTHON_BASE_MB} MB Debian with Python, plus what each worker installs and the model): \
         ours {} MB, Python {} MB{}.\n",
        num(ours_image),
        num(python_image),
        match (ours_image, python_image) {
            (Some(o), Some(p)) => format!(" ({:.0}× ours)", p / o),
            _ => String::new(),
        }
    ));
    out.push_str(
        "Every worker is a fresh process on a fresh emulator; one-text jobs are queued all at \
         once and timed from the platform side (queue → final result); texts/s is texts over \
         hand-out → result of one job at a time. Python's concurrency is its \
         `concurrency_modifier`; its handler runs `model.encode` in a thread.\n",
    );
    out.push_str(END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_deterministic_sentences() {
        assert_eq!(text(5), text(5));
        assert_ne!(text(5), text(6));
        for i in 0..100 {
            let words = text(i).split(' ').count();
            assert!((8..=20).contains(&words), "{words}");
        }
    }
}
