struct Service;

impl Service {
    #[worker::handler]
    async fn generate(&self, input: String) -> String {
        input
    }
}

fn main() {}
