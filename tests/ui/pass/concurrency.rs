// `concurrency = 4` with an async handler and an async init; runs one local job through the
// generated `main`.
use serde::Deserialize;

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

struct Greeting(String);

#[worker::init]
async fn load() -> anyhow::Result<Greeting> {
    Ok(Greeting("hello".into()))
}

#[worker::handler(concurrency = 4)]
async fn greet(Prompt { text }: Prompt, greeting: &Greeting) -> anyhow::Result<String> {
    Ok(format!("{} {text}", greeting.0))
}
