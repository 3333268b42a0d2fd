struct Model;

#[worker::handler]
async fn generate(input: String, model: &Model) -> String {
    let _ = model;
    input
}
