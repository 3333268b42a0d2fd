// `schema` asks for the input's JSON Schema: a type without the derive is an error at the type,
// saying what to add.
#[derive(serde::Deserialize)]
struct Prompt {
    text: String,
}

#[worker::handler(schema)]
fn generate(input: Prompt) -> String {
    input.text
}
