// A batch handler returns one output per input; one value for the whole batch is an error
// pointed at the output type.
#[worker::handler(batch = 8)]
fn total(texts: Vec<String>) -> anyhow::Result<usize> {
    Ok(texts.iter().map(String::len).sum())
}
