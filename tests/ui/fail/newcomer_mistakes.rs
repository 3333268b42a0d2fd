// Mistakes a newcomer makes, each said in words on its token: `#[tokio::main]` stacked on the
// handler, an init written as `fn … -> impl Future`, the state taken as the init's `Result`, a
// stream of borrowed items.
mod stacked {
    #[worker::handler(main = false)]
    #[tokio::main]
    pub async fn run(input: String) -> String {
        input
    }
}

mod future_init {
    pub struct Model;

    #[worker::init]
    fn load() -> impl std::future::Future<Output = Model> {
        async { Model }
    }

    #[worker::handler(main = false)]
    pub fn run(input: String, _model: &Model) -> String {
        input
    }
}

mod result_state {
    pub struct Model;

    #[worker::init]
    fn load() -> anyhow::Result<Model> {
        Ok(Model)
    }

    #[worker::handler(main = false)]
    pub fn run(input: String, _model: &anyhow::Result<Model>) -> String {
        input
    }
}

mod borrowed_items {
    #[worker::handler(main = false)]
    pub async fn run(input: String, stream: worker::StreamSender<&str>) {
        let _ = (input, stream);
    }
}

fn main() {}
