#[worker::handler]
async fn generate(prompt: String, max_tokens: u32) -> String {
    prompt.repeat(max_tokens as usize)
}
