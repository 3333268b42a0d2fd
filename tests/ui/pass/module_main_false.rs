// A handler and its init in a module: `main = false` makes `worker_main`, with the handler's
// visibility, and the handler finds the init of its own module. An init that is unused by the
// handler (no state parameter) is still allowed.
mod api {
    pub struct Tokenizer;

    #[worker::init]
    pub fn load() -> Tokenizer {
        Tokenizer
    }

    #[worker::handler(main = false)]
    pub async fn tokenize(input: String, _tokenizer: &Tokenizer) -> Vec<String> {
        input.split(' ').map(str::to_owned).collect()
    }
}

mod stateless {
    struct Unused;

    #[worker::init]
    fn load() -> Unused {
        Unused
    }

    #[worker::handler(main = false)]
    pub fn ping(_input: serde_json::Value) -> &'static str {
        "pong"
    }
}

fn main() -> std::process::ExitCode {
    if std::env::args().count() > 100 {
        return stateless::worker_main();
    }
    let _ = api::worker_main;
    std::process::ExitCode::SUCCESS
}
