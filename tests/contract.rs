//! The input contract from the types: `--schema` of the `model` example, read back here and by
//! Python's `jsonschema` (from PyPI, in a venv of its own), which must accept the example's
//! test input and reject a bad one.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

mod support;
#[path = "../runpod-emulator/tests/support/venv.rs"]
mod venv;

fn schema_of(example: &str) -> (Value, String) {
    run_schema(&support::example(example))
}

fn run_schema(bin: &Path) -> (Value, String) {
    let out = Command::new(bin)
        .arg("--schema")
        .env_clear()
        .output()
        .expect("the example runs");
    assert!(out.status.success(), "{out:?}");
    let schema = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--schema printed no JSON ({e}): {out:?}"));
    (schema, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn schema_describes_the_model_examples_input_and_output() {
    let (schema, notes) = schema_of("model");
    assert_eq!(notes, "", "both types derive JsonSchema: no notes");
    let input = &schema["input"];
    assert_eq!(input["type"], "object", "{schema:#}");
    assert_eq!(input["required"], json!(["text"]), "{schema:#}");
    assert_eq!(
        input["properties"]["text"]["description"],
        "The text to score."
    );
    assert_eq!(
        input["properties"]["explain"]["default"], false,
        "#[serde(default)]"
    );
    let output = &schema["output"];
    assert_eq!(
        output["required"],
        json!(["label", "score", "words_matched"]),
        "a `Result<Sentiment>` return describes `Sentiment`: {schema:#}"
    );
}

#[test]
fn a_type_without_json_schema_gives_an_empty_schema_and_a_note() {
    // The fixture worker's input is its own enum, without the derive.
    let (schema, notes) = run_schema(&support::fixture());
    assert_eq!(schema["input"], json!({}), "{schema:#}");
    assert!(
        notes.contains("input type does not derive `JsonSchema`")
            && notes.contains("#[derive(worker::JsonSchema)]"),
        "{notes}"
    );
}

#[test]
fn python_jsonschema_accepts_the_test_input_and_rejects_a_bad_one() {
    let bin = match venv::venv(
        "jsonschema",
        "jsonschema==4.26.0",
        "WORKER_SKIP_PYTHON_TESTS",
    ) {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let (schema, _) = schema_of("model");
    let test_input: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/model/test_input.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let check = |instance: &Value| -> String {
        let out = Command::new(bin.join("python"))
            .args([
                "-c",
                "import json, sys, jsonschema\n\
                 schema, instance = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n\
                 jsonschema.Draft202012Validator.check_schema(schema)\n\
                 errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(instance)]\n\
                 print('valid' if not errors else '; '.join(errors))",
            ])
            .arg(schema["input"].to_string())
            .arg(instance.to_string())
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(check(&test_input["input"]), "valid");
    let bad = check(&json!({"text": 5, "explain": "yes"}));
    assert!(
        bad.contains("5 is not of type 'string'") && bad.contains("'yes' is not of type 'boolean'"),
        "{bad}"
    );
    assert!(check(&json!({"explain": true})).contains("'text' is a required property"));
}
