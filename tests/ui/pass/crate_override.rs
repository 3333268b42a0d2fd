// `crate = "…"`: the generated code names the runtime through the given path.
extern crate worker as my_worker;

struct Model;

#[my_worker::init(crate = "my_worker")]
async fn load() -> Result<Model, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Model)
}

#[my_worker::handler(crate = "my_worker", main = false)]
async fn handle(input: String, _model: &Model, job: &my_worker::Job) -> anyhow::Result<String> {
    Ok(format!("{input} {}", job.id()))
}

fn main() {
    let _ = worker_main;
}
