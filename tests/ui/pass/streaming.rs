// Streaming handlers: an async one sending through `&StreamSender`, returning `Result<(), E>`,
// with `return_aggregate_stream`, a dynamic `concurrency` and `refresh_worker`; a sync one
// using `send_blocking` and returning `()`. Runs one local job through the generated `main`.
use serde::Deserialize;
use worker::{StreamError, StreamSender};

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

fn scale(current: usize) -> usize {
    (current + 1).min(4)
}

#[worker::handler(return_aggregate_stream, concurrency = scale, refresh_worker = false)]
async fn words(input: Prompt, stream: &StreamSender<String>, job: &worker::Job) -> Result<(), StreamError> {
    for word in input.text.split_whitespace() {
        stream.send(format!("{word}@{}", job.id())).await?;
    }
    Ok(())
}

mod blocking {
    use worker::StreamSender;

    #[worker::handler(main = false, refresh_worker)]
    pub fn letters(input: String, stream: StreamSender<char>) {
        for c in input.chars() {
            let _ = stream.send_blocking(c);
        }
    }
}

#[allow(dead_code)]
fn uses() {
    let _ = blocking::worker_main;
}
