//! The README's "Testing your worker", as written there: a unit test that calls the handler and
//! init directly with a test `Job`, and an integration test that runs a worker binary against
//! the emulator in the test's process, reading the job's end from the emulator handle (no HTTP
//! client). The worker binary here is the e2e fixture; the README's is `my-worker`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

#[derive(Serialize)]
struct Reply {
    words: usize,
}

struct Model {}

#[worker::init]
async fn load() -> anyhow::Result<Model> {
    Ok(Model {})
}

#[worker::handler(main = false)]
async fn generate(input: Prompt, model: &Model) -> anyhow::Result<Reply> {
    let _ = model;
    Ok(Reply {
        words: input.text.split_whitespace().count(),
    })
}

/// A streaming handler (a module of its own: one handler per module), to read what it
/// streamed from the test job.
mod stream_words {
    #[worker::handler(main = false)]
    pub(crate) async fn shout(
        input: super::Prompt,
        stream: worker::StreamSender<String>,
    ) -> Result<(), worker::StreamError> {
        for word in input.text.split_whitespace() {
            stream.send(word.to_uppercase()).await?;
        }
        Ok(())
    }
}

/* ---- the README's unit tests ---- */

/// The generated entry points exist (a binary's `main` would call them).
#[test]
fn the_entry_points_are_generated() {
    let _: fn() -> std::process::ExitCode = worker_main;
    let _: fn() -> std::process::ExitCode = stream_words::worker_main;
}

#[tokio::test]
async fn counts_words() {
    let model = load().await.unwrap();
    let reply = generate(
        Prompt {
            text: "a b c".into(),
        },
        &model,
    )
    .await
    .unwrap();
    assert_eq!(reply.words, 3);
}

#[tokio::test]
async fn progress_and_cancel() {
    let job = worker::Job::new("test-1", worker::json!({}));
    job.progress(&worker::json!({"step": 1}));
    assert_eq!(job.progress_updates(), [worker::json!({"step": 1})]);
    job.cancel();
    assert!(job.is_cancelled());
}

#[tokio::test]
async fn a_test_job_keeps_what_was_streamed() {
    let job = worker::Job::new("test-2", worker::json!({}));
    stream_words::shout(
        Prompt { text: "a b".into() },
        worker::StreamSender::new(&job),
    )
    .await
    .unwrap();
    assert_eq!(job.streamed(), [worker::json!("A"), worker::json!("B")]);
}

/// A cancelled test job's `cancelled()` resolves, so a handler racing it can be tested.
#[tokio::test]
async fn a_cancel_wakes_the_handler() {
    let job = worker::Job::new("test-3", worker::json!({}));
    let waiting = {
        let job = job.clone();
        tokio::spawn(async move { job.cancelled().await })
    };
    job.cancel();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("cancelled() resolves after cancel()")
        .unwrap();
}

/* ---- the README's integration test ---- */

#[tokio::test]
async fn a_job_runs_through_the_production_loop() {
    let emulator = runpod_emulator::Emulator::builder()
        .bind("127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_fixture-worker"))
        .envs(emulator.worker_env("test-worker"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = emulator
        .submit(worker::json!({"input": {"echo": {"value": {"words": 3}}}}))
        .unwrap();
    let job = emulator
        .finished(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["output"], worker::json!({"words": 3}));
    assert_eq!(emulator.status(&id).unwrap()["status"], "COMPLETED");
    worker.kill().unwrap();
    let _ = worker.wait();
}

/// `finished` gives up with an error saying so when the job does not end in time.
#[tokio::test]
async fn finished_times_out_with_a_message() {
    let emulator = runpod_emulator::Emulator::builder()
        .bind("127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let id = emulator.submit(worker::json!({"input": 1})).unwrap();
    let err = emulator
        .finished(&id, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("still IN_QUEUE after 50ms"),
        "{err}"
    );
    assert!(emulator.status("no-such-job").is_none());
}
