// `test_input = "…"` embeds a file relative to the package directory (in trybuild, its generated
// project, where tests/ui.rs writes `test_input.json`).
#[worker::handler(test_input = "test_input.json")]
async fn echo(input: serde_json::Value) -> serde_json::Value {
    input
}
