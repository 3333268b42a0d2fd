// Every problem is reported at once, each on its token.
#[worker::handler(concurrency = 0, main = "no", test_input = input.json, threads = 2)]
async fn generate(input: String) -> String {
    input
}

struct Model;

#[worker::init(concurrency = 2)]
fn load() -> Model {
    Model
}
