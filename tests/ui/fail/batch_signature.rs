// What `batch` does not go with, all reported at once: a zero size, a wait that is not a
// duration, an input that is not a `Vec`, one job's context, a stream; and the batch context
// or a wait on a handler of one job.
use worker::{Job, StreamSender};

mod zero_and_bad_wait {
    #[worker::handler(batch = 0, batch_wait = "soon", main = false)]
    fn lengths(texts: Vec<String>) -> Vec<usize> {
        texts.iter().map(String::len).collect()
    }
}

mod not_a_vec {
    #[worker::handler(batch = 8, main = false)]
    fn length(text: String) -> Vec<usize> {
        vec![text.len()]
    }
}

mod one_job_context_and_stream {
    use super::*;

    #[worker::handler(batch = 8, main = false)]
    async fn lengths(texts: Vec<String>, job: &Job, stream: StreamSender<usize>) {
        let _ = (texts, job, stream);
    }
}

mod batch_context_without_batch {
    use super::*;

    #[worker::handler(batch_wait = "5ms", main = false)]
    fn length(text: String, jobs: &[Job]) -> usize {
        let _ = jobs;
        text.len()
    }
}

fn main() {}
