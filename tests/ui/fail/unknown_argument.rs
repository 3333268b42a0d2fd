#[worker::handler(concurency = 4)]
async fn generate(input: String) -> String {
    input
}
