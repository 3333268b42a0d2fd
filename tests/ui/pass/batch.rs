// A batch handler: async, with state and the batch's jobs, returning one `Result` per input;
// its generated `main` runs the test input as a batch of one. A sync one returning
// `Result<Vec<_>, _>` type-checks beside it.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Prompt {
    text: String,
}

#[derive(Serialize)]
struct Output {
    shout: String,
    job: String,
}

struct Model {
    suffix: String,
}

#[worker::init]
async fn load() -> anyhow::Result<Model> {
    Ok(Model { suffix: "!".into() })
}

#[worker::handler(batch = 16, batch_wait = "2ms", concurrency = 2)]
async fn generate(
    prompts: Vec<Prompt>,
    model: &Model,
    jobs: &[worker::Job],
) -> Vec<anyhow::Result<Output>> {
    prompts
        .into_iter()
        .zip(jobs)
        .map(|(Prompt { text }, job)| {
            anyhow::ensure!(!text.is_empty(), "empty text");
            Ok(Output { shout: text.to_uppercase() + &model.suffix, job: job.id().to_owned() })
        })
        .collect()
}

mod sync_batch {
    #[worker::handler(batch = 4, main = false)]
    fn lengths(texts: Vec<String>, jobs: Vec<worker::Job>) -> Result<Vec<usize>, std::io::Error> {
        assert_eq!(texts.len(), jobs.len());
        Ok(texts.iter().map(String::len).collect())
    }

    #[allow(dead_code)]
    fn typed() {
        let _: fn() -> std::process::ExitCode = worker_main;
    }
}
