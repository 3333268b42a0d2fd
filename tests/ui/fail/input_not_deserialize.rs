struct Prompt {
    text: String,
}

#[worker::handler]
async fn generate(input: Prompt) -> String {
    input.text
}
