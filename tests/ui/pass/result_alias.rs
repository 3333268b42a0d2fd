// A type alias of `Result` whose error type is not `Serialize`: this only compiles because
// `Result` returns are told apart through traits, not by the spelling `Result`.
use std::fmt;

#[derive(Debug)]
struct MyError;

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("my error")
    }
}

type Outcome<T> = Result<T, MyError>;

#[worker::handler(main = false)]
async fn count(input: Vec<u32>) -> Outcome<usize> {
    if input.is_empty() { Err(MyError) } else { Ok(input.len()) }
}

// Errors that are only `Display` are accepted too.
mod display_only {
    #[worker::handler(main = false)]
    pub fn display_only(input: String) -> Result<String, String> {
        Err(input)
    }
}

fn main() {
    let _ = worker_main;
    let _ = display_only::worker_main;
    let _ = count(vec![1]);
}
