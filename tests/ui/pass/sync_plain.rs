// A sync handler with no state, returning a plain (non-`Result`) value. It keeps the generated
// `fn main`, so trybuild runs it: one local test job from `./test_input.json` (see tests/ui.rs).
use serde::Deserialize;

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

#[worker::handler]
fn shout(input: Prompt) -> String {
    input.text.to_uppercase()
}
