// `main = false` asks for a `worker_main` to call from your own `main`; forgetting the call is
// not silent: the handler is then never used, and rustc's dead-code warning names it (made an
// error here to be seen).
#![deny(dead_code)]

#[worker::handler(main = false)]
fn generate(input: String) -> String {
    input
}

fn main() {
    println!("the worker never starts");
}
