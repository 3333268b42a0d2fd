struct Cache;

#[worker::init]
fn load() -> Cache {
    Cache
}

#[worker::handler]
fn generate(input: String, cache: &mut Cache) -> String {
    let _ = cache;
    input
}
