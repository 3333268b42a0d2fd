//! Calling an endpoint from Rust: the typed client (`worker::client`) sends reviews to the
//! `model` worker and reads its sentiments, with the worker's own input and output types
//! (`examples/model/types.rs`, shared by both).
//!
//! ```text
//! cargo run --example model -- --rp_serve_api &     # the worker, serving RunPod's API on :8000
//! cargo run --example call                           # this caller
//! cargo run --example call -- "what a lovely day" "slow and rude"
//! ```
//!
//! Against RunPod, point it at your endpoint: `RUNPOD_ENDPOINT_ID=abc123 RUNPOD_API_KEY=…
//! RUNPOD_ENDPOINT_BASE_URL=https://api.runpod.ai/v2 cargo run --example call`.

use std::time::Duration;

use worker::client::Endpoint;

#[path = "../model/types.rs"]
mod types;
use types::{Review, Sentiment};

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = setting("RUNPOD_ENDPOINT_BASE_URL", "http://127.0.0.1:8000/v2");
    let id = setting("RUNPOD_ENDPOINT_ID", "local");
    let key = setting("RUNPOD_API_KEY", "");
    let endpoint = Endpoint::<Review, Sentiment>::builder(&id, &key)
        .base_url(&base)
        .build()?;
    let mut texts: Vec<String> = std::env::args().skip(1).collect();
    if texts.is_empty() {
        texts = vec![
            "The food was great and the staff friendly".into(),
            "slow, cold and rude".into(),
            "it was fine".into(),
        ];
    }
    let wait = Duration::from_secs(60);

    // One call that waits for its answer (RunPod's /runsync).
    let first = Review {
        explain: true,
        ..Review::of(&texts[0])
    };
    let sentiment = endpoint.run_sync(&first, wait).await?;
    println!(
        "{:?}: {} ({:+.2})",
        first.text, sentiment.label, sentiment.score
    );
    for (word, weight) in sentiment.explanation.unwrap_or_default() {
        println!("  {word}: {weight:+}");
    }

    // The rest queued at once (/run), then each waited for (/status).
    let mut jobs = Vec::new();
    for text in &texts[1..] {
        jobs.push((text, endpoint.run(&Review::of(text)).await?));
    }
    for (text, job) in jobs {
        let sentiment = job.wait(wait).await?;
        println!("{text:?}: {} ({:+.2})", sentiment.label, sentiment.score);
    }

    // A review the worker refuses (an empty text breaks its `length(min = 1)`): the job fails,
    // and the error says why without taking the caller down.
    match endpoint.run_sync(&Review::of(""), wait).await {
        Ok(sentiment) => println!("an empty review scored {sentiment:?}"),
        Err(error) => match error.job_error() {
            Some(job) => println!("refused: {}", job.message),
            None => return Err(error.into()),
        },
    }

    let health = endpoint.health().await?;
    println!(
        "endpoint `{}`: {} jobs completed, {} failed",
        endpoint.id(),
        health.jobs.completed,
        health.jobs.failed
    );
    Ok(())
}
