#[worker::handler]
async fn main(input: String) -> String {
    input
}
