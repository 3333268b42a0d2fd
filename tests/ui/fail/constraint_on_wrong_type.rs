// A garde rule that does not fit the field's type is a compile error from garde's derive
// (`range` on a `String`, `length` on a number): garde reports it at its derive, naming the
// field's type and the rule's trait (`Bounds`, `HasSimpleLength`).
#[derive(serde::Deserialize, garde::Validate)]
struct Prompt {
    #[garde(range(min = 1, max = 10))]
    text: String,
    #[garde(length(max = 3))]
    steps: u32,
}

#[worker::handler]
fn generate(input: Prompt) -> String {
    input.text
}
