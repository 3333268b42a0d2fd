//! The examples' own unit tests, which call the annotated handlers as plain functions (the way
//! a user's tests would). Examples are built as binaries by `cargo test`; their `#[cfg(test)]`
//! modules run here.

#[path = "../examples/model/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod model;

#[path = "../examples/stream/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod stream;
