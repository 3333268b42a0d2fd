//! A streaming worker for the fault tests: the input is a count `n`; the job streams the
//! items `0..n`, one chunk each. It runs on the single-threaded runtime (`flavor =
//! "current_thread"`), so the fault tests cover that flavor: four jobs, their chunk posts,
//! results and the job loop all on one thread.

use worker::{StreamError, StreamSender};

#[worker::handler(concurrency = 4, flavor = "current_thread")]
async fn count(n: u32, stream: StreamSender<u32>) -> Result<(), StreamError> {
    for i in 0..n {
        stream.send(i).await?;
    }
    Ok(())
}
