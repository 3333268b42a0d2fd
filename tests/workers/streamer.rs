//! A streaming worker for the fault tests: the input is a count `n`; the job streams the
//! items `0..n`, one chunk each.

use worker::{StreamError, StreamSender};

#[worker::handler(concurrency = 4)]
async fn count(n: u32, stream: StreamSender<u32>) -> Result<(), StreamError> {
    for i in 0..n {
        stream.send(i).await?;
    }
    Ok(())
}
