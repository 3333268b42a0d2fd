#[worker::handler]
async fn generate(job: &worker::Job) -> String {
    job.id().to_owned()
}
