#[worker::handler(return_aggregate_stream)]
async fn echo(input: String) -> String {
    input
}
