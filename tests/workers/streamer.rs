//! A streaming worker for the fault tests: the input is a count `n`; the job streams the
//! items `0..n`, one chunk each. It runs on the single-threaded runtime (`flavor =
//! "current_thread"`), so the fault tests cover that flavor: four jobs, their chunk posts,
//! results and the job loop all on one thread. `{"n": …, "fail": "…"}` logs each item and
//! fails after the last with that message.

use serde::Deserialize;
use worker::StreamSender;

#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    Plain(u32),
    Failing { n: u32, fail: String },
}

#[worker::handler(concurrency = 4, flavor = "current_thread")]
async fn count(input: Count, stream: StreamSender<u32>) -> anyhow::Result<()> {
    let (n, fail) = match input {
        Count::Plain(n) => (n, None),
        Count::Failing { n, fail } => (n, Some(fail)),
    };
    for i in 0..n {
        stream.send(i).await?;
        if fail.is_some() {
            worker::tracing::info!("sent item {i}");
        }
    }
    match fail {
        Some(message) => Err(anyhow::anyhow!(message)),
        None => Ok(()),
    }
}
