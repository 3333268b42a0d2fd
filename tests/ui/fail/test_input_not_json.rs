// A built-in test input that is not JSON (here a trailing comma; tests/ui.rs writes the file)
// is a compile error on the string, saying where, instead of a failed local run later.
#[worker::handler(test_input = "bad_test_input.json")]
async fn echo(input: serde_json::Value) -> serde_json::Value {
    input
}
