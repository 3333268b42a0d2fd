struct Model;

#[worker::init]
fn load() -> Model {
    Model
}

#[worker::init]
fn load_again() -> Model {
    Model
}

#[worker::handler]
fn generate(input: String, _model: &Model) -> String {
    input
}
