#[worker::handler]
fn first(input: String) -> String {
    input
}

#[worker::handler]
fn second(input: String) -> String {
    input
}
