use std::rc::Rc;

#[worker::handler]
async fn generate(input: String) -> String {
    let shared = Rc::new(input);
    tokio::task::yield_now().await;
    shared.to_string()
}
