// The runtime flavor is one of tokio's two names; anything else is reported on the value.
#[worker::handler(flavor = "single_thread")]
async fn generate(input: String) -> String {
    input
}
