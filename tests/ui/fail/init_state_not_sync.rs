use std::cell::RefCell;

struct Model {
    cache: RefCell<Vec<String>>,
}

#[worker::init]
fn load() -> Model {
    Model { cache: RefCell::new(Vec::new()) }
}

#[worker::handler]
fn generate(input: String, model: &Model) -> usize {
    model.cache.borrow().len() + input.len()
}
