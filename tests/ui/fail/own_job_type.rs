// A user's own types named `Job` or `StreamSender` are taken by their names for the job context
// and the stream; each message says how to take such a type as the input instead. Written from
// the crate root they are inputs (pass/own_job_type.rs).
#[derive(serde::Deserialize)]
pub struct Job {
    pub name: String,
}

#[derive(serde::Deserialize)]
pub struct StreamSender {
    pub to: String,
}

mod only_a_job {
    use super::Job;

    #[worker::handler(main = false)]
    pub async fn run(job: Job) -> String {
        job.name
    }
}

mod job_beside_an_input {
    use super::Job;

    #[worker::handler(main = false)]
    pub async fn run(input: String, job: Job) -> String {
        format!("{input}{}", job.name)
    }
}

mod own_stream_sender {
    use super::StreamSender;

    #[worker::handler(main = false)]
    pub async fn run(input: String, sender: StreamSender) -> String {
        format!("{input}{}", sender.to)
    }
}

fn main() {}
