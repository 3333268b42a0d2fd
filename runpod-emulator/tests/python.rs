//! The emulator against the official Python SDK's serverless worker (runpod 1.12.0): results,
//! error reports, progress, cancellation and streaming from real SDK worker processes.
//! `tests/support/python.rs` installs the SDK (or says why the tests skip).

#![cfg(unix)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runpod_emulator::EmulatorHandle;
use serde_json::{Value, json};

#[path = "support/python.rs"]
#[macro_use]
mod python;
use python::{Client, Process, RUNPOD_VERSION, emulator, eventually, scratch_home};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join(name)
}

fn python_worker(python: &Path, emulator: &EmulatorHandle, id: &str, handler: &str) -> Process {
    let log =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{id}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(python)
        .arg(script("worker.py"))
        .process_group(0)
        .envs(emulator.worker_env(id))
        .env("HANDLER", handler)
        .env("HOME", scratch_home(id))
        .env("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
        .env("RUNPOD_SKIP_GPU_CHECK", "true")
        .env("RUNPOD_LOG_LEVEL", "INFO")
        .env("PYTHONUNBUFFERED", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("python starts");
    Process { child, log }
}

/// (b) Two Python SDK worker processes serving one emulator: results, error reports,
/// progress updates, cancellation through job-stop, and health counting both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_workers_against_the_emulator() {
    let python = python_or_skip!();
    let emulator = emulator().await;
    let workers = [
        python_worker(&python, &emulator, "py-1", "plain"),
        python_worker(&python, &emulator, "py-2", "plain"),
    ];
    let logs = || {
        workers
            .iter()
            .map(Process::log)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let client = Client::new(&emulator);
    let c = &client;

    eventually(
        "both workers to connect",
        Duration::from_secs(30),
        &logs,
        move || async move {
            let health = c.call(false, "health", None).await;
            (health["workers"]["idle"] == 2).then_some(())
        },
    )
    .await;

    let done = client
        .call(true, "runsync", Some(json!({"input": {"x": 1}})))
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}\n{}", logs());
    assert_eq!(done["output"]["echo"], json!({"x": 1}));
    assert!(done["delayTime"].is_u64() && done["executionTime"].is_u64());

    let failed = client
        .call(true, "runsync", Some(json!({"input": {"fail": true}})))
        .await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let report: Value = serde_json::from_str(failed["error"].as_str().unwrap()).unwrap();
    assert_eq!(report["error_type"], "<class 'ValueError'>");
    assert_eq!(report["error_message"], "boom");
    assert_eq!(report["runpod_version"], RUNPOD_VERSION);

    // progress_update shows as output while the job runs.
    let job = client
        .call(true, "run", Some(json!({"input": {"progress": 1.5}})))
        .await;
    let status_path = format!("status/{}", job["id"].as_str().unwrap());
    let sp = status_path.as_str();
    eventually(
        "the progress update",
        Duration::from_secs(5),
        &logs,
        move || async move {
            let v = c.call(false, sp, None).await;
            (v["status"] == "IN_PROGRESS" && v["output"] == json!({"pct": 50})).then_some(())
        },
    )
    .await;
    let v = eventually(
        "the job to complete",
        Duration::from_secs(5),
        &logs,
        move || async move {
            let v = c.call(false, sp, None).await;
            (v["status"] == "COMPLETED").then_some(v)
        },
    )
    .await;
    assert_eq!(v["output"]["echo"], json!({"progress": 1.5}));

    // Cancel a running job: the worker stops it through job-stop and stays available.
    let held = client
        .call(true, "run", Some(json!({"input": {"hold": true}})))
        .await;
    let held_id = held["id"].as_str().unwrap().to_owned();
    let held_path = format!("status/{held_id}");
    let hp = held_path.as_str();
    eventually(
        "the held job to start",
        Duration::from_secs(5),
        &logs,
        move || async move {
            let v = c.call(false, hp, None).await;
            (v["status"] == "IN_PROGRESS").then_some(())
        },
    )
    .await;
    let v = client.call(true, &format!("cancel/{held_id}"), None).await;
    assert_eq!(v["status"], "CANCELLED");
    let logs_ref = &logs;
    eventually(
        "the worker to stop the job",
        Duration::from_secs(5),
        &logs,
        move || async move { logs_ref().contains("Job stopped.").then_some(()) },
    )
    .await;
    let (a, b) = tokio::join!(
        client.call(true, "runsync", Some(json!({"input": {"n": 1}}))),
        client.call(true, "runsync", Some(json!({"input": {"n": 2}})))
    );
    assert_eq!(
        (&a["status"], &b["status"]),
        (&json!("COMPLETED"), &json!("COMPLETED"))
    );
    assert_eq!(client.call(false, hp, None).await["status"], "CANCELLED");
    let health = client.call(false, "health", None).await;
    assert_eq!(health["jobs"]["failed"], 1);
    assert_eq!(health["workers"]["idle"], 2, "{health}");
    drop(workers);
    emulator.shutdown().await;
}

/// (b) A Python SDK generator worker: chunks through job-stream, the aggregate as output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_streaming_worker_against_the_emulator() {
    let python = python_or_skip!();
    let emulator = emulator().await;
    let worker = python_worker(&python, &emulator, "py-stream", "stream");
    let logs = || worker.log();
    let client = Client::new(&emulator);
    let c = &client;
    let job = client
        .call(
            true,
            "run",
            Some(json!({"input": {"chunks": ["a", {"b": 2}, "c"]}})),
        )
        .await;
    let stream_path = format!("stream/{}", job["id"].as_str().unwrap());
    let sp = stream_path.as_str();
    let chunks = std::sync::Mutex::new(Vec::new());
    let cs = &chunks;
    // Each poll returns only new chunks; the end is `stream: []` with a final status.
    let final_status = eventually(
        "the stream to end",
        Duration::from_secs(30),
        &logs,
        move || async move {
            let v = c.call(false, sp, None).await;
            let fresh = v["stream"].as_array().unwrap().clone();
            let end = fresh.is_empty() && v["status"] != "IN_QUEUE" && v["status"] != "IN_PROGRESS";
            cs.lock()
                .unwrap()
                .extend(fresh.into_iter().map(|c| c["output"].clone()));
            end.then(|| v["status"].clone())
        },
    )
    .await;
    assert_eq!(final_status, "COMPLETED", "{}", logs());
    assert_eq!(
        chunks.into_inner().unwrap(),
        [json!("a"), json!({"b": 2}), json!("c")]
    );
    let status = client
        .call(
            false,
            &format!("status/{}", job["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status["output"], json!(["a", {"b": 2}, "c"]));
    drop(worker);
    emulator.shutdown().await;
}
