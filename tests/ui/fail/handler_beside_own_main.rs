// The user's own `fn main` next to a handler that generates one: say to remove it or to write
// `main = false`, instead of rustc's bare "`main` is defined multiple times".
#[worker::handler]
fn generate(input: String) -> String {
    input
}

fn main() {
    println!("starting");
}
