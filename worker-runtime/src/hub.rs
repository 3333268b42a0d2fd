//! `--hub-tests`: the RunPod Hub's `.runpod/tests.json` from the worker's own test inputs.
//!
//! The Hub runs the tests of `.runpod/tests.json` (`{"tests": [{name, input, timeout}],
//! "config": {gpuTypeId, gpuCount, env, allowedCudaVersions}}`, the timeout in milliseconds)
//! against the image before it lists it. The tests come from the same test inputs local test
//! mode runs (`--test_input`, `./test_input.json`, the embedded default), so the two cannot
//! drift; `config` describes the machine, which only the user knows: an existing one is kept,
//! a missing one is said.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind};
use crate::local::{self, EmbeddedTestInput};

/// Each test's time limit: generous for a model's first job on a cold machine.
const TIMEOUT_MS: u64 = 300_000;

/// What `--hub-tests` did, to print.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) path: PathBuf,
    pub(crate) tests: usize,
    /// The file has no `config` yet: the Hub needs one.
    pub(crate) needs_config: bool,
}

/// Write (or update) `<dir>/.runpod/tests.json` from the test inputs; keys other than `tests`
/// in an existing file are kept as they are.
pub(crate) fn write_hub_tests(
    dir: &Path,
    flag: Option<String>,
    embedded: Option<EmbeddedTestInput>,
    handler: &str,
) -> Result<Written, Error> {
    let jobs = local::read_test_jobs(flag, embedded)?;
    let several = jobs.len() > 1;
    let tests: Vec<Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            // A job's own `id` names its test; else the handler's name (numbered if several).
            let name = match job.id() {
                id if !id.starts_with("local_test") => id.to_owned(),
                _ if several => format!("{handler}_{}", i + 1),
                _ => handler.to_owned(),
            };
            json!({"name": name, "input": job.input(), "timeout": TIMEOUT_MS})
        })
        .collect();

    let path = dir.join(".runpod").join("tests.json");
    let io = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::TestInput,
            format!("could not {what} {}: {e}", path.display()),
        )
        .with_source(e)
    };
    let mut document = match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(Error::new(
                    ErrorKind::TestInput,
                    format!(
                        "{} is not a JSON object: fix or remove it, and run --hub-tests again",
                        path.display()
                    ),
                ));
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(io("read", e)),
    };
    let count = tests.len();
    document.insert("tests".to_owned(), Value::Array(tests));
    let needs_config = !document.contains_key("config");
    let text =
        serde_json::to_string_pretty(&Value::Object(document)).expect("a JSON value serializes");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
    }
    std::fs::write(&path, text + "\n").map_err(|e| io("write", e))?;
    Ok(Written {
        path,
        tests: count,
        needs_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(path: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn tests_come_from_the_test_inputs_and_a_config_is_kept() {
        let dir = temp_dir("write");
        let written = write_hub_tests(
            &dir,
            Some(
                r#"[{"input": {"text": "a"}}, {"id": "long_text", "input": {"text": "b"}}]"#.into(),
            ),
            None,
            "classify",
        )
        .unwrap();
        assert_eq!(written.tests, 2);
        assert!(written.needs_config);
        let doc = read(&written.path);
        assert_eq!(
            doc["tests"],
            json!([
                {"name": "classify_1", "input": {"text": "a"}, "timeout": TIMEOUT_MS},
                {"name": "long_text", "input": {"text": "b"}, "timeout": TIMEOUT_MS},
            ])
        );

        // The user's config stays; the tests are replaced.
        let config = json!({"gpuTypeId": "NVIDIA GeForce RTX 4090", "gpuCount": 1});
        std::fs::write(
            &written.path,
            json!({"tests": [], "config": config}).to_string(),
        )
        .unwrap();
        let embedded = EmbeddedTestInput {
            path: "test_input.json",
            contents: r#"{"input": {"text": "c"}}"#,
        };
        let again = write_hub_tests(&dir, None, Some(embedded), "classify").unwrap();
        assert!(!again.needs_config);
        let doc = read(&again.path);
        assert_eq!(doc["config"], config);
        assert_eq!(doc["tests"][0]["name"], "classify");
        assert_eq!(doc["tests"][0]["input"], json!({"text": "c"}));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broken_file_or_no_test_input_is_an_error_that_says_so() {
        let dir = temp_dir("broken");
        std::fs::create_dir_all(dir.join(".runpod")).unwrap();
        std::fs::write(dir.join(".runpod/tests.json"), "[1]").unwrap();
        let err = write_hub_tests(&dir, Some(r#"{"input": 1}"#.into()), None, "h").unwrap_err();
        assert!(err.to_string().contains("is not a JSON object"), "{err}");
        let err = write_hub_tests(&dir, Some("{".into()), None, "h").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
