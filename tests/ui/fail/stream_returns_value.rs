use worker::StreamSender;

#[worker::handler]
async fn count(to: u32, stream: StreamSender<u32>) -> Result<u32, worker::StreamError> {
    for n in 0..to {
        stream.send(n).await?;
    }
    Ok(to)
}
