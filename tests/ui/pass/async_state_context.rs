// The full shape: async init returning `anyhow::Result`, async handler with input, state and
// job context in any order.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

#[derive(Serialize)]
struct Output {
    shout: String,
}

struct Model {
    suffix: String,
}

#[worker::init]
async fn load() -> anyhow::Result<Model> {
    Ok(Model { suffix: "!".into() })
}

#[worker::handler(main = false)]
async fn generate(job: &worker::Job, model: &Model, Prompt { text }: Prompt) -> anyhow::Result<Output> {
    anyhow::ensure!(!job.id().is_empty(), "no id");
    Ok(Output { shout: text.to_uppercase() + &model.suffix })
}

fn main() {
    let _: fn() -> std::process::ExitCode = worker_main;
}
