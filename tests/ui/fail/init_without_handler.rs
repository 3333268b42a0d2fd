// An init is run only by its module's handler: without one it must not compile silently.
struct Model;

#[worker::init]
fn load() -> Model {
    Model
}

fn main() {}
