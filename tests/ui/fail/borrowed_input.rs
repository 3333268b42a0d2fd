// An input that borrows cannot be deserialized from the job: the message says to take it owned,
// on the parameter.
#[worker::handler]
fn shout(text: &str) -> String {
    text.to_uppercase()
}
