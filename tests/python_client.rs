//! The official Python SDK's client (`runpod.Endpoint`, runpod 1.12.0) against the emulator,
//! with our `echo`, `stream` and `hello` examples serving it as real processes. The SDK's venv
//! comes from the emulator crate's Python test support.

#![cfg(unix)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use runpod_emulator::EmulatorHandle;

#[path = "../runpod-emulator/tests/support/python.rs"]
#[macro_use]
mod python;
mod support;
use python::{Process, emulator, scratch_home};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join(name)
}

/// One of the repository's example workers (built by `cargo test --workspace`), serving
/// `emulator` as a real process.
fn example_worker(emulator: &EmulatorHandle, name: &str, env: &[(&str, &str)]) -> Process {
    let path = support::example(name);
    let log =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(path)
        .process_group(0)
        .envs(emulator.worker_env(name))
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the example starts");
    Process { child, log }
}

/// (a) `runpod.Endpoint` against the emulator, with our `echo`, `stream` and `hello` examples
/// serving it: run_sync, run, output, status, stream, health, purge_queue and cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_against_our_examples() {
    let python = python_or_skip!();
    for (example, env) in [
        ("echo", &[][..]),
        ("stream", &[("TOKEN_DELAY_MS", "20")][..]),
        ("hello", &[("SLEEP_TIME", "2")][..]),
    ] {
        let emulator = emulator().await;
        let worker = example_worker(&emulator, example, env);
        let (python, url, home) = (
            python.clone(),
            emulator.url().to_owned(),
            scratch_home(example),
        );
        let out = tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script("client.py"))
                .env("EMULATOR_URL", url)
                .env("ENDPOINT_ID", "local")
                .env("API_KEY", "py-key")
                .env("CHECKS", example)
                .env("HOME", home)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("all client checks passed"),
            "client.py against {example} failed:\n{text}\n--- worker log ---\n{}",
            worker.log()
        );
        drop(worker);
        emulator.shutdown().await;
    }
}
