struct Reply {
    text: String,
}

#[worker::handler]
async fn generate(input: String) -> anyhow::Result<Reply> {
    Ok(Reply { text: input })
}
