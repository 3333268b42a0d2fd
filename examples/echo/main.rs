//! The smallest worker: it returns its input unchanged. The input is any JSON.
//!
//! ```text
//! cargo run --example echo                                   # built-in test input
//! cargo run --example echo -- --test_input '{"input": [1, 2, 3]}'
//! ```

#[worker::handler(test_input = "examples/echo/test_input.json")]
async fn echo(input: worker::Value) -> worker::Value {
    input
}
