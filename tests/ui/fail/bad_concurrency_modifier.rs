// A function or a constant of the wrong type for `concurrency = …` is reported on it, in words.
mod function {
    fn scale(current: u32) -> u32 {
        current
    }

    #[worker::handler(main = false, concurrency = scale)]
    pub async fn echo(input: String) -> String {
        input
    }
}

mod constant {
    const JOBS: u32 = 4;

    #[worker::handler(main = false, concurrency = JOBS)]
    pub async fn echo(input: String) -> String {
        input
    }
}

fn main() {}
