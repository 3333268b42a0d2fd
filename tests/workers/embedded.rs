//! A program with its own `main` and no macros, for tests/e2e.rs: the platform comes from its
//! command line (`NAME=VALUE` pairs, as RunPod's variables are named), not the environment; its
//! state from `Worker::with_init`; and it prints what `try_run` returned, then exits 3 on an
//! error (its own choice: the library never exits the process).
//!
//! `FIXTURE_INIT_FAIL` makes init fail. A job's input is how many milliseconds to sleep.

use std::time::Duration;

use worker::{Platform, Worker};

struct Greeting(&'static str);

async fn load() -> Result<Greeting, std::io::Error> {
    worker::tracing::info!("loading the greeting");
    if std::env::var_os("FIXTURE_INIT_FAIL").is_some() {
        return Err(std::io::Error::other("no greeting today"));
    }
    Ok(Greeting("slept"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let platform = Platform::from_vars(std::env::args().skip(1).filter_map(|arg| {
        arg.split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    }));
    let worker = Worker::with_init(load(), |greeting: &'static Greeting| {
        worker::handler_fn(move |ms: u64, _job: worker::Job| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, std::convert::Infallible>(greeting.0)
        })
    })
    .platform(platform)
    .contract::<u64, String>()
    .shutdown_grace(Duration::from_secs(30));
    match worker.try_run().await {
        Ok(()) => {
            println!("try_run returned Ok");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("try_run returned {:?}: {e}", e.kind());
            std::process::ExitCode::from(3)
        }
    }
}
