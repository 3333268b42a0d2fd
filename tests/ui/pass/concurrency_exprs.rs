// `concurrency = …` takes a number of jobs (a literal, a `const`, any `usize` expression) or a
// function of the current concurrency (a `fn` path, or a closure: the common "from the
// environment" case in one line). The generated `main` runs the closure's worker.
const MAX_JOBS: usize = 4;

mod constant {
    #[worker::handler(main = false, concurrency = super::MAX_JOBS)]
    pub async fn a(input: String) -> String {
        input
    }
}

mod expression {
    #[worker::handler(main = false, concurrency = super::MAX_JOBS * 2)]
    pub async fn b(input: String) -> String {
        input
    }
}

mod scaling {
    fn scale(current: usize) -> usize {
        (current * 2).min(16)
    }

    #[worker::handler(main = false, concurrency = scale)]
    pub async fn c(input: String) -> String {
        input
    }
}

#[worker::handler(
    concurrency = |_| std::env::var("CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
)]
async fn from_env(input: serde_json::Value) -> serde_json::Value {
    let _ = (constant::worker_main, expression::worker_main, scaling::worker_main);
    input
}
