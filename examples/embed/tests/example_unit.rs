//! The example's own unit tests (the request checks), which call its functions as plain
//! functions. The example is built as a binary for tests/embed.rs; its `#[cfg(test)]` module
//! runs here.

#[path = "../main.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;
