//! The input contract from the types: `--schema` of the `model` example, read back here and by
//! Python's `jsonschema` (from PyPI, in a venv of its own, with `openapi-spec-validator`), which
//! must accept the example's test input and reject a bad one; the `/openapi.json` that
//! `--rp_serve_api` serves, which must validate as OpenAPI 3.1; and the input's declared
//! constraints, which a job must meet to run.

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

/// The venv's `bin` (openapi-spec-validator brings jsonschema), or `None`: skipped, and said.
fn python() -> Option<std::path::PathBuf> {
    match venv::venv(
        "contract",
        "openapi-spec-validator==0.9.0",
        "WORKER_SKIP_PYTHON_TESTS",
    ) {
        Ok(bin) => Some(bin),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
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
    // garde's rules, read by schemars.
    assert_eq!(input["properties"]["text"]["minLength"], 1, "{schema:#}");
    assert_eq!(input["properties"]["text"]["maxLength"], 20_000);
    assert_eq!(input["properties"]["max_words"]["minimum"], 1);
    assert_eq!(input["properties"]["neutral_band"]["maximum"], 5.0);
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
    let out_of_range = check(&json!({"text": "", "neutral_band": 9}));
    assert!(
        out_of_range.contains("should be non-empty") || out_of_range.contains("is too short"),
        "{out_of_range}"
    );
    assert!(
        out_of_range.contains("9 is greater than the maximum of 5"),
        "{out_of_range}"
    );
}

/// `--hub-tests` writes the Hub's `.runpod/tests.json` from the built-in test input, in the
/// working directory, without running init; a second run keeps the user's `config`.
#[test]
fn hub_tests_come_from_the_test_input() {
    let dir = std::env::temp_dir().join(format!("hub-tests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = || {
        let out = Command::new(support::example("model"))
            .arg("--hub-tests")
            .current_dir(&dir)
            .env_remove("RUNPOD_WEBHOOK_GET_JOB")
            .output()
            .expect("the example runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run();
    assert!(stderr.contains("wrote 1 test(s) to"), "{stderr}");
    assert!(stderr.contains("the Hub also needs `config`"), "{stderr}");
    assert!(!stderr.contains("lexicon"), "init must not run: {stderr}");
    let file = dir.join(".runpod/tests.json");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let test_input: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/model/test_input.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(written["tests"][0]["name"], "classify", "{written:#}");
    assert_eq!(written["tests"][0]["input"], test_input["input"]);
    assert!(written["tests"][0]["timeout"].as_u64().unwrap() > 0);

    let mut edited = written.clone();
    edited["config"] = json!({"gpuCount": 1, "env": []});
    std::fs::write(&file, edited.to_string()).unwrap();
    let stderr = run();
    assert!(!stderr.contains("needs `config`"), "{stderr}");
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(again, edited);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `model` example serving `--rp_serve_api` on a free port, killed on drop.
struct LocalApi {
    child: std::process::Child,
    base: String,
}

impl LocalApi {
    fn start() -> LocalApi {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(support::example("model"))
            .args(["--rp_serve_api", "--rp_api_port", &port.to_string()])
            .env_remove("RUNPOD_WEBHOOK_GET_JOB")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the example starts");
        let api = LocalApi {
            child,
            base: format!("http://127.0.0.1:{port}/v2/local"),
        };
        // Up once its OpenAPI document answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while api.get("/openapi.json").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "--rp_serve_api did not answer within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        api
    }

    fn get(&self, path: &str) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}{path}", self.base)])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
    }

    fn runsync(&self, input: Value) -> Value {
        let out = Command::new("curl")
            .args(["-sf", "-H", "Content-Type: application/json", "-d"])
            .arg(json!({ "input": input }).to_string())
            .arg(format!("{}/runsync", self.base))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The declared constraints, end to end: a job breaking three fails once with all three, each
/// at its JSON path with the value it got; a job within them runs.
#[test]
fn a_job_breaking_three_constraints_fails_with_all_three() {
    let api = LocalApi::start();
    let failed = api.runsync(json!({"text": "", "max_words": 0, "neutral_band": 9}));
    assert_eq!(failed["status"], "FAILED", "{failed:#}");
    let error = failed["error"]
        .as_str()
        .expect("the error report, as a string");
    let report: Value = serde_json::from_str(error).expect("the report is JSON");
    assert_eq!(report["error_type"], "InvalidInput", "{report:#}");
    let message = report["error_message"].as_str().unwrap();
    for violation in [
        "input.text: length must be at least 1 (got \"\")",
        "input.max_words: must be at least 1 (got 0)",
        "input.neutral_band: must be at most 5 (got 9)",
    ] {
        assert!(message.contains(violation), "{violation} in {message}");
    }
    assert_eq!(message.matches("; ").count(), 2, "{message}");

    let done = api.runsync(json!({"text": "great food", "max_words": 10, "neutral_band": 1.0}));
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
    assert_eq!(done["output"]["label"], "positive", "{done:#}");
}

/// `--rp_serve_api` serves the endpoint's OpenAPI document with the handler's own schemas.
#[test]
fn the_local_api_serves_an_openapi_31_document_of_the_contract() {
    let api = LocalApi::start();
    let document = api.get("/openapi.json").expect("served");
    drop(api);
    assert_eq!(document["openapi"], "3.1.0");
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["Input"]["required"],
        json!(["text"]),
        "{document:#}"
    );
    assert_eq!(schemas["Output"]["title"], "Sentiment", "{document:#}");
    for path in [
        "/run",
        "/runsync",
        "/status/{id}",
        "/stream/{id}",
        "/cancel/{id}",
    ] {
        assert!(document["paths"][path].is_object(), "{path}: {document:#}");
    }

    let Some(bin) = python() else { return };
    let out = Command::new(bin.join("python"))
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.loads(sys.argv[1]))\n\
             print('valid')",
        ])
        .arg(document.to_string())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

/// A batch handler's contract is one job's: `embed` takes `Vec<Request>` and returns
/// `Result<Vec<anyhow::Result<Response>>>`; its schema is `Request`'s and `Response`'s.
#[test]
fn a_batch_handlers_schema_is_one_jobs_input_and_output() {
    let (schema, notes) = schema_of("embed");
    assert_eq!(notes, "", "{schema:#}");
    assert_eq!(schema["input"]["title"], "Request", "{schema:#}");
    assert_eq!(
        schema["input"]["additionalProperties"], false,
        "deny_unknown_fields: {schema:#}"
    );
    assert_eq!(schema["output"]["title"], "Response", "{schema:#}");
}

/// Without the macros: `Worker::contract::<In, Out>()` gives `--schema` the types, and
/// `try_run` returns `Ok` after printing it, without running init.
#[test]
fn a_worker_without_the_macros_prints_its_contract() {
    let out = Command::new(env!("CARGO_BIN_EXE_embedded-fixture"))
        .arg("--schema")
        .env_clear()
        .output()
        .expect("the fixture runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (schema, rest) = stdout
        .split_once("\n}\n")
        .map(|(json, rest)| (format!("{json}\n}}"), rest))
        .unwrap_or_else(|| panic!("{out:?}"));
    let schema: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(schema["input"]["type"], "integer", "{schema:#}");
    assert_eq!(schema["output"]["type"], "string", "{schema:#}");
    assert_eq!(rest.trim(), "try_run returned Ok", "{out:?}");
}
