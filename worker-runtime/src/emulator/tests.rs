//! The real worker loop (`worker::run`) against the emulator, in process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Emulator, EmulatorHandle};
use crate::handler::handler_fn;
use crate::job::Job;
use crate::limits::Limits;
use crate::shutdown;
use crate::worker::{self, Concurrency, InFlight, LoopOptions};

async fn post(url: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn emulator() -> EmulatorHandle {
    Emulator::builder()
        .bind("127.0.0.1:0")
        .take_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_loop_runs_jobs_from_the_emulator() {
    let emulator = emulator().await;
    let cfg = emulator.platform_config("w-loop").unwrap();
    let client = crate::client::build(&cfg.api_key).unwrap();
    let echo = handler_fn(|input: Value, job: Job| async move {
        if input == json!("fail") {
            return Err(std::io::Error::other(format!("failing {}", job.id())));
        }
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(json!({ "echo": input }))
    });
    let (trigger, stop) = shutdown::channel();
    let options = LoopOptions {
        concurrency: Concurrency::Fixed(2),
        refresh_worker: false,
        aggregate_stream: false,
    };
    let loop_task = tokio::spawn(worker::run(
        echo,
        cfg,
        client,
        Arc::new(InFlight::default()),
        options,
        Limits::default(),
        (trigger.clone(), stop),
    ));

    let base = emulator.endpoint_url();
    let done = post(&format!("{base}/runsync"), json!({"input": {"x": 1}})).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["output"], json!({"echo": {"x": 1}}));
    assert_eq!(done["workerId"], "w-loop");
    assert!(done["delayTime"].is_u64() && done["executionTime"].is_u64());

    let failed = post(&format!("{base}/runsync"), json!({"input": "fail"})).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let report: Value = serde_json::from_str(failed["error"].as_str().unwrap()).unwrap();
    assert!(
        report["error_message"]
            .as_str()
            .unwrap()
            .starts_with("failing sync-")
    );

    // Concurrency 2: two slow jobs run side by side.
    let started = std::time::Instant::now();
    let ids: Vec<String> = futures_join(&base).await;
    assert_eq!(ids.len(), 2);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), loop_task)
        .await
        .expect("the loop stops")
        .unwrap();
    emulator.shutdown().await;
}

/// Two runsync calls with 800 ms jobs at once; returns their ids.
async fn futures_join(base: &str) -> Vec<String> {
    let url = format!("{base}/runsync");
    let body = json!({"input": {"sleep_ms": 800}});
    let (a, b) = tokio::join!(post(&url, body.clone()), post(&url, body));
    [a, b]
        .iter()
        .map(|v| {
            assert_eq!(v["status"], "COMPLETED", "{v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}
