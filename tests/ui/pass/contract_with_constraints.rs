// An input with a schema (required by `schema`) and garde constraints, in a batch handler and
// a plain one: both compile, and the constraints are checked per job.
mod single {
    #[derive(serde::Deserialize, worker::JsonSchema, garde::Validate)]
    #[schemars(crate = "worker::schemars")]
    pub struct Prompt {
        #[garde(length(min = 1))]
        pub text: String,
        #[serde(default)]
        #[garde(range(max = 150))]
        pub steps: u32,
    }

    #[derive(serde::Serialize, worker::JsonSchema)]
    #[schemars(crate = "worker::schemars")]
    pub struct Reply {
        pub text: String,
    }

    #[worker::handler(schema, main = false)]
    pub fn generate(input: Prompt) -> anyhow::Result<Reply> {
        Ok(Reply { text: input.text })
    }
}

#[derive(serde::Deserialize, worker::JsonSchema, garde::Validate)]
#[schemars(crate = "worker::schemars")]
struct Text {
    #[garde(length(min = 1, max = 512))]
    text: String,
}

#[worker::handler(schema, batch = 8)]
fn lengths(inputs: Vec<Text>) -> Vec<usize> {
    let _ = single::worker_main;
    inputs.iter().map(|t| t.text.len()).collect()
}
