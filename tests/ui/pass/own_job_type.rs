// A user's own `Job` written from the crate root is the input, not the job context; the job
// context is still `worker::Job`.
#[derive(serde::Deserialize)]
pub struct Job {
    pub name: String,
}

#[worker::handler(main = false)]
async fn run(input: crate::Job, context: &worker::Job) -> String {
    format!("{} for {}", input.name, context.id())
}

fn main() {
    let _ = worker_main;
}
