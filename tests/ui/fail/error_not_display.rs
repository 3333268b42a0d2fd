// An error type that is not `Display` cannot be reported: said once, on the return type, in
// words, for a handler, a streaming handler and an init.
#[derive(Debug)]
pub struct Oops;

mod plain {
    #[worker::handler(main = false)]
    pub async fn run(input: String) -> Result<String, super::Oops> {
        Ok(input)
    }
}

mod streaming {
    #[worker::handler(main = false)]
    pub async fn run(input: String, stream: worker::StreamSender<String>) -> Result<(), super::Oops> {
        let _ = (input, stream);
        Ok(())
    }
}

mod with_init {
    pub struct Model;

    #[worker::init]
    fn load() -> Result<Model, super::Oops> {
        Ok(Model)
    }

    #[worker::handler(main = false)]
    pub fn run(input: String, _model: &Model) -> String {
        input
    }
}

fn main() {}
