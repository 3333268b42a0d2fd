// `schema` asks for the input's and the output's JSON Schema: a type without the derive is an
// error at the type, saying what to add.
#[derive(serde::Deserialize)]
struct Prompt {
    text: String,
}

#[worker::handler(schema)]
fn generate(input: Prompt) -> String {
    input.text
}

mod output {
    #[derive(serde::Deserialize, worker::JsonSchema)]
    #[schemars(crate = "worker::schemars")]
    pub struct Prompt {
        text: String,
    }

    #[derive(serde::Serialize)]
    pub struct Reply {
        text: String,
    }

    #[worker::handler(schema, main = false)]
    pub fn reply(input: Prompt) -> anyhow::Result<Reply> {
        Ok(Reply { text: input.text })
    }
}
