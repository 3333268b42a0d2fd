// A sync init returning the state itself (no `Result`), and a sync handler returning
// `Result<_, std::io::Error>` that borrows it. Runs one local job through the generated `main`.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

#[derive(Serialize)]
struct Output {
    text: String,
    calls: u64,
}

struct Model {
    suffix: String,
    calls: std::sync::atomic::AtomicU64,
}

#[worker::init]
fn load() -> Model {
    Model {
        suffix: "!".into(),
        calls: Default::default(),
    }
}

#[worker::handler]
fn generate(model: &Model, input: Prompt) -> Result<Output, std::io::Error> {
    let calls = model.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    Ok(Output {
        text: input.text + &model.suffix,
        calls,
    })
}
