fn scale(current: u32) -> u32 {
    current
}

#[worker::handler(concurrency = scale)]
async fn echo(input: String) -> String {
    input
}
