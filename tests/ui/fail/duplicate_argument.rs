#[worker::handler(concurrency = 2, concurrency = 4)]
async fn generate(input: String) -> String {
    input
}
