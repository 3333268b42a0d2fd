//! Compile tests of `#[worker::handler]` and `#[worker::init]`: `pass/` must build, `fail/` must
//! fail with the messages pinned in the `.stderr` files (rustc 1.95; regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` when the toolchain changes).
//!
//! trybuild also *runs* each pass case and requires exit code 0. The generated `fn main` runs
//! a real worker: without `RUNPOD_WEBHOOK_GET_JOB` it is in local test mode and runs one job
//! from `./test_input.json`, exiting 1 if there is none or the job fails. trybuild runs the
//! binaries in its generated project directory (`<target>/tests/trybuild/<package>/`), which is
//! also their `CARGO_MANIFEST_DIR`; so this driver writes `test_input.json` there first. Cases
//! that keep the generated `main` then run one real job end to end, and `test_input =
//! "test_input.json"` finds the file to embed. Cases that only need to type-check the expansion
//! use `main = false` and a `fn main` that names `worker_main` without calling it.

use std::path::Path;

/// The input every pass case with a generated `main` accepts.
const TEST_INPUT: &str = r#"{"input": {"text": "hi"}}"#;

#[test]
fn ui() {
    // `CARGO_TARGET_TMPDIR` is `<target>/tmp`; trybuild's project is `<target>/tests/trybuild/<package>`.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory");
    let project = target
        .join("tests")
        .join("trybuild")
        .join(env!("CARGO_PKG_NAME"));
    std::fs::create_dir_all(&project).expect("create trybuild's project directory");
    std::fs::write(project.join("test_input.json"), TEST_INPUT).expect("write test_input.json");
    // For fail/test_input_not_json.rs: a trailing comma.
    std::fs::write(
        project.join("bad_test_input.json"),
        "{\"input\": {\"text\": \"hi\",}}\n",
    )
    .expect("write bad_test_input.json");

    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
