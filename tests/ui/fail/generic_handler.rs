#[worker::handler]
async fn generate<T: serde::de::DeserializeOwned>(input: T) -> String {
    let _ = input;
    String::new()
}
